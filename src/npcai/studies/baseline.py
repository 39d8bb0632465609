"""A study's clinical baseline and combined model, on exactly the patients its image models use.

For every patient subset of a study, two models join the image models in the main table:

- **Clinical baseline**: :class:`npcai.stats.baseline.ClinicalModel` on the study's ``baseline:``
  covariates (default: those of :data:`npcai.stats.baseline.BASELINE_COVARIATES` the cohort has,
  :func:`~npcai.stats.baseline.default_covariates`), fitted on the subset's **training** patients
  only and applied to its validation and test patients.
- **Combined model**: the image score and the clinical baseline together, as a logistic
  regression of the label on two scores, ``logit(image probability)`` and the clinical
  baseline's linear predictor, fitted on the **validation** patients only. The image model is
  the subset's run with the highest validation AUC. The training patients' image scores exist
  (``predictions_patients.csv`` has them) but are not used: the network was fitted to those very
  patients, so their scores are optimistic and would over-weight the image; on the validation
  patients both scores are out of sample. The clinical covariates enter with the weights fitted
  on the training patients (stacking), which keeps the validation fit to three parameters.

Test patients are never used in any fit: a model is fitted on the rows of the ``train`` (clinical)
or ``val`` (combined) split and only *predicts* the others; ``tests/studies/test_baseline.py``
checks that changing every test label or covariate leaves the fitted models unchanged.
Cross-validated studies do the same inside each fold (the fold run's own train / val / held-out
patients) and pool the out-of-fold predictions, on the folds the image models share.

Patients missing a covariate are left out (complete cases): out of the fit (counted) and without
a prediction, so the baseline is evaluated on the test patients it can score and every paired
test says how many patients it used.

Examples:
    >>> found = fit_study_baselines(clinical, resolved, steps, preds)   # doctest: +SKIP
    >>> [m.name for m in found.models]                                 # doctest: +SKIP
    ['Clinical baseline', 'Combined: clinical + Expand 10 px']
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.stats.baseline import ClinicalModel, default_covariates, logit
from npcai.studies.schema import ResolvedStudy

__all__ = ["BaselineModel", "StudyBaselines", "fit_study_baselines", "baseline_key", "COVARIATE_LABELS"]

log = logging.getLogger(__name__)

#: how tables name the covariates
COVARIATE_LABELS = {"age": "age", "sex": "sex", "t_stage": "T", "n_stage": "N", "stage": "stage",
                    "ebv_dna": "EBV DNA", "grade": "grade"}


_SCORE_LABELS = {"image_score": "logit(image probability)", "clinical_score": "the clinical baseline's linear predictor"}


def baseline_key(subset: str, kind: str) -> str:
    """The key of a baseline's predictions in the study analysis (as a run's
    ``subset__roi__backbone__unit``)."""
    return f"{subset}__{kind}__–__patient"


@dataclass
class BaselineModel:
    """One fitted baseline of one subset and its predictions.

    Attributes:
        key: its key in the analysis' predictions (:func:`baseline_key`).
        name: how tables name it.
        kind: ``clinical`` or ``combined``.
        subset: the patient subset.
        predictions: patient_id, split, label, prob (+ fold, threshold when cross-validated);
            prob is NaN for a patient missing a covariate.
        description: how it was fitted (methods, notes).
        fitted_on: which patients the fit used, e.g. "72 training patients".
        n_fit: patients fitted (summed over folds).
        n_missing: patients left out of the fits for a missing value (summed over folds).
        n_unscored: evaluated (test / out-of-fold) patients without a prediction.
        image_model: the image run a combined model uses (its step key), else None.
        coefficients: term, coef, coef_per_sd, mean, sd (+ fold).
    """

    key: str
    name: str
    kind: str
    subset: str
    predictions: pd.DataFrame
    description: str
    fitted_on: str
    n_fit: int
    n_missing: int
    n_unscored: int
    image_model: str | None = None
    coefficients: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class StudyBaselines:
    """The baselines of a study: models, the covariates used and left out, and notes."""

    models: list[BaselineModel]
    covariates: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def predictions_table(self) -> pd.DataFrame:
        """Every model's predictions in one long table (model, subset, patient_id, split, label, prob, ...)."""
        frames = [m.predictions.assign(model=m.name, kind=m.kind, subset=m.subset) for m in self.models]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def coefficients_table(self) -> pd.DataFrame:
        frames = [m.coefficients.assign(model=m.name, subset=m.subset) for m in self.models if len(m.coefficients)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _label(covariates: list[str]) -> str:
    return ", ".join(COVARIATE_LABELS.get(c, c) for c in covariates)


# ---------------------------------------------------------------------------- one split
def _fit_clinical(clinical: pd.DataFrame, pred: pd.DataFrame, covariates: list[str],
                  kind: str) -> tuple[ClinicalModel, pd.Series]:
    """Fit on ``pred``'s training rows only; returns the model and its linear predictor for
    every row of ``pred`` (NaN where a covariate is missing)."""
    train = pred[pred["split"] == "train"]
    outcome = train.set_index("patient_id")[["time", "event"] if kind == "cox" else "label"]
    model = ClinicalModel(covariates, kind=kind).fit(clinical.reindex(train["patient_id"]), outcome)
    lp = model.linear_predictor(clinical.reindex(pred["patient_id"]))
    return model, pd.Series(lp.to_numpy(), index=pred.index)


def _fit_combined(pred: pd.DataFrame, image: pd.DataFrame, clinical_lp: pd.Series) -> tuple[ClinicalModel, pd.Series]:
    """Logistic regression of the label on logit(image prob) and the clinical linear predictor,
    fitted on ``pred``'s validation rows only; returns the model and prob for every row."""
    img = image.set_index("patient_id")["prob"].reindex(pred["patient_id"]).to_numpy()
    scores = pd.DataFrame({"image_score": logit(img), "clinical_score": clinical_lp.to_numpy()},
                          index=pred["patient_id"].to_numpy())
    scores.loc[np.isnan(img), "image_score"] = np.nan
    val = (pred["split"] == "val").to_numpy()
    model = ClinicalModel(["image_score", "clinical_score"]).fit(
        scores[val], pd.Series(pred["label"].to_numpy()[val], index=scores.index[val]))
    return model, pd.Series(model.predict(scores).to_numpy(), index=pred.index)


def _prob(lp: pd.Series) -> pd.Series:
    return 1.0 / (1.0 + np.exp(-lp))


# ---------------------------------------------------------------------------- choices
def _val_auc(pred: pd.DataFrame) -> float:
    from npcai.stats.auc import roc_auc

    if "prob" not in pred:
        return float("nan")
    val = pred[pred["split"] == "val"]
    try:
        return roc_auc(val["label"], val["prob"]) if val["label"].nunique() == 2 else float("nan")
    except NpcaiError:
        return float("nan")


def _fold_preds(run_dir: str | Path) -> list[tuple[int, pd.DataFrame]]:
    """(fold, that fold run's patient predictions: train / val / test) of a cross-validated run."""
    from npcai.models.folds import fold_run_dirs
    from npcai.runs import read_predictions

    return [(k, read_predictions(d).patients) for k, d in enumerate(fold_run_dirs(run_dir), start=1)]


def _choose_image_model(runs: list[dict[str, Any]], preds: dict[str, pd.DataFrame], cv: bool) -> str | None:
    """The step key of the image run with the highest validation AUC (mean over folds when
    cross-validated); test patients play no part."""
    best, best_auc = None, -np.inf
    for st in runs:
        if cv:
            aucs = [_val_auc(p) for _, p in _fold_preds(st["run"])]
            auc = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
        else:
            auc = _val_auc(preds[st["step"]])
        if np.isfinite(auc) and auc > best_auc:
            best, best_auc = st["step"], auc
    return best


# ---------------------------------------------------------------------------- the study
def _covariates(resolved: ResolvedStudy, clinical: pd.DataFrame, patients) -> tuple[list[str], dict[str, str]]:
    chosen = resolved.study.baseline
    if chosen is not None:
        missing = [c for c in chosen if c not in clinical.columns]
        if missing:
            raise NpcaiError(f"study {resolved.study.name}: baseline covariate {missing[0]!r} is not a column of "
                             f"clinical.csv (present: {', '.join(clinical.columns)}); edit the study's baseline:")
        return list(chosen), {}
    choice = default_covariates(clinical, patients)
    return choice.covariates, choice.dropped


def fit_study_baselines(clinical: pd.DataFrame, resolved: ResolvedStudy, steps: list[dict[str, Any]],
                        preds: dict[str, pd.DataFrame], names: dict[str, str] | None = None) -> StudyBaselines:
    """The clinical baseline and the combined model of every subset (see the module docstring).

    Args:
        clinical: the cohort's clinical table indexed by patient_id.
        resolved: the study (its ``baseline:`` covariates, or the default).
        steps: the study's step log (``step``, ``source``, ``subset``, ``run``, ...).
        preds: step key -> patient predictions of that run (all splits).
        names: step key -> how tables name that run (for the combined model's name).

    Returns:
        :class:`StudyBaselines`; a subset whose baseline cannot be fitted gets a note instead.
    """
    s = resolved.study
    runs = [st for st in steps if st["source"] == "run"]
    labelled = pd.concat([preds[st["step"]]["patient_id"] for st in runs]).unique() if runs else []
    if s.baseline == []:
        return StudyBaselines([], [], notes=["No clinical baseline: the study's baseline: list is empty."])
    covariates, dropped = _covariates(resolved, clinical, labelled)
    kind = "cox" if s.training.task == "survival" else "logistic"
    out = StudyBaselines([], covariates, dropped)
    if kind == "cox":
        out.notes.append("Survival endpoint: the clinical baseline is a Cox model (its score is the linear "
                         "predictor); the combined model is made for binary endpoints only.")
    if dropped:
        out.notes.append("Clinical covariates left out of the default baseline: "
                         + "; ".join(f"{c} ({why})" for c, why in dropped.items()) + ".")
    if not covariates:
        out.notes.append("No clinical baseline: the cohort has none of the covariates "
                         + ", ".join(COVARIATE_LABELS.values()) + " (name others with the study's baseline:).")
        return out
    for sub in s.subsets:
        sub_runs = [st for st in runs if st["subset"] == sub.name]
        if not sub_runs:
            continue
        try:
            out.models += _subset_baselines(clinical, sub.name, sub_runs, preds, covariates, bool(s.split.folds),
                                            names or {}, kind)
        except NpcaiError as exc:
            out.notes.append(f"Subset {sub.label or sub.name}: no clinical baseline ({exc}).")
    return out


def _subset_baselines(clinical, subset: str, runs: list[dict[str, Any]], preds, covariates: list[str],
                      cv: bool, names: dict[str, str], kind: str = "logistic") -> list[BaselineModel]:
    first = runs[0]
    image_key = _choose_image_model(runs, preds, cv) if kind == "logistic" else None
    image_name = next((st for st in runs if st["step"] == image_key), None)
    folds = _fold_preds(first["run"]) if cv else [(0, preds[first["step"]])]
    image_folds = dict(_fold_preds(image_name["run"])) if cv and image_name else {}
    clin_parts, comb_parts, clin_coef, comb_coef = [], [], [], []
    clin_fit = clin_missing = comb_fit = comb_missing = 0
    describe = comb_describe = ""
    comb_error = None
    for k, pred in folds:
        if kind == "cox" and not {"time", "event"} <= set(pred.columns):
            raise NpcaiError("the runs' patient predictions carry no survival time and event for a Cox baseline")
        pred = pred[pred["label"].notna()].reset_index(drop=True)
        model, lp = _fit_clinical(clinical, pred, covariates, kind)
        clin_fit += model.n_fit_
        clin_missing += model.n_missing_
        describe = model.describe()
        clin_coef.append(model.coefficients().assign(fold=k))
        clin_parts.append(_evaluated_rows(pred, _prob(lp) if kind == "logistic" else lp, k, cv))
        if image_key is None:
            continue
        image = image_folds.get(k) if cv else preds[image_key]
        try:
            comb, prob = _fit_combined(pred, image, lp)
        except NpcaiError as exc:
            comb_error = str(exc)
            continue
        comb_fit += comb.n_fit_
        comb_missing += comb.n_missing_
        comb_describe = comb.describe(_SCORE_LABELS)
        comb_coef.append(comb.coefficients().assign(fold=k))
        comb_parts.append(_evaluated_rows(pred, prob, k, cv))
    models = [_model(subset, "clinical", f"Clinical baseline ({_label(covariates)})", clin_parts, describe,
                     _fitted_on("training", clin_fit, cv), clin_fit, clin_missing, None, clin_coef)]
    if image_key is None:
        if kind == "logistic":
            log.warning("subset %s: no combined model (no image run has a validation AUC)", subset)
    elif comb_error is not None or not comb_parts:
        log.warning("subset %s: no combined model: %s", subset, comb_error)
    else:
        label = names.get(image_key, image_key)
        models.append(_model(subset, "combined", f"Combined: clinical + {label}", comb_parts, comb_describe,
                             _fitted_on("validation", comb_fit, cv), comb_fit, comb_missing, image_key, comb_coef))
    return models


def _fitted_on(which: str, n: int, cv: bool) -> str:
    """'74 training patients', or for cross-validation 'the training patients of each fold
    (370 summed over the folds)'."""
    if cv:
        return f"the {which} patients of each fold ({n} summed over the folds)"
    return f"{n} {which} patient{'s' if n != 1 else ''}"


def _evaluated_rows(pred: pd.DataFrame, prob: pd.Series, fold: int, cv: bool) -> pd.DataFrame:
    """Rows the study evaluates: every split of a single-split study (the threshold comes from
    val, metrics from test); a fold's held-out patients as ``oof`` with the threshold fixed on
    that fold's validation patients."""
    from npcai.stats.evaluate import validation_threshold

    rows = pred[["patient_id", "split", "label"]].assign(prob=prob.to_numpy())
    if not cv:
        return rows
    val = rows[(rows["split"] == "val") & rows["prob"].notna()]
    thr = validation_threshold(val, default=0.5)["value"]
    held = rows[rows["split"] == "test"].assign(split="oof", fold=fold, threshold=thr)
    return held


def _model(subset, kind, name, parts, describe, fitted_on, n_fit, n_missing, image_key, coef) -> BaselineModel:
    pred = pd.concat(parts, ignore_index=True)
    evaluated = pred[pred["split"].isin(("test", "oof"))]
    return BaselineModel(key=baseline_key(subset, kind), name=name, kind=kind, subset=subset, predictions=pred,
                         description=describe, fitted_on=fitted_on, n_fit=n_fit, n_missing=n_missing,
                         n_unscored=int(evaluated["prob"].isna().sum()), image_model=image_key,
                         coefficients=pd.concat(coef, ignore_index=True) if coef else pd.DataFrame())
