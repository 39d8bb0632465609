"""Apply seed 002's rule with a residual study's two models to a cohort, judge it, score it.

Given the runs of a residual-tumour study (``npcai study run residual``: CCRT-trained and
IC+CCRT-trained runs), :func:`recommend_residual`

1. picks per treatment the run with the highest *validation* AUC (the test patients choose
   nothing); a run's treatment is the one its training patients received;
2. predicts every patient with **both** models through :func:`npcai.runs.predict_patients`, so
   each patient also gets the prediction of the model of the treatment not received; each
   model's threshold is fixed on its own validation patients (Youden's J);
3. recommends by the four situations and judges model and physician by the twelve-situation
   principle (:mod:`npcai.decision.residual_rule`), with Table 3 and the tests;
4. on the phantom, scores the recommendation and the physicians' choices against the
   counterfactual truth (:mod:`npcai.decision.truth`).

Patients: on the study's own cohort, the test patients of both models (the union of the CCRT
and IC+CCRT test sets; neither model trained on any of them); on another cohort, every patient
(or those given).

:func:`write_recommendation` writes the result folder (see ``docs/contracts.md``,
"Recommendation folder (study 002)").

Examples:
    >>> runs = study_runs("study002")                                   # doctest: +SKIP
    >>> result = recommend_residual(runs)                               # doctest: +SKIP
    >>> print(result.comparison.model)                                  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.decision.residual_rule import (CCRT, IC_CCRT, TREATMENTS, DecisionComparison, compare_judgements,
                                          judge_all, table3)
from npcai.decision.truth import Agreement, PolicyValue, agreement_with_truth, phantom_counterfactuals, policy_value
from npcai.errors import NpcaiError

__all__ = ["ENDPOINT", "TreatmentModel", "TruthScores", "ResidualRecommendation", "study_runs", "recommend_study",
           "summary_dict",
           "treatment_models", "recommend_residual", "write_recommendation", "check_clinical"]

log = logging.getLogger(__name__)

#: the endpoint both models must predict
ENDPOINT = "residual-tumour"
_LABEL = "residual_tumour"


@dataclass(frozen=True)
class TreatmentModel:
    """The run used as one treatment's model and how its threshold was fixed."""

    treatment: str
    run: Path
    backbone: str | None
    unit: str | None
    val_auc: float | None
    threshold: float
    threshold_source: str
    selection: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["run"] = str(self.run)
        return d


@dataclass(frozen=True)
class TruthScores:
    """The recommendation and the physicians' choices against the phantom's truth.

    Attributes:
        agreement_residual: recommendation vs ``best_treatment_residual`` (the regimen with
            the lower true residual probability).
        agreement_dfs: recommendation vs ``best_treatment`` (higher true 5-year DFS).
        physician_agreement_residual: physicians' choices vs ``best_treatment_residual``.
        physician_agreement_dfs: physicians' choices vs ``best_treatment``.
        policy_residual: mean true probability of non-residual tumour under each policy.
        policy_dfs: mean true 5-year DFS under each policy.
    """

    agreement_residual: Agreement
    agreement_dfs: Agreement
    physician_agreement_residual: Agreement
    physician_agreement_dfs: Agreement
    policy_residual: PolicyValue
    policy_dfs: PolicyValue

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ResidualRecommendation:
    """Everything the study-002 recommendation produced for one cohort.

    Attributes:
        cohort: the cohort whose patients were recommended for.
        models: ``{"CCRT": TreatmentModel, "IC+CCRT": TreatmentModel}``.
        patients: one row per judged patient (indexed by pseudonym): ``prob_ccrt``,
            ``prob_ic_ccrt``, ``residual_ccrt_pred``, ``residual_ic_ccrt_pred``,
            ``recommendation``, ``treatment``, ``physician_choice``, ``residual_tumour``,
            ``model_judgement``, ``physician_judgement``, ``seed_situation``, ``reason``.
        table3: seed 002's Table 3 layout (:func:`npcai.decision.residual_rule.table3`).
        comparison: correct rates and tests.
        truth: phantom truth scores (None when the cohort is not a phantom).
        patient_set: which patients were judged, in words.
        notes: patients left out and why, regimen switches.
    """

    cohort: Path
    models: dict[str, TreatmentModel]
    patients: pd.DataFrame
    table3: pd.DataFrame
    comparison: DecisionComparison
    truth: TruthScores | None
    patient_set: str
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- the models
def study_runs(study_dir: str | Path) -> list[Path]:
    """The finished training runs of a study folder (``STUDY/runs/*``)."""
    from npcai.runs import is_finished

    study_dir = Path(study_dir)
    runs_dir = study_dir / "runs"
    if not runs_dir.is_dir():
        raise NpcaiError(f"{study_dir}: not a study folder (no runs/); give the folder written by "
                         "`npcai study run residual`")
    runs = sorted(p for p in runs_dir.iterdir() if p.is_dir() and is_finished(p))
    if not runs:
        raise NpcaiError(f"{study_dir}: no finished run under runs/; finish the study with `npcai study run`")
    return runs


