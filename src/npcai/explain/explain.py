"""``explain_run``: CAMs of a trained run's patients, their figures and localisation tables.

For the chosen patients (``--patients`` or the ``top`` highest predicted risks of a split)
every selected ROI slice is explained with the run's per-slice classifier (patient-unit runs
included: :func:`npcai.runs.load_run` gives the per-slice model), its CAM energy is split
into regions (:mod:`npcai.explain.localisation`) and drawn (:mod:`npcai.explain.overlays`).

Output folder ``OUT/`` (written atomically)::

    overlays/<patient>_z<slice>.png     one slice of the main run: MR slice, CAM, contours
    montage_<patient>.png               all explained slices of a patient (main run)
    runs_<patient>.png                  with ``runs``: one panel per run (ROI variant), same slice
    localisation.csv                    one row per slice and run (shares, uniform baselines)
    localisation_summary.csv            per run and region: mean share, 95% CI over patients, uniform
    localisation.png                    the summary as grouped bars against uniform attention
    explain.json                        parameters, patients, runs, target layers

and, so that ``npcai compare`` can include it, each explained run gets
``RUN/explain/localisation_summary.csv`` (its rows of the summary) and
``RUN/explain/localisation.csv`` (replaced by the latest ``explain``).

Summary statistics: a patient's slices are averaged first (patients are the independent
units), then the mean over patients with a Student-t 95% CI (NaN with one patient).

Examples:
    >>> res = explain_run("runs/seg_b0", "explain/seg_b0", top=4)    # doctest: +SKIP
    >>> res.summary.query("scale == 'px'")[["region", "share_mean", "uniform_mean"]]  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.explain.cam import METHODS, TARGETS, compute_cams
from npcai.explain.localisation import (band_mask, band_share, energy_shares, excluded_share, flatten_shares,
                                        informative_pixels, region_names, roi_geometry, uniform_shares)
from npcai.explain.overlays import Panel, plot_localisation, save_montage, save_overlay
from npcai.explain.target_layers import TargetLayer, find_target_layer
from npcai.fsutil import atomic_output_dir, atomic_write_text, check_output_path
from npcai.progress import track

__all__ = ["ExplainResult", "explain_run", "select_patients", "summarise_localisation", "signal_band"]

log = logging.getLogger(__name__)

SCALES = ("px", "mm")


@dataclass
class ExplainResult:
    """What :func:`explain_run` wrote.

    Attributes:
        out: the output folder.
        localisation: per-slice table (``localisation.csv``).
        summary: per run and region table (``localisation_summary.csv``).
        patients: the explained patients (pseudonyms).
        runs: run names, the main run first.
        target_layers: run name -> hooked layer name.
        signal: the phantom's signal band used (``{"band": [a, b], "unit": "mm"}``) or None.
        files: every file written under ``out``.
    """

    out: Path
    localisation: pd.DataFrame
    summary: pd.DataFrame
    patients: list[str]
    runs: list[str]
    target_layers: dict[str, str]
    signal: dict[str, Any] | None
    files: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers
def _load(run_dir: Path):
    from npcai.runs import load_run

    return load_run(run_dir)


def _models_for(run_dir: Path, chosen: list[str]) -> list[tuple[Any, list[str]]]:
    """(loaded run, the patients its network explains) for one run folder: the run's own network
    for every patient, or for a cross-validated run each patient's *out-of-fold* model, the fold
    run that held it out (never a fold model that trained on it)."""
    from npcai.models.folds import fold_run_dirs, is_cv_run

    if not is_cv_run(run_dir):
        return [(_load(run_dir), list(chosen))]
    oof = _patient_predictions(run_dir).set_index("patient_id")
    absent = [p for p in chosen if p not in oof.index]
    if absent:
        log.warning("run %s: patients %s have no out-of-fold prediction; not explained by it",
                    run_dir.name, ", ".join(absent))
    parts = []
    for k, fold_dir in enumerate(fold_run_dirs(run_dir), start=1):
        mine = [p for p in chosen if p in oof.index and int(oof.loc[p, "fold"]) == k]
        if not mine:
            continue
        loaded = _load(fold_dir)
        held = set(loaded.split.index[loaded.split["split"] == "test"])
        trained = [p for p in mine if p not in held]
        if trained:
            raise NpcaiError(f"{fold_dir}: fold {k} does not hold out patient {trained[0]}, whose out-of-fold "
                             f"prediction it made; the cross-validated run {run_dir.name} is inconsistent, "
                             "train it again")
        parts.append((loaded, mine))
    return parts


def _patient_predictions(run_dir: Path) -> pd.DataFrame:
    from npcai.runs import read_predictions

    return read_predictions(run_dir).patients


def select_patients(run_dir: str | Path, *, patients: Sequence[str] | None = None, top: int = 4,
                    split: str = "test") -> list[str]:
    """The patients to explain: ``patients`` as given (checked against the run), else the
    ``top`` patients of ``split`` with the highest predicted risk (``predictions_patients.csv``)."""
    run_dir = Path(run_dir)
    preds = _patient_predictions(run_dir)
    if patients:
        known = set(preds["patient_id"])
        for p in patients:
            if p not in known:
                raise NpcaiError(f"--patients: patient {p!r} is not among the predictions of run {run_dir}; "
                                 "use the cohort's pseudonyms (P0001, ...)")
        return list(dict.fromkeys(patients))
    if top < 1:
        raise NpcaiError(f"--top {top}: must be at least 1")
    part = preds[preds["split"] == split]
    if part.empty:
        have = ", ".join(sorted(preds["split"].astype(str).unique()))
        raise NpcaiError(f"run {run_dir}: no predicted patients in split {split!r} (have: {have}); "
                         "choose --split or --patients")
    return part.sort_values(["prob", "patient_id"], ascending=[False, True])["patient_id"].head(top).tolist()


def signal_band(cohort_dir: Path) -> dict[str, Any] | None:
    """The phantom's planted peritumoural band, ``{"band": (inner, outer), "unit": "mm"|"px"}``
    (mm preferred: it survives any resampling), or None for a real cohort."""
    from npcai.cohort.phantom import load_signal

    signal = load_signal(cohort_dir)
    if not signal:
        return None
    for key, unit in (("ring_band_mm", "mm"), ("ring_band_px", "px")):
        if signal.get(key) is not None:
            inner, outer = (float(v) for v in signal[key])
            return {"band": (inner, outer), "unit": unit, "source": key}
    log.warning("%s: phantom signal.json has no ring_band_mm / ring_band_px; signal-band share skipped", cohort_dir)
    return None


def _choose_rows(index: pd.DataFrame, rows: np.ndarray, max_slices: int | None) -> np.ndarray:
    """A patient's ROI rows, at most ``max_slices`` with the largest lesion area, in slice order."""
    part = index.iloc[rows]
    if max_slices is not None and len(rows) > max_slices:
        area = part.get("tumour_area_px", 0) + part.get("nodes_area_px", 0)
        keep = np.argsort(-np.asarray(area, dtype=float), kind="stable")[:max_slices]
        rows = rows[np.sort(keep)]
        part = index.iloc[rows]
    order = np.lexsort((part["slice_index"].to_numpy(), part["timepoint"].astype(str).to_numpy()))
    return rows[order]


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``(N, C, H, W)`` to ``size`` x ``size`` (no-op when already that size)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1]).numpy()


