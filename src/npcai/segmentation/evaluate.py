"""Evaluate a segmentation run on its test patients: Dice per slice and per patient with 95% CIs.

The evaluated masks are exactly what ``npcai segment predict`` writes (whole volume, native
grid, the run's post-processing: components under ``min_component`` px dropped, 10 x 10 by
default, and with ``keep_largest_3d`` the largest 3D component kept), so the numbers describe the masks that later
stages use. Regions: ``tumour`` (label 1), ``nodes`` (label 2) and ``both`` (their union,
lesion vs background), for the labels the run was trained on.

* per slice: Dice on every axial slice whose manual mask contains a trained label (the
  slices the papers evaluate); NaN where neither truth nor prediction has the region;
* per patient (scan): Dice over the whole volume, HD95 in mm (MONAI), true and predicted
  volume in ml and the relative volume error.

Each mean has a 95% percentile-bootstrap CI that resamples *patients* (a slice-level CI
that treats slices of one patient as independent would be too narrow):
:func:`npcai.stats.bootstrap.bootstrap_ci` with ``groups=patient``.

Outputs in ``SEGRUN/evaluation/`` (written atomically): ``metrics.json``, ``slices.csv``,
``patients.csv``, ``dice_per_epoch.png``.

Examples:
    >>> ev = evaluate_segrun("segrun_unet")                         # doctest: +SKIP
    >>> ev.metrics["patient"]["tumour"]["dice"]["estimate"]         # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.cohort.model import LABELS, Cohort
from npcai.errors import NpcaiError
from npcai.fsutil import atomic_output_dir
from npcai.progress import track
from npcai.segmentation.metrics import dice_per_slice, dice_score, hd95, relative_volume_error
from npcai.segmentation.predict import predict_volume, run_postprocessing
from npcai.segmentation.train import SegRun, load_segrun

__all__ = ["SegEvaluation", "evaluate_segrun", "region_values", "load_evaluation", "plot_dice_per_epoch",
           "mean_ci"]

log = logging.getLogger(__name__)


def region_values(label_names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Evaluated regions -> mask values: each trained label, plus ``both`` when there are two."""
    regions = {n: (LABELS[n],) for n in label_names}
    if len(label_names) > 1:
        regions["both"] = tuple(LABELS[n] for n in label_names)
    return regions