def _run_treatment(run: Path, clinical: pd.DataFrame) -> str:
    """The treatment the run's training patients received (they must share one)."""
    from npcai.runs import read_split

    split = read_split(run)
    train = split.index[split["split"] == "train"]
    received = clinical["treatment"].reindex(train).dropna().unique() if "treatment" in clinical else []
    if len(received) != 1 or received[0] not in TREATMENTS:
        got = ", ".join(map(str, sorted(map(str, received)))) or "none recorded"
        raise NpcaiError(f"run {run.name}: its training patients received {got}; the study-002 rule needs one "
                         "model trained on CCRT patients and one on IC+CCRT patients (train with --where "
                         "'treatment == \"CCRT\"' and 'treatment == \"IC+CCRT\"')")
    return str(received[0])


def _threshold(run) -> tuple[float, str]:
    from npcai.stats.evaluate import validation_threshold

    thr = validation_threshold(run.validation(), default=0.5)
    return float(thr["value"]), str(thr["source"])


def treatment_models(runs: Sequence[str | Path], clinical: pd.DataFrame) -> dict[str, TreatmentModel]:
    """Per treatment, the training run with the highest validation AUC among ``runs``.

    Runs that are not training runs (ensembles, cross-validation, predictions) are skipped.
    Every training run must predict the residual-tumour endpoint.

    Raises:
        NpcaiError: a run of another endpoint, a run trained on both treatments, or a treatment
            without a model.
    """
    from npcai.runs import read_run, read_summary

    candidates: dict[str, list[tuple[float, Path, object]]] = {t: [] for t in TREATMENTS}
    for path in map(Path, runs):
        run = read_run(path)
        if run.config.kind != "train":
            continue
        if run.endpoint != ENDPOINT:
            raise NpcaiError(f"run {path.name} predicts {run.endpoint!r}, not {ENDPOINT!r}; both models of the "
                             "study-002 rule must be residual-tumour models")
        auc = read_summary(path).get("val_auc")
        auc = float(auc) if auc is not None and np.isfinite(float(auc)) else float("-inf")
        candidates[_run_treatment(path, clinical)].append((auc, path, run))
    models = {}
    for treatment, cands in candidates.items():
        if not cands:
            raise NpcaiError(f"no {treatment}-trained residual-tumour run among the {len(runs)} run(s) given; "
                             "the study-002 rule needs a CCRT model and an IC+CCRT model")
        auc, path, run = max(cands, key=lambda c: c[0])
        thr, source = _threshold(run)
        why = (f"highest validation AUC ({auc:.3f}) among {len(cands)} {treatment} run(s)" if np.isfinite(auc)
               else f"first of {len(cands)} {treatment} run(s) (no validation AUC recorded)")
        models[treatment] = TreatmentModel(treatment=treatment, run=path, backbone=run.backbone,
                                           unit=run.config.option("unit"),
                                           val_auc=auc if np.isfinite(auc) else None,
                                           threshold=thr, threshold_source=source, selection=why)
    return models


# ---------------------------------------------------------------------------- the cohort
def check_clinical(clinical: pd.DataFrame, patients: Sequence[str], where: str) -> None:
    """Refuse (one line) a cohort without ``treatment`` / ``physician_choice`` / residual-tumour
    columns, or a patient whose regimen is not CCRT or IC+CCRT."""
    for col, what in (("treatment", "the regimen each patient received"),
                      ("physician_choice", "the regimen the physician chose"),
                      (_LABEL, "the observed residual tumour (0/1)")):
        if col not in clinical.columns:
            raise NpcaiError(f"{where}: no column {col!r} ({what}); the study-002 recommendation needs "
                             "treatment and physician_choice (CCRT or IC+CCRT) and residual_tumour (0/1) per "
                             "patient: add the column to the clinical file and ingest again")
    sub = clinical.reindex(list(patients))
    for col in ("treatment", "physician_choice"):
        bad = ~sub[col].isin(TREATMENTS)
        if bad.any():
            p = sub.index[bad][0]
            raise NpcaiError(f"{where}: patient {p} has {col} {sub.loc[p, col]!r}; the study-002 rule compares "
                             "CCRT and IC+CCRT only: give CCRT or IC+CCRT, or leave the patient out")
    y = pd.to_numeric(sub[_LABEL], errors="coerce")
    bad = sub[_LABEL].notna() & ~y.isin([0, 1])
    if bad.any():
        p = sub.index[bad][0]
        raise NpcaiError(f"{where}: patient {p} has residual_tumour {sub.loc[p, _LABEL]!r}; give 1 (residual), "
                         "0 (non-residual) or leave it empty")