def _variant_label(roi) -> str:
    params = roi.params or {}
    variant = str(params.get("variant", "?"))
    region = params.get("region")
    return f"{variant} ({region})" if region and region != "primary" else variant


def _caption(rec: dict[str, Any]) -> str:
    """The slice's shares, as printed under its overlay (compare them with the picture)."""
    if not rec["cam_energy"] > 0:
        return "no positive CAM energy on this slice (no evidence for the target)"
    f = {k: ("-" if not np.isfinite(v) else f"{v:.2f}") for k, v in rec.items() if k.startswith(("share_", "uniform_"))}
    text = (f"tumour {f['share_tumour']} · nodes {f['share_nodes']} · 0-5px {f['share_band_0_5px']} · "
            f"5-10px {f['share_band_5_10px']}\n10-20px {f['share_band_10_20px']} · 20-40px {f['share_band_20_40px']} · "
            f">40px {f['share_band_gt40px']} · >20mm {f['share_far']}")
    if np.isfinite(rec.get("share_excluded", np.nan)) and rec["share_excluded"] > 0:
        text += f"\nnot counted (padding, air outside the body): {rec['share_excluded']:.2f} of the energy"
    if "share_signal_band" in f:
        text += f"\nsignal band {f['share_signal_band']} (uniform {f['uniform_signal_band']})"
    return text


def _fmt_z(row: pd.Series) -> str:
    tp = str(row.get("timepoint", "pre"))
    return f"z{int(row['slice_index'])}" + ("" if tp == "pre" else f"_{tp}")


