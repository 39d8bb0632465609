"""``npcai evaluate`` of a survival run (study 004): per cohort of the run, the prognostic score's
C-index with CI, the Cox hazard ratio per SD of each score, and the treatment x predictive-score
interaction's Wald p (study 004's p_interaction).

The numbers come from the run's ``predictions_patients.csv`` (read through :mod:`npcai.runs`);
every cohort (split) is evaluated separately, none selects anything.

Examples:
    >>> m = evaluate_survival_run("runs/surv")                          # doctest: +SKIP
    >>> m["cohorts"]["test"]["c_index_prognostic"]["c_index"]          # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text
from npcai.runs.folder import RunFolder, read_run

__all__ = ["evaluate_survival_run", "survival_cohort_metrics", "SCORES", "SPLIT_ORDER"]

log = logging.getLogger(__name__)

SCORES = ("prognostic_score", "predictive_score")
#: the order cohorts are reported in (other split names follow, sorted)
SPLIT_ORDER = ("train", "val", "test", "test_external", "external")


def _c_index(d: pd.DataFrame, score: str) -> dict[str, Any]:
    from npcai.stats.concordance import harrell_c

    if int(d["event"].sum()) == 0:
        return {"unavailable": "no event in this cohort"}
    r = harrell_c(d["time"].to_numpy(float), d["event"].to_numpy(int), d[score].to_numpy(float),
                  what=f"C-index of {score}")
    return {"c_index": r.c_index, "low": r.low, "high": r.high, "se": r.se, "n": r.n, "n_events": r.n_events}


def _hr_per_sd(d: pd.DataFrame, score: str) -> dict[str, Any]:
    """Univariable Cox HR per standard deviation (of this cohort) of ``score``."""
    from npcai.survival.cox import CoxPH

    sd = float(d[score].std(ddof=1))
    if not np.isfinite(sd) or sd == 0:
        return {"unavailable": f"{score} is constant in this cohort"}
    data = pd.DataFrame({"time": d["time"], "event": d["event"], "z": (d[score] - d[score].mean()) / sd})
    try:
        fit = CoxPH().fit(data, "time", "event", ["z"], what=f"Cox model of {score}")
    except NpcaiError as exc:
        return {"unavailable": str(exc)}
    row = fit.summary_.loc["z"]
    if not np.isfinite([row["hr"], row["hr_low"], row["hr_high"]]).all():
        return {"unavailable": f"the Cox model of {score} has no finite hazard ratio (too few events)"}
    return {"hr": float(row["hr"]), "hr_low": float(row["hr_low"]), "hr_high": float(row["hr_high"]),
            "p": float(row["p"]), "sd": sd}


def _interaction(d: pd.DataFrame) -> dict[str, Any]:
    """Wald p of treatment x predictive score in ``Surv ~ treatment * predictive_score``."""
    from npcai.survival.cox import CoxPH

    if d["treatment"].nunique() < 2:
        return {"unavailable": "one treatment only in this cohort"}
    data = d[["time", "event", "treatment", "predictive_score"]].astype(float)
    try:
        fit = CoxPH().fit(data, "time", "event", ["treatment*predictive_score"], what="interaction model")
        test = fit.term_test("treatment:predictive_score")
    except NpcaiError as exc:
        return {"unavailable": str(exc)}
    coef = fit.summary_.loc[[c for c in fit.summary_.index if ":" in str(c)][0]]
    return {"p": float(test.p_value), "chisq": float(test.chisq), "hr": float(coef["hr"]),
            "hr_low": float(coef["hr_low"]), "hr_high": float(coef["hr_high"]),
            "model": "Surv(time, event) ~ treatment * predictive_score (Cox, Efron ties)"}


def survival_cohort_metrics(d: pd.DataFrame) -> dict[str, Any]:
    """Metrics of one cohort: rows with time, event, treatment and the :data:`SCORES`."""
    d = d.dropna(subset=["time", "event", *SCORES])
    return {"n_patients": int(len(d)), "n_events": int(d["event"].sum()),
            "treatment_counts": {str(int(k)): int(v) for k, v in d["treatment"].value_counts().sort_index().items()},
            "c_index_prognostic": _c_index(d, "prognostic_score") if len(d) else {"unavailable": "no patient"},
            "hr_per_sd": {s: _hr_per_sd(d, s) for s in SCORES},
            "interaction": _interaction(d)}


def evaluate_survival_run(run_dir: str | Path | RunFolder, *, write: bool = True) -> dict[str, Any]:
    """Evaluate a survival run on each of its cohorts; writes RUN/metrics.json when ``write``.

    Args:
        run_dir: a run folder of ``npcai train --task survival`` (or its :class:`RunFolder`).
        write: write ``metrics.json`` (atomically) into the run folder.

    Returns:
        the metrics (the content of metrics.json): ``cohorts`` maps each split to its metrics.
    """
    run = run_dir if isinstance(run_dir, RunFolder) else read_run(run_dir)
    pats = run.patients
    if "prognostic_score" not in pats.columns:
        raise NpcaiError(f"{run.path}: not a survival run (no prognostic_score among its predictions)")
    lacking = [c for c in ("time", "event", "treatment") if c not in pats.columns]
    if lacking:
        raise NpcaiError(f"{run.path}: the predicted patients have no {', '.join(lacking)} (the cohort lacks the "
                         f"endpoint {run.endpoint!r} or a treatment column); evaluation needs their follow-up")
    present = list(dict.fromkeys(pats["split"].astype(str)))
    order = [s for s in SPLIT_ORDER if s in present] + sorted(s for s in present if s not in SPLIT_ORDER)
    metrics: dict[str, Any] = {"run": run.name, "kind": run.config.kind, "task": "survival",
                               "endpoint": run.endpoint, "roi": run.roi, "backbone": run.backbone,
                               "treatment_coding": {"0": "CCRT", "1": "IC+CCRT"},
                               "selection": "epoch selected on the validation patients' C-index; "
                                            "the other cohorts select nothing",
                               "cohorts": {s: survival_cohort_metrics(pats[pats["split"] == s]) for s in order}}
    if write:
        atomic_write_text(run.path / "metrics.json", json.dumps(metrics, indent=1, default=float))
    return metrics