def _patients(models: dict[str, TreatmentModel], cohort: Path, given: Sequence[str] | None,
              same_cohort: bool, all_ids: list[str]) -> tuple[list[str], str]:
    from npcai.runs import read_split

    if given:
        unknown = [p for p in given if p not in set(all_ids)]
        if unknown:
            raise NpcaiError(f"{cohort}: no patient {unknown[0]!r} in the cohort; see `npcai validate {cohort}`")
        return list(dict.fromkeys(given)), f"{len(set(given))} patients given"
    if not same_cohort:
        return all_ids, f"every patient of cohort {cohort.name}"
    test: list[str] = []
    for m in models.values():
        split = read_split(m.run)
        test += [p for p in split.index[split["split"] == "test"] if p not in test]
    if not test:
        raise NpcaiError(f"{cohort}: the models have no test patients to recommend for; give a cohort or patients")
    return sorted(test), "the test patients of both models (the CCRT and IC+CCRT test sets, on which neither trained)"


def _predict(model: TreatmentModel, cohort: Path, patients: list[str]) -> tuple[pd.Series, dict]:
    from npcai.runs import predict_patients

    pred = predict_patients(model.run, cohort, patients)
    return pred.patients.set_index("patient_id")["prob"].astype(float), pred.info.get("skipped", {})


def _truth_scores(cohort: Path, patients: pd.DataFrame) -> TruthScores | None:
    from npcai.cohort.phantom import load_truth

    truth = load_truth(cohort)
    if truth is None:
        return None
    idx = patients.index
    missing = idx.difference(truth.index)
    if len(missing):
        raise NpcaiError(f"{cohort}: the phantom truth has no row for patient {missing[0]}; regenerate the phantom")
    truth = truth.loc[idx]
    res, dfs = phantom_counterfactuals(truth, "residual"), phantom_counterfactuals(truth, "dfs5")
    rec, phys = patients["recommendation"], patients["physician_choice"]
    return TruthScores(
        agreement_residual=agreement_with_truth(rec, res.best),
        agreement_dfs=agreement_with_truth(rec, dfs.best),
        physician_agreement_residual=agreement_with_truth(phys, res.best),
        physician_agreement_dfs=agreement_with_truth(phys, dfs.best),
        policy_residual=policy_value(rec, res.outcome_by_treatment, phys),
        policy_dfs=policy_value(rec, dfs.outcome_by_treatment, phys))