# --------------------------------------------------------------------------- summary
def summarise_localisation(table: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per run and region: mean share over patients (a patient's slices averaged first),
    Student-t CI, the uniform baseline's mean, and their ratio. Long format, one row per
    ``(run, scale, region)``; ``scale`` is ``px``, ``mm`` or ``signal``."""
    from scipy import stats

    rows = []
    regions = [(s, r) for s in SCALES for r in region_names(s)]
    if "share_signal_band" in table:
        regions.append(("signal", "signal_band"))
    for run, part in table.groupby("run", sort=False):
        for scale, region in regions:
            col = f"share_{region}"
            per_patient = part.groupby("patient_id")[[col, f"uniform_{region}"]].mean()
            values = per_patient[col].dropna().to_numpy(dtype=float)
            uniform = per_patient[f"uniform_{region}"].dropna().to_numpy(dtype=float)
            n = len(values)
            mean = float(values.mean()) if n else float("nan")
            if n > 1:
                half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
                low, high = max(0.0, mean - half), min(1.0, mean + half)
            else:
                low = high = float("nan")
            uni = float(uniform.mean()) if len(uniform) else float("nan")
            rows.append({"run": run, "variant": part["variant"].iloc[0], "method": part["method"].iloc[0],
                         "target": part["target"].iloc[0], "scale": scale, "region": region,
                         "share_mean": mean, "share_low": low, "share_high": high, "uniform_mean": uni,
                         "share_over_uniform": mean / uni if uni and uni > 0 and np.isfinite(mean) else float("nan"),
                         "n_patients": n, "n_slices": int(part[col].notna().sum()),
                         "n_slices_no_cam": int((part["cam_energy"] <= 0).sum())})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- one run
def _explain_one(loaded, run_name: str, patients: list[str], *, method: str, target: str,
                 max_slices: int | None, batch_size: int, signal: dict[str, Any] | None,
                 probs: dict[str, float], split_of: dict[str, str], target_layer: str | None = None):
    """CAMs and localisation rows of one run; returns (rows, panels per patient, target layer)."""
    roi = loaded.roi
    model = loaded.model
    size = int(roi.images.shape[-1])
    # the network may run at another size than the cache (`npcai train --size`): feed it what it
    # was trained on, and bring the CAM back to ROI resolution, where the masks live
    net_size = int((loaded.config.raw.get("resolved") or {}).get("input_size") or size)
    layer: TargetLayer = find_target_layer(model, input_shape=(1, roi.images.shape[1], net_size, net_size),
                                           layer=target_layer)
    variant = _variant_label(roi)
    table, panels = [], {}
    for patient in track(patients, f"Explaining {run_name}"):
        rows = roi.rows_of(patient)
        if len(rows) == 0:
            log.warning("run %s: patient %s has no slices in ROI %s; skipped", run_name, patient, roi.root.name)
            continue
        rows = _choose_rows(roi.index, rows, max_slices)
        images = np.asarray(roi.images[rows], dtype=np.float32)
        res = compute_cams(model, _resize(images, net_size), method=method, target=target,
                           target_layer=layer, batch_size=batch_size)
        cams = _resize(res.cams[:, None], size)[:, 0].clip(min=0.0)
        panels[patient] = []
        for k, r in enumerate(rows):
            meta = roi.index.iloc[r]
            labels = np.asarray(roi.masks[r])
            geometry = roi_geometry(meta, size)
            cam = cams[k]
            valid = informative_pixels(images[k])      # padding and air outside the body do not count
            rec: dict[str, Any] = {
                "run": run_name, "variant": variant, "method": method, "target": target,
                "patient_id": patient, "split": split_of.get(patient, ""), "roi_row": int(r),
                "timepoint": meta.get("timepoint", ""), "slice_index": int(meta["slice_index"]),
                "logit": float(res.logits[k]), "prob": float(1.0 / (1.0 + np.exp(-res.logits[k]))),
                "patient_prob": probs.get(patient, float("nan")),
                "cam_energy": float(cam.sum()), "target_layer": layer.name, "target_layer_rule": layer.rule,
                "feature_map": "{}x{}".format(*layer.map_size), "share_excluded": excluded_share(cam, valid),
            }
            shares = flatten_shares(energy_shares(cam, labels, geometry, valid=valid), "share")
            rec.update(shares)
            rec.update(flatten_shares(uniform_shares(labels, geometry, valid=valid), "uniform"))
            band = None
            if signal is not None:
                band = band_mask(labels, geometry, signal["band"], unit=signal["unit"])
                rec["share_signal_band"], rec["uniform_signal_band"] = band_share(
                    cam, labels, geometry, signal["band"], unit=signal["unit"], valid=valid)
            table.append(rec)
            image = images[k, 0]
            panels[patient].append((meta, rec["prob"], Panel(
                image=image, cam=cam, labels=labels, geometry=geometry, band=band, valid=valid,
                title=f"{patient} {_fmt_z(meta)} · slice P(high risk) {rec['prob']:.2f}",
                caption=_caption(rec))))
    return table, panels, layer


# --------------------------------------------------------------------------- main
def explain_run(run_dir: str | Path, out: str | Path, *, patients: Sequence[str] | None = None,
                top: int = 4, split: str | None = None, method: str = "gradcam", target: str = "high-risk",
                runs: Sequence[str | Path] = (), max_slices: int | None = None, batch_size: int = 8,
                overwrite: bool = False, write_to_runs: bool = True,
                target_layer: str | None = None) -> ExplainResult:
    """Explain a trained run's predictions for some patients and measure where the CAM goes.

    Args:
        run_dir: a ``npcai train`` run folder. A cross-validated run (``--folds K``) explains
            each patient with its out-of-fold model: the fold run that held that patient out,
            never a fold model that trained on it (column ``model`` of the tables names it).
        out: output folder (must be empty unless ``overwrite``).
        patients: pseudonyms to explain; default the ``top`` highest-risk patients of ``split``.
        top: how many patients when ``patients`` is not given.
        split: the split the top patients come from (default ``test``; ``oof``, every patient,
            for a cross-validated run).
        method: ``gradcam``, ``gradcam++``, ``scorecam`` or ``layercam``.
        target: ``high-risk`` or ``predicted``.
        runs: more runs (e.g. other ROI variants) to explain for the same patients: one
            figure per patient with one panel per run, and their rows in the tables.
        max_slices: at most this many slices per patient (largest lesion area first).
        batch_size: images per CAM pass.
        overwrite: replace a non-empty ``out``.
        write_to_runs: also write ``RUN/explain/localisation_summary.csv`` for each run.
        target_layer: Grad-CAM layer by module name (e.g. ``"layer3"``); default: the deepest
            stage with a map of at least 7x7 at the run's input size (:func:`find_target_layer`).

    Returns:
        :class:`ExplainResult`.
    """
    if method not in METHODS:
        raise NpcaiError(f"--method {method!r}: unknown CAM method; choose one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise NpcaiError(f"--target {target!r}: unknown target; choose one of {', '.join(TARGETS)}")
    if max_slices is not None and max_slices < 1:
        raise NpcaiError(f"--max-slices {max_slices}: must be at least 1")
    run_dirs = [Path(run_dir), *[Path(r) for r in runs]]
    check_output_path(out, run_dirs)
    for rd in run_dirs:
        if not rd.is_dir():
            raise NpcaiError(f"{rd}: run folder not found; pass a folder written by `npcai train`")
    names = [rd.resolve().name for rd in run_dirs]
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    if split is None:
        from npcai.models.folds import OOF, is_cv_run

        split = OOF if is_cv_run(run_dirs[0]) else "test"
    chosen = select_patients(run_dirs[0], patients=patients, top=top, split=split)
    preds = _patient_predictions(run_dirs[0]).set_index("patient_id")
    probs = preds["prob"].astype(float).to_dict()
    split_of = preds["split"].astype(str).to_dict()

    models = [_models_for(rd, chosen) for rd in run_dirs]
    for rd, parts in zip(run_dirs, models):
        if not parts:
            raise NpcaiError(f"{rd}: none of the patients {', '.join(chosen)} has an out-of-fold prediction in "
                             "this cross-validated run; choose other --patients")
        for lr, _ in parts:
            if lr.model is None:
                members = ", ".join(str(m) for m in getattr(lr, "members", [])) or "its member runs"
                raise NpcaiError(f"{rd}: an ensemble run has no single network to explain; explain {members}")
    loaded = [parts[0][0] for parts in models]      # one loaded run per run folder (its ROI, its config)
    cohort_dir = Path(loaded[0].roi.root).parent.parent
    signal = signal_band(cohort_dir)

    table: list[dict[str, Any]] = []
    all_panels: list[dict[str, list]] = []
    layers: dict[str, str] = {}
    for rd, parts, name in zip(run_dirs, models, names):
        panels: dict[str, list] = {}
        for lr, mine in parts:
            rows, part_panels, layer = _explain_one(lr, name, mine, method=method, target=target,
                                                    max_slices=max_slices, batch_size=batch_size, signal=signal,
                                                    probs=probs, split_of=split_of, target_layer=target_layer)
            model = Path(lr.path).resolve().relative_to(rd.resolve()).as_posix() \
                if Path(lr.path).resolve() != rd.resolve() else "."
            for rec in rows:
                rec["model"] = model
            table.extend(rows)
            panels.update(part_panels)
            layers[name] = layer.name
        all_panels.append({p: panels[p] for p in chosen if p in panels})
    if not table:
        raise NpcaiError(f"{run_dirs[0]}: none of the patients {', '.join(chosen)} has ROI slices; "
                         "choose other --patients")
    localisation = pd.DataFrame(table)
    summary = summarise_localisation(localisation)
    title = f"{method} · target {target} · {len(chosen)} patients"

    files: list[Path] = []
    with atomic_output_dir(out, overwrite) as tmp:
        main_panels = all_panels[0]
        for patient in track(list(main_panels), "Drawing overlays"):
            entries = main_panels[patient]
            for meta, _, panel in entries:
                files.append(save_overlay(tmp / "overlays" / f"{patient}_{_fmt_z(meta)}.png", panel))
            files.append(save_montage(
                tmp / f"montage_{patient}.png", [p for _, _, p in entries],
                f"{patient} · run {names[0]} ({_variant_label(loaded[0].roi)}) · "
                f"patient P(high risk) {probs.get(patient, float('nan')):.2f} · {method}, target {target}"))
        if len(loaded) > 1:
            for patient in chosen:
                files.extend(_save_across_runs(tmp, patient, all_panels, names, loaded, method, target))
        atomic_write_text(tmp / "localisation.csv", localisation.to_csv(index=False))
        atomic_write_text(tmp / "localisation_summary.csv", summary.to_csv(index=False))
        files.append(plot_localisation(summary, tmp / "localisation.png",
                                       title=f"Where the CAM energy goes ({title}); bars: mean over "
                                             "patients with 95% CI, black ticks: uniform attention"))
        meta = {"runs": {n: str(rd.resolve()) for n, rd in zip(names, run_dirs)}, "patients": chosen,
                "split": split if not patients else None, "method": method, "target": target,
                "max_slices": max_slices, "target_layers": layers, "signal": signal,
                "px_regions": region_names("px"), "mm_regions": region_names("mm")}
        atomic_write_text(tmp / "explain.json", json.dumps(meta, indent=1, default=str))
        files = [Path(out) / f.relative_to(tmp) for f in files]
        files += [Path(out) / n for n in ("localisation.csv", "localisation_summary.csv", "explain.json")]
    if write_to_runs:
        for rd, name in zip(run_dirs, names):
            atomic_write_text(rd / "explain" / "localisation_summary.csv",
                              summary[summary["run"] == name].to_csv(index=False))
            atomic_write_text(rd / "explain" / "localisation.csv",
                              localisation[localisation["run"] == name].to_csv(index=False))
    return ExplainResult(out=Path(out), localisation=localisation, summary=summary, patients=chosen,
                         runs=names, target_layers=layers, signal=signal, files=files)


def _save_across_runs(tmp: Path, patient: str, all_panels, names, loaded, method, target) -> list[Path]:
    """One panel per run for the patient's slice with the largest lesion area in the main run
    (study 000 Fig. 5); a run lacking that slice shows its own largest one."""
    main = all_panels[0].get(patient)
    if not main:
        return []
    def area(meta):
        return float(meta.get("tumour_area_px", 0)) + float(meta.get("nodes_area_px", 0))
    best_meta = max(main, key=lambda e: area(e[0]))[0]
    key = (str(best_meta.get("timepoint", "")), int(best_meta["slice_index"]))
    panels = []
    for panels_of_run, name, lr in zip(all_panels, names, loaded):
        entries = panels_of_run.get(patient)
        if not entries:
            continue
        match = [e for e in entries if (str(e[0].get("timepoint", "")), int(e[0]["slice_index"])) == key]
        meta, prob, panel = match[0] if match else max(entries, key=lambda e: area(e[0]))
        panels.append(Panel(panel.image, panel.cam, panel.labels, panel.geometry,
                            title=f"{_variant_label(lr.roi)} · run {name}\n{patient} {_fmt_z(meta)} · "
                                  f"slice P(high risk) {prob:.2f}",
                            band=panel.band, caption=panel.caption))
    if len(panels) < 2:
        return []
    path = save_montage(tmp / f"runs_{patient}.png", panels,
                        f"{patient}: one slice across runs ({method}, target {target})", ncols=len(panels))
    return [path]
