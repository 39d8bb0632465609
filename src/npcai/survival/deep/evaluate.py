"""``npcai evaluate`` of a survival run (study 004): per cohort of the run, the prognostic score's
C-index with CI, the Cox hazard ratio per SD of each score, the treatment x predictive-score
interaction's Wald p (study 004's p_interaction), and the association of the Predictive-score
with each clinical factor (Table D1, :mod:`npcai.survival.deep.associations`; also written to
``RUN/predictive_score_clinical.csv``).

On a phantom cohort (ground truth beside the export) each cohort also gets the oracle C-index
(the true log-hazard scored on the same patients) and the AUC of the Predictive-score for the
planted necrotic core (``necrosis``, whose patients benefit from IC+CCRT: a low Predictive-score,
i.e. a lower hazard under IC+CCRT, should mean necrosis, so the AUC is that of ``-predictive_score``).

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

__all__ = ["evaluate_survival_run", "survival_cohort_metrics", "phantom_truth_metrics", "SCORES", "SPLIT_ORDER",
           "ASSOCIATIONS_CSV"]

log = logging.getLogger(__name__)

SCORES = ("prognostic_score", "predictive_score")
#: the order cohorts are reported in (other split names follow, sorted)
SPLIT_ORDER = ("train", "val", "test", "test_external", "external")
#: Table D1 of a survival run (written by evaluate beside metrics.json)
ASSOCIATIONS_CSV = "predictive_score_clinical.csv"


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


def _interaction(d: pd.DataFrame, score: str = "predictive_score") -> dict[str, Any]:
    """Wald p of treatment x score in ``Surv ~ treatment * score``."""
    from npcai.survival.cox import CoxPH

    if d["treatment"].nunique() < 2:
        return {"unavailable": "one treatment only in this cohort"}
    data = d[["time", "event", "treatment", score]].astype(float)
    try:
        fit = CoxPH().fit(data, "time", "event", [f"treatment*{score}"], what="interaction model")
        test = fit.term_test(f"treatment:{score}")
    except NpcaiError as exc:
        return {"unavailable": str(exc)}
    coef = fit.summary_.loc[[c for c in fit.summary_.index if ":" in str(c)][0]]
    return {"p": float(test.p_value), "chisq": float(test.chisq), "hr": float(coef["hr"]),
            "hr_low": float(coef["hr_low"]), "hr_high": float(coef["hr_high"]),
            "model": f"Surv(time, event) ~ treatment * {score} (Cox, Efron ties)"}


def phantom_truth_metrics(d: pd.DataFrame, truth: pd.DataFrame, endpoint: str) -> dict[str, Any]:
    """The phantom's ceiling and planted signal on the patients of ``d`` (indexed by patient_id).

    ``oracle_c_index``: Harrell's C (with CI) of the true log-hazard ``log_hazard_<endpoint>``;
    ``necrosis_auc``: DeLong AUC (with CI) of ``-predictive_score`` for the true ``necrosis``;
    ``necrosis_interaction``: the p_interaction the true necrosis itself reaches on these
    patients (the ceiling of the predictive score's p_interaction).
    """
    from npcai.stats.auc import auc_ci

    t = truth.reindex(d.index)
    out: dict[str, Any] = {}
    col = f"log_hazard_{endpoint}"
    if col in t.columns and t[col].notna().all():
        out["oracle_c_index"] = _c_index(d.assign(oracle=t[col].to_numpy(float)), "oracle")
        out["oracle_c_index"]["score"] = col
    else:
        out["oracle_c_index"] = {"unavailable": f"the phantom truth has no {col} for these patients"}
    if "necrosis" in t.columns and t["necrosis"].notna().all() and t["necrosis"].nunique() == 2:
        try:
            a = auc_ci(t["necrosis"].astype(int).to_numpy(), -d["predictive_score"].to_numpy(float),
                       what="AUC of the predictive score for necrosis")
        except NpcaiError as exc:
            out["necrosis_auc"] = {"unavailable": str(exc)}
            return out
        out["necrosis_interaction"] = _interaction(d.assign(necrosis=t["necrosis"].to_numpy(float)), "necrosis")
        out["necrosis_auc"] = {"auc": a.auc, "low": a.low, "high": a.high, "n": int(len(t)),
                               "n_necrosis": int(t["necrosis"].sum()),
                               "score": "-predictive_score (low = IC+CCRT lowers the hazard)"}
    else:
        out["necrosis_auc"] = {"unavailable": "necrosis is absent or has one value among these patients"}
    return out


def _associations(d: pd.DataFrame, clinical: pd.DataFrame | None) -> list[dict[str, Any]] | dict[str, str]:
    from npcai.survival.deep.associations import CLINICAL_FACTORS, predictive_score_associations

    if clinical is None:
        return {"unavailable": "the cohort's clinical table is not available"}
    factors = [f for f in CLINICAL_FACTORS if f in clinical.columns]
    joined = d[["predictive_score"]].join(clinical[factors])
    table = predictive_score_associations(joined, factors=factors)
    return json.loads(table.to_json(orient="records"))


def survival_cohort_metrics(d: pd.DataFrame, clinical: pd.DataFrame | None = None,
                            truth: pd.DataFrame | None = None, endpoint: str | None = None) -> dict[str, Any]:
    """Metrics of one cohort: rows with time, event, treatment and the :data:`SCORES`.

    With ``clinical`` (indexed by patient_id; ``d`` then needs a ``patient_id`` column) the
    Predictive-score's association with each clinical factor (Table D1); with the phantom's
    ``truth`` and the ``endpoint``, :func:`phantom_truth_metrics`.
    """
    d = d.dropna(subset=["time", "event", *SCORES])
    out = {"n_patients": int(len(d)), "n_events": int(d["event"].sum()),
           "treatment_counts": {str(int(k)): int(v) for k, v in d["treatment"].value_counts().sort_index().items()},
           "c_index_prognostic": _c_index(d, "prognostic_score") if len(d) else {"unavailable": "no patient"},
           "hr_per_sd": {s: _hr_per_sd(d, s) for s in SCORES},
           "interaction": _interaction(d)}
    if clinical is not None or truth is not None:
        by_id = d.set_index("patient_id")
        if clinical is not None:
            out["predictive_score_clinical"] = _associations(by_id, clinical)
        if truth is not None and endpoint is not None and len(d):
            out["phantom"] = phantom_truth_metrics(by_id, truth, endpoint)
    return out


def _clinical_and_truth(run: RunFolder) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The clinical table and phantom truth of the run's cohort (None when the cohort is gone)."""
    from npcai.cohort.model import Cohort
    from npcai.cohort.phantom.truth import load_truth

    if run.cohort is None or not (Path(run.cohort) / "cohort.json").is_file():
        log.warning("%s: its cohort %s is not there; no Table D1 and no phantom truth", run.path, run.cohort)
        return None, None
    try:
        truth = load_truth(run.cohort)
    except NpcaiError as exc:     # a phantom cohort copied without its pseudonym map: say so, go on
        log.warning("%s; evaluated without the phantom truth", exc)
        truth = None
    return Cohort.load(run.cohort).clinical(), truth


def _write_associations(run: RunFolder, metrics: dict[str, Any]) -> None:
    from npcai.runs.folder import write_csv
    from npcai.survival.deep.associations import ASSOCIATION_COLUMNS

    rows = [{"cohort": name, **r} for name, c in metrics["cohorts"].items()
            for r in (c.get("predictive_score_clinical") if isinstance(c.get("predictive_score_clinical"), list)
                      else [])]
    if rows:
        write_csv(run.path / ASSOCIATIONS_CSV, pd.DataFrame(rows, columns=["cohort", *ASSOCIATION_COLUMNS]))


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
                               "cohorts": {}}
    clinical, truth = _clinical_and_truth(run)
    for s in order:
        metrics["cohorts"][s] = survival_cohort_metrics(pats[pats["split"] == s], clinical, truth, run.endpoint)
    if write:
        atomic_write_text(run.path / "metrics.json", json.dumps(metrics, indent=1, default=float))
        _write_associations(run, metrics)
    return metrics