def recommend_residual(runs: Sequence[str | Path], cohort: str | Path | None = None,
                       patients: Sequence[str] | None = None) -> ResidualRecommendation:
    """Seed 002's recommendation with a residual study's CCRT and IC+CCRT models.

    Args:
        runs: the study's run folders (:func:`study_runs`); one CCRT- and one IC+CCRT-trained
            residual-tumour run are chosen by validation AUC.
        cohort: the cohort to recommend for (default: the one the runs were trained on, whose
            test patients are then used).
        patients: pseudonyms to recommend for (default: see the module docstring).

    Returns:
        :class:`ResidualRecommendation`.

    Raises:
        NpcaiError: bad runs, a cohort without treatment / physician_choice / residual_tumour,
            or regimens other than CCRT and IC+CCRT (one line naming the patient or column).
    """
    from npcai.cohort.model import Cohort
    from npcai.runs import cohort_id, read_config

    runs = [Path(r) for r in runs]
    if not runs:
        raise NpcaiError("no run given; give the residual study's folder")
    from npcai.models.folds import is_cv_run

    if any(is_cv_run(r) for r in runs):
        raise NpcaiError("the runs are cross-validated; the rule compares both treatment models on one test cohort, "
                         "so it needs runs trained on a single split (run the residual study without folds)")
    train_cohorts = {str(read_config(r).cohort_path) for r in runs if read_config(r).kind == "train"}
    if len(train_cohorts) != 1 or "None" in train_cohorts:
        raise NpcaiError(f"the runs were trained on {len(train_cohorts)} cohorts ({', '.join(sorted(train_cohorts))}); "
                         "give the runs of one residual study")
    train_cohort = Path(next(iter(train_cohorts)))
    train_clinical = Cohort.load(train_cohort).clinical()
    if "treatment" not in train_clinical.columns:
        raise NpcaiError(f"{train_cohort}/clinical.csv: no column 'treatment'; the study-002 rule needs the regimen "
                         "each patient received")
    models = treatment_models(runs, train_clinical)
    cohort = Path(cohort) if cohort is not None else train_cohort
    co = Cohort.load(cohort)
    clinical = co.clinical()
    same = cohort_id(cohort) == read_config(models[CCRT].run).cohort_id
    ids, patient_set = _patients(models, cohort, patients, same, list(co.patient_ids))
    check_clinical(clinical, ids, f"{cohort}/clinical.csv")

    probs, notes = {}, []
    for t, m in models.items():
        probs[t], skipped = _predict(m, cohort, ids)
        for p, why in skipped.items():
            notes.append(f"patient {p}: not predicted by the {t} model ({why}); not judged")
    both = [p for p in ids if p in probs[CCRT].index and p in probs[IC_CCRT].index]
    table = clinical.loc[both, ["treatment", "physician_choice", _LABEL]].copy()
    unknown = table[_LABEL].isna()
    if unknown.any():
        notes.append(f"{int(unknown.sum())} patient(s) without an observed residual-tumour status: not judged")
        table = table[~unknown]
    if table.empty:
        raise NpcaiError(f"{cohort}: no patient has both predictions and an observed residual-tumour status")
    table[_LABEL] = table[_LABEL].astype(int)
    table.insert(0, "prob_ccrt", probs[CCRT].loc[table.index])
    table.insert(1, "prob_ic_ccrt", probs[IC_CCRT].loc[table.index])
    table.insert(2, "residual_ccrt_pred", table["prob_ccrt"] > models[CCRT].threshold)
    table.insert(3, "residual_ic_ccrt_pred", table["prob_ic_ccrt"] > models[IC_CCRT].threshold)
    judged = judge_all(table)
    judged = judged[["prob_ccrt", "prob_ic_ccrt", "residual_ccrt_pred", "residual_ic_ccrt_pred", "recommendation",
                     "treatment", "physician_choice", _LABEL, "model_judgement", "physician_judgement",
                     "seed_situation", "reason"]]
    judged.index.name = "patient_id"
    switched = int((judged["treatment"] != judged["physician_choice"]).sum())
    if switched:
        notes.append(f"{switched} patient(s) received a regimen other than the physician's choice (toxicity, "
                     "refusal); Table 3 judges the regimen received, whose effect was observed, and the policy "
                     "value uses the physician's choice")
    return ResidualRecommendation(cohort=cohort, models=models, patients=judged, table3=table3(judged),
                                  comparison=compare_judgements(judged), truth=_truth_scores(cohort, judged),
                                  patient_set=patient_set, notes=notes)


# ---------------------------------------------------------------------------- the folder
def summary_dict(result: ResidualRecommendation) -> dict:
    """The JSON-able summary of a result (``summary.json``)."""
    return {"format": "npcai-recommendation-residual/1", "cohort": str(result.cohort),
            "patients": result.patient_set, "n_patients": int(len(result.patients)),
            "models": {t: m.to_dict() for t, m in result.models.items()},
            "recommendations": {k: int(v) for k, v in result.patients["recommendation"].value_counts().items()},
            "comparison": result.comparison.to_dict(),
            "truth": result.truth.to_dict() if result.truth is not None else None,
            "notes": list(result.notes)}


def write_recommendation(result: ResidualRecommendation, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``out/patients.csv``, ``out/table3.csv`` and ``out/summary.json`` (atomically)."""
    from npcai.fsutil import atomic_output_dir

    out = Path(out)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        result.patients.reset_index().to_csv(tmp / "patients.csv", index=False)
        result.table3.to_csv(tmp / "table3.csv", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary_dict(result), indent=2, default=str) + "\n")
    return out


def recommend_study(study_dir: str | Path, out: str | Path, *, cohort: str | Path | None = None,
                    patients: Sequence[str] | None = None, overwrite: bool = False) -> ResidualRecommendation:
    """:func:`recommend_residual` with a residual study folder's runs, written to ``out``.

    ``out`` may not be, contain or lie inside the study or the cohort.
    """
    from npcai.fsutil import check_output_path

    check_output_path(out, [study_dir, cohort])
    result = recommend_residual(study_runs(study_dir), cohort, patients)
    write_recommendation(result, out, overwrite=overwrite)
    return result
