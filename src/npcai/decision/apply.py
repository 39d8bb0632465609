"""Apply a finished decision study (study 004) to new patients: ``npcai recommend decision``.

For each patient of a cohort: the deep run's Prognostic- and Predictive-score
(:func:`npcai.runs.predict_patients`, the run's preprocessing rebuilt on that cohort), the
clinical factors the CPTDN uses, the predicted 5-year DFS under CCRT and under IC+CCRT from
the study's nomogram (``OUT/model/nomogram.json``), their difference and the recommendation at
the chosen threshold. The web tool calls :func:`recommend_cohort` on a one-patient cohort.

Examples:
    >>> rec = recommend_cohort("s004", "new_cohort", threshold=2)     # doctest: +SKIP
    >>> rec.table[["patient_id", "difference_pp", "recommended"]]     # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["Recommendations", "recommend_cohort", "write_recommendations", "load_decision_model"]

log = logging.getLogger(__name__)


@dataclass
class Recommendations:
    """Per patient: patient_id, prognostic_score, predictive_score, dfs_ccrt, dfs_ic_ccrt,
    difference_pp, recommended, group (ICT-/CCRT-preferred); and how they were made."""

    table: pd.DataFrame
    threshold: float
    horizon: float
    skipped: dict[str, str] = field(default_factory=dict)
    model: dict = field(default_factory=dict)


def load_decision_model(study_dir: str | Path):
    """(nomogram, cptdn.json dict, deep run folder) of a finished decision study."""
    from npcai.survival.nomogram import Nomogram

    study_dir = Path(study_dir)
    model_dir = study_dir / "model"
    doc_path, nom_path = model_dir / "cptdn.json", model_dir / "nomogram.json"
    if not doc_path.is_file() or not nom_path.is_file():
        raise NpcaiError(f"{study_dir}: not a finished decision study (no model/cptdn.json and model/nomogram.json); "
                         "run `npcai study run decision` first")
    try:
        doc = json.loads(doc_path.read_text())
        nom = Nomogram.from_dict(json.loads(nom_path.read_text()))
    except json.JSONDecodeError as exc:
        raise NpcaiError(f"{model_dir}: unreadable model file ({exc}); re-run the study") from exc
    run_dir = study_dir / doc.get("deep_run", "runs/deep_survival")
    from npcai.fsutil import file_sha256
    from npcai.runs import CONFIG, is_finished

    if not is_finished(run_dir):
        raise NpcaiError(f"{run_dir}: the study's deep survival run is missing or unfinished; re-run the study")
    if doc.get("deep_run_config_sha256") and file_sha256(run_dir / CONFIG) != doc["deep_run_config_sha256"]:
        raise NpcaiError(f"{run_dir}: the deep run changed after the CPTDN was fitted on its scores; re-run the study")
    return nom, doc, run_dir


def _patient_table(cohort_dir: Path, patients: Sequence[str] | None, doc: dict) -> pd.DataFrame:
    from npcai.cohort.model import Cohort
    from npcai.decision.study004 import _scan_facts

    clinical = Cohort.load(cohort_dir).clinical()
    if patients is not None:
        unknown = [p for p in patients if p not in clinical.index]
        if unknown:
            raise NpcaiError(f"{cohort_dir}: no patient {unknown[0]!r} in the cohort; give pseudonyms from its "
                             "clinical.csv")
        clinical = clinical.loc[list(patients)]
    facts = _scan_facts(cohort_dir).reindex(clinical.index)
    d = clinical.copy()
    for c in facts.columns:
        d[c] = facts[c]
    if "ebv_dna" in d.columns:
        d["ebv_dna_high"] = np.where(d["ebv_dna"].isna(), np.nan, (d["ebv_dna"] >= 4000).astype(float))
    return d


def recommend_cohort(study_dir: str | Path, cohort: str | Path, *, patients: Sequence[str] | None = None,
                     threshold: float | None = None) -> Recommendations:
    """Both predicted DFS rates, their difference and the recommendation for a cohort's patients.

    Args:
        study_dir: a finished ``npcai study run decision`` folder.
        cohort: an ingested cohort (any hospital) with the sequences and masks the deep run needs.
        patients: pseudonyms to recommend for (default: every patient).
        threshold: percentage points 0-100 (default: the study's first threshold).
    """
    from npcai.decision.recommend_dfs import (PREFERRED_LABELS, check_threshold, dfs_under_each_treatment,
                                              recommend_by_difference)
    from npcai.decision.study004 import standardise_scores
    from npcai.runs import predict_patients

    nom, doc, run_dir = load_decision_model(study_dir)
    thr = check_threshold(doc["thresholds"][0] if threshold is None else threshold)
    cohort = Path(cohort)
    d = _patient_table(cohort, patients, doc)
    pred = predict_patients(run_dir, cohort, list(d.index) if patients is not None else None).patients
    pred = pred.set_index("patient_id")
    d = d.loc[d.index.intersection(pred.index)]
    skipped = {p: "no scores (see the prediction warnings: missing sequence or mask)"
               for p in (patients or []) if p not in pred.index}
    d["prognostic_score"] = pred["prognostic_score"].reindex(d.index).astype(float)
    d["predictive_score"] = pred["predictive_score"].reindex(d.index).astype(float)
    d, _ = standardise_scores(d, np.zeros(len(d), bool), scaling=doc["score_scaling"])
    need = [v for v in doc["variables"] if v != doc.get("treatment_column", "treatment")]
    lacking = [v for v in need if v not in d.columns]
    if lacking:
        raise NpcaiError(f"{cohort}/clinical.csv: no column {lacking[0]!r}; the CPTDN uses "
                         f"{', '.join(need)}")
    missing = d[need].isna().any(axis=1)
    for p in d.index[missing]:
        cols = [c for c in need if pd.isna(d.loc[p, c])]
        skipped[p] = f"missing {', '.join(cols)}"
    d = d[~missing]
    if d.empty:
        raise NpcaiError(f"{cohort}: no patient has every value the CPTDN needs ({', '.join(need)}); "
                         f"e.g. {next(iter(skipped.items()))[0]}: {next(iter(skipped.values()))}" if skipped else
                         f"{cohort}: no patient to recommend for")
    dfs = dfs_under_each_treatment(nom, d[need], horizon=float(doc["horizon"]),
                                   treatment=doc.get("treatment_column", "treatment"))
    rec = recommend_by_difference(dfs, thr)
    table = pd.DataFrame({"patient_id": d.index, "prognostic_score": d["prognostic_score_raw"].to_numpy(),
                          "predictive_score": d["predictive_score_raw"].to_numpy(),
                          "dfs_ccrt": dfs["dfs_ccrt"].to_numpy(), "dfs_ic_ccrt": dfs["dfs_ic_ccrt"].to_numpy(),
                          "difference_pp": dfs["difference"].to_numpy(), "recommended": rec.to_numpy(),
                          "group": rec.map(PREFERRED_LABELS).to_numpy()})
    if skipped:
        log.warning("%d patient(s) without a recommendation: %s", len(skipped),
                    "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    return Recommendations(table=table, threshold=thr, horizon=float(doc["horizon"]), skipped=skipped,
                           model={"study": str(study_dir), "terms": doc["terms"], "deep_run": str(run_dir)})


def write_recommendations(rec: Recommendations, out: str | Path, *, study: str | Path, cohort: str | Path,
                          overwrite: bool = False) -> Path:
    """``OUT/recommendations.csv`` and ``OUT/summary.json`` (atomically)."""
    from npcai.fsutil import atomic_output_dir, check_output_path

    out = check_output_path(out, [study, cohort])
    with atomic_output_dir(out, overwrite) as tmp:
        rec.table.to_csv(tmp / "recommendations.csv", index=False)
        (tmp / "summary.json").write_text(json.dumps(
            {"threshold_pp": rec.threshold, "horizon_months": rec.horizon, "n": len(rec.table),
             "recommended": rec.table["recommended"].value_counts().to_dict(), "skipped": rec.skipped,
             "model": rec.model, "notice": "research use only, not a medical device"}, indent=1, default=str))
    return out
