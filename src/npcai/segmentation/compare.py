"""Compare two segmentation runs on the same test patients and name the better one.

Studies 000 and 002 keep the architecture with the higher Dice. Here both runs are scored
on the patients that are *test* patients in both runs (never a patient either run trained
or selected on), the per-patient Dice values are paired, and:

* the better run is the one with the higher mean per-patient Dice on ``target``
  (``mean`` = the average of the per-label Dice values, or one region: tumour, nodes, both);
* the difference has a 95% patient-bootstrap CI and a two-sided Wilcoxon signed-rank
  p-value (paired, no normality assumption); the report says whether it is significant.

Both runs must come from the same cohort data (same input hash in config.yaml).

Examples:
    >>> result = compare_segruns("segrun_unet", "segrun_deeplab")   # doctest: +SKIP
    >>> result.better                                               # doctest: +SKIP
    'segrun_deeplab'
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text
from npcai.segmentation.evaluate import evaluate_segrun, load_evaluation, mean_ci
from npcai.segmentation.train import load_segrun

__all__ = ["SegComparison", "compare_segruns", "TARGETS"]

TARGETS = ("mean", "tumour", "nodes", "both")


@dataclass
class SegComparison:
    """Result of :func:`compare_segruns`; ``better`` is the run folder name with the higher Dice."""

    run_a: str
    run_b: str
    target: str
    n_patients: int
    dice_a: dict[str, Any]
    dice_b: dict[str, Any]
    difference: dict[str, Any]           # b - a, with 95% CI
    p_value: float | None
    test: str
    better: str
    significant: bool
    per_region: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _target_values(pts: pd.DataFrame, target: str, labels: list[str]) -> pd.Series:
    if target == "mean":
        return pts[[f"dice_{n}" for n in labels]].mean(axis=1, skipna=True)
    return pts[f"dice_{target}"]


def compare_segruns(run_a: str | Path, run_b: str | Path, *, target: str = "mean", n_boot: int = 2000,
                    alpha: float = 0.05, out: str | Path | None = None) -> SegComparison:
    """Paired comparison of two runs' per-patient Dice on their common test patients.

    Evaluations already written by ``npcai segment evaluate`` are reused; missing ones are
    computed (and written). ``out``: also write the comparison as JSON.
    """
    from scipy.stats import wilcoxon

    if target not in TARGETS:
        raise NpcaiError(f"--target {target!r}: use one of {', '.join(TARGETS)}")
    runs = [load_segrun(r, load_model=False) for r in (run_a, run_b)]
    h = [r.config["cohort"]["input_sha256"] for r in runs]
    if h[0] != h[1]:
        raise NpcaiError(f"{run_a} and {run_b} were trained on different cohort data (input hashes differ); "
                         f"compare runs of the same cohort")
    labels = [r.config["options"]["labels"].split(",") for r in runs]
    common_labels = [n for n in labels[0] if n in labels[1]]
    if target not in ("mean", *common_labels) and not (target == "both" and len(common_labels) > 1):
        raise NpcaiError(f"--target {target}: not segmented by both runs (labels {labels[0]} vs {labels[1]})")
    evals = []
    for r in runs:
        ev = load_evaluation(r.path)
        if ev is None or ev.metrics.get("split") != "test":
            ev = evaluate_segrun(r.path, n_boot=n_boot)
        evals.append(ev)
    test_sets = [set(r.patients("test")) for r in runs]
    common = sorted(test_sets[0] & test_sets[1])
    if not common:
        raise NpcaiError(f"{run_a} and {run_b} share no test patient; train both with the same --split-seed")
    tabs = [ev.patients.set_index("scan_id") for ev in evals]
    scans = sorted(set(tabs[0].index[tabs[0]["patient_id"].isin(common)])
                   & set(tabs[1].index[tabs[1]["patient_id"].isin(common)]))
    a = _target_values(tabs[0].loc[scans], target, common_labels)
    b = _target_values(tabs[1].loc[scans], target, common_labels)
    ok = np.isfinite(a.to_numpy()) & np.isfinite(b.to_numpy())
    a, b = a[ok], b[ok]
    if len(a) < 2:
        raise NpcaiError(f"only {len(a)} common test patient(s) with a defined Dice; a paired test needs more")
    diff = (b - a).to_numpy()
    p = None if np.allclose(diff, 0) else float(wilcoxon(b.to_numpy(), a.to_numpy()).pvalue)
    names = [Path(r.path).name for r in runs]
    if names[0] == names[1]:
        names = [str(r.path) for r in runs]
    better = names[1] if b.mean() > a.mean() else names[0]
    per_region = {}
    for region in [*common_labels] + (["both"] if len(common_labels) > 1 else []):
        ra = tabs[0].loc[scans, f"dice_{region}"].to_numpy()
        rb = tabs[1].loc[scans, f"dice_{region}"].to_numpy()
        per_region[region] = {"a": float(np.nanmean(ra)), "b": float(np.nanmean(rb))}
    result = SegComparison(
        run_a=str(runs[0].path), run_b=str(runs[1].path), target=target, n_patients=int(len(a)),
        dice_a=mean_ci(a.to_numpy(), n_boot=n_boot), dice_b=mean_ci(b.to_numpy(), n_boot=n_boot),
        difference=mean_ci(diff, n_boot=n_boot), p_value=p, test="Wilcoxon signed-rank (paired, two-sided)",
        better=better, significant=p is not None and p < alpha, per_region=per_region)
    if out is not None:
        atomic_write_text(Path(out), json.dumps(result.to_dict(), indent=1))
    return result