def _nanmean(y, values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise NpcaiError("no defined values")
    return float(v.mean())


def mean_ci(values, groups=None, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean of the finite ``values`` with a patient-bootstrap 95% CI; ``n`` counts finite values."""
    from npcai.stats.bootstrap import bootstrap_ci

    v = np.asarray(values, float)
    finite = np.isfinite(v)
    out: dict[str, Any] = {"n": int(finite.sum())}
    if finite.sum() == 0:
        return out | {"estimate": None, "low": None, "high": None}
    g = None if groups is None else np.asarray(groups)[finite]
    if finite.sum() == 1 or (g is not None and len(set(g)) == 1):
        return out | {"estimate": float(v[finite].mean()), "low": None, "high": None}
    r = bootstrap_ci(_nanmean, np.zeros(int(finite.sum())), v[finite], groups=g, n_boot=n_boot, seed=seed,
                     stratify=False)
    return out | {"estimate": r.estimate, "low": r.low, "high": r.high}


@dataclass
class SegEvaluation:
    """Per-slice and per-patient tables and the summary ``metrics`` (as in metrics.json)."""

    slices: pd.DataFrame
    patients: pd.DataFrame
    metrics: dict[str, Any]
    path: Path | None = None


def _cohort_of(run: SegRun, cohort: str | Path | None) -> Cohort:
    c = Cohort.load(cohort if cohort is not None else run.config["cohort"]["path"])
    return c


def evaluate_segrun(segrun: str | Path | SegRun, *, cohort: str | Path | None = None, split: str = "test",
                    min_component: tuple[int, int] | str | None = None, keep_largest_3d: bool | None = None,
                    n_boot: int = 2000, write: bool = True) -> SegEvaluation:
    """Score a run's selected model on its ``split`` patients (default: test) and write the results.

    Args:
        segrun: run folder or loaded :class:`SegRun`.
        cohort: the cohort folder if it moved since training (default: the path in config.yaml).
        split: ``test`` (the honest estimate) or ``val``.
        min_component / keep_largest_3d: post-processing as in
            :func:`npcai.segmentation.predict.predict_masks` (None: the run's saved options).
        n_boot: bootstrap resamples for the CIs.
        write: write ``SEGRUN/evaluation/``.
    """
    run = segrun if isinstance(segrun, SegRun) else load_segrun(segrun)
    min_component, keep_largest_3d = run_postprocessing(run, min_component, keep_largest_3d)
    if split not in ("test", "val"):
        raise NpcaiError(f"--split {split!r}: evaluate on test or val patients")
    co = _cohort_of(run, cohort)
    opts = run.config["options"]
    patients = run.patients(split)
    if not patients:
        raise NpcaiError(f"{run.path}/split.csv: no {split} patients")
    regions = region_values(run.labels.names)
    wanted = np.array(run.labels.values)
    slice_rows, patient_rows = [], []
    scans = [s for p in patients for s in co.scans(patient_id=p, sequence=opts["sequence"],
                                                   timepoint=opts["timepoint"]) if s.mask]
    if not scans:
        raise NpcaiError(f"{co.root}: the run's {split} patients have no {opts['sequence']} scan with a mask; "
                         f"pass --cohort with the cohort the run was trained on")
    for scan in track(scans, f"Evaluating on {split} patients"):
        truth = co.read_mask(scan, "manual")
        sp = scan.spacing                                   # (x, y, z) mm
        pred = predict_volume(run, co.read_array(scan), min_component=min_component,
                              keep_largest_3d=keep_largest_3d, spacing=sp)
        voxel_ml = float(np.prod(sp)) / 1000.0
        ks = np.flatnonzero(np.isin(truth, wanted).reshape(len(truth), -1).any(1))
        per_region = {name: dice_per_slice(truth[ks], pred[ks], vals) for name, vals in regions.items()}
        for j, k in enumerate(ks):
            row = {"patient_id": scan.patient_id, "scan_id": scan.scan_id, "slice_index": int(k)}
            for name, d in per_region.items():
                row[f"dice_{name}"] = float(d[j])
            slice_rows.append(row)
        prow: dict[str, Any] = {"patient_id": scan.patient_id, "scan_id": scan.scan_id, "n_slices": len(ks)}
        for name, vals in regions.items():
            vt = float(np.isin(truth, vals).sum()) * voxel_ml
            vp = float(np.isin(pred, vals).sum()) * voxel_ml
            prow |= {f"dice_{name}": dice_score(truth, pred, vals),
                     f"hd95_mm_{name}": hd95(truth, pred, vals, spacing=(sp[2], sp[1], sp[0])),
                     f"volume_true_ml_{name}": vt, f"volume_pred_ml_{name}": vp,
                     f"volume_rel_error_{name}": relative_volume_error(truth, pred, vals)}
        patient_rows.append(prow)
    slices = pd.DataFrame(slice_rows)
    pts = pd.DataFrame(patient_rows)
    metrics: dict[str, Any] = {
        "segrun": str(run.path.resolve()), "arch": opts["arch"], "encoder": opts["encoder"],
        "split": split, "n_patients": int(pts["patient_id"].nunique()), "n_slices": len(slices),
        "best_epoch": run.summary["best_epoch"], "val_dice": run.summary["val_dice"],
        "min_component": list(min_component), "keep_largest_3d": keep_largest_3d,
        "context": int(opts.get("context", 0)),
        "ci": f"95% percentile bootstrap over patients ({n_boot} resamples)",
        "slice": {}, "patient": {},
    }
    for name in regions:
        metrics["slice"][name] = {"dice": mean_ci(slices[f"dice_{name}"], slices["patient_id"], n_boot=n_boot)}
        metrics["patient"][name] = {
            "dice": mean_ci(pts[f"dice_{name}"], n_boot=n_boot),
            "hd95_mm": mean_ci(pts[f"hd95_mm_{name}"], n_boot=n_boot),
            "abs_volume_rel_error": mean_ci(pts[f"volume_rel_error_{name}"].abs(), n_boot=n_boot),
            "patients_missed": int(((pts[f"volume_true_ml_{name}"] > 0) & (pts[f"volume_pred_ml_{name}"] == 0)).sum()),
        }
    ev = SegEvaluation(slices=slices, patients=pts, metrics=metrics)
    if write:
        out = run.path / "evaluation"
        with atomic_output_dir(out, overwrite=True) as tmp:
            slices.to_csv(tmp / "slices.csv", index=False)
            pts.to_csv(tmp / "patients.csv", index=False)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
            plot_dice_per_epoch(run, tmp / "dice_per_epoch.png", test=metrics)
        ev.path = out
    return ev


def load_evaluation(segrun: str | Path) -> SegEvaluation | None:
    """The evaluation written by :func:`evaluate_segrun`, or None when there is none yet."""
    out = Path(segrun) / "evaluation"
    if not (out / "metrics.json").is_file():
        return None
    return SegEvaluation(slices=pd.read_csv(out / "slices.csv", dtype={"patient_id": str}),
                         patients=pd.read_csv(out / "patients.csv", dtype={"patient_id": str}),
                         metrics=json.loads((out / "metrics.json").read_text()), path=out)


def plot_dice_per_epoch(run: SegRun, path: str | Path, test: dict[str, Any] | None = None) -> Path:
    """Validation Dice per label and epoch, training/validation loss, and the selected epoch.

    With ``test`` (the metrics of :func:`evaluate_segrun`), the selected model's test Dice per
    slice is drawn at the selected epoch with its 95% CI; it played no part in the selection.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = pd.read_csv(run.path / "history.csv")
    best = int(run.summary["best_epoch"])
    opts = run.config["options"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    colours = {"tumour": "tab:red", "nodes": "tab:blue", "both": "tab:purple"}
    for name in run.labels.names:
        ax.plot(hist["epoch"], hist[f"val_dice_{name}"], "-o", ms=3, color=colours[name],
                label=f"validation {name}")
    if len(run.labels.names) > 1:
        ax.plot(hist["epoch"], hist["val_dice"], "-", color="black", lw=2, label="validation mean (selects)")
    ax.axvline(best, color="grey", ls="--", lw=1, label=f"selected epoch {best}")
    if test is not None:
        for i, name in enumerate(run.labels.names):
            d = test["slice"][name]["dice"]
            if d.get("estimate") is None:
                continue
            lo, hi = d.get("low"), d.get("high")
            yerr = None if lo is None else [[d["estimate"] - lo], [hi - d["estimate"]]]
            ax.errorbar(best + 0.15 * (i + 1), d["estimate"], yerr=yerr, fmt="D", color=colours[name],
                        mec="black", capsize=4, label=f"test {name} (95% CI)")
    from matplotlib.ticker import MaxNLocator

    for a in (ax, ax2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice per slice (mean)")
    ax.set_ylim(0, 1)
    n_val = len(run.patients("val"))
    ax.set_title(f"{opts['arch']} ({opts['encoder']}): Dice per epoch, {n_val} validation patients")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax2.plot(hist["epoch"], hist["train_loss"], "-o", ms=3, label="training")
    ax2.plot(hist["epoch"], hist["val_loss"], "-o", ms=3, label="validation")
    ax2.axvline(best, color="grey", ls="--", lw=1)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("Dice + cross-entropy loss")
    ax2.set_yscale("log")
    ax2.set_title("Loss per epoch")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
