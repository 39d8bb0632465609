"""Standardisation, feature selection and the elastic-net logistic model.

Everything here is fitted on the training patients given to :func:`fit_elastic_net` and on
nothing else (inside each fold's training patients for cross-validation):

1. median imputation of a missing value (a feature pyradiomics could not compute),
2. a variance filter (features constant on the training patients are dropped),
3. standardisation (z-score with the training mean and SD),
4. a correlation filter (of two features with |Pearson r| above ``max_correlation`` on the
   training patients the later one is dropped: pyradiomics' features are highly redundant),
5. logistic regression with the elastic-net penalty (``l1_ratio`` mix of L1 and L2; the L1
   part zeroes further features), classes weighted to balance.

The penalty strength ``C`` is chosen from a grid by the AUC on the *validation* patients
(as the deep runs choose their epoch); ties go to the stronger penalty, and a penalty that
zeroes every coefficient (the same score for everyone) is chosen only when all do. The model used for
prediction is the one fitted on the training patients with that ``C``.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from npcai.errors import NpcaiError

__all__ = ["ModelSettings", "CorrelationFilter", "FittedModel", "build_pipeline", "fit_elastic_net",
           "DEFAULT_C_GRID"]

DEFAULT_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass(frozen=True)
class ModelSettings:
    """The model's options (recorded in the run's options).

    Attributes:
        l1_ratio: elastic-net mix, 0 = ridge (L2), 1 = lasso (L1).
        c_grid: inverse penalty strengths tried; the validation AUC picks one.
        max_correlation: correlation filter threshold (|r|); 1 keeps every feature.
        seed: the solver's random state.
    """

    l1_ratio: float = 0.5
    c_grid: tuple[float, ...] = DEFAULT_C_GRID
    max_correlation: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= float(self.l1_ratio) <= 1:
            raise NpcaiError(f"--l1-ratio {self.l1_ratio}: give a number in [0, 1] (0.5 is typical)")
        if not self.c_grid or any(not (float(c) > 0 and np.isfinite(c)) for c in self.c_grid):
            raise NpcaiError(f"--c-grid {','.join(map(str, self.c_grid)) or '(empty)'}: give positive numbers, "
                             "e.g. 0.01,0.1,1,10")
        if not 0 < float(self.max_correlation) <= 1:
            raise NpcaiError(f"--max-correlation {self.max_correlation}: give a number in (0, 1] (0.9 is typical)")


class CorrelationFilter(BaseEstimator, TransformerMixin):
    """Drop the later of two columns whose |Pearson r| on the fitting rows exceeds ``threshold``.

    Examples:
        >>> x = np.array([[0., 0., 1.], [1., 1., 0.], [2., 2., 2.]])
        >>> CorrelationFilter(0.9).fit(x).keep_.tolist()
        [0, 2]
    """

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold

    def fit(self, X, y=None):
        x = np.asarray(X, dtype=float)
        if self.threshold >= 1 or x.shape[1] < 2:
            self.keep_ = np.arange(x.shape[1])
            return self
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.abs(np.corrcoef(x, rowvar=False))
        r = np.nan_to_num(r, nan=0.0)
        keep: list[int] = []
        for j in range(x.shape[1]):
            if not keep or r[j, keep].max() <= self.threshold:
                keep.append(j)
        self.keep_ = np.asarray(keep, dtype=int)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float)[:, self.keep_]


def _logistic(C: float, l1_ratio: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    kwargs: dict[str, Any] = dict(C=float(C), l1_ratio=float(l1_ratio), solver="saga", max_iter=20000,
                                  class_weight="balanced", random_state=seed, tol=1e-4)
    if inspect.signature(LogisticRegression).parameters["penalty"].default != "deprecated":
        kwargs["penalty"] = "elasticnet"          # scikit-learn < 1.8 needs it named
    return LogisticRegression(**kwargs)


def build_pipeline(C: float, settings: ModelSettings):
    """The unfitted scikit-learn pipeline (steps in the module docstring)."""
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("variance", VarianceThreshold(0.0)),
        ("scale", StandardScaler()),
        ("correlation", CorrelationFilter(settings.max_correlation)),
        ("model", _logistic(C, settings.l1_ratio, settings.seed)),
    ])


@dataclass
class FittedModel:
    """A pipeline fitted on training patients, with its penalty chosen on validation patients.

    Attributes:
        pipeline: the fitted scikit-learn pipeline.
        C: the chosen inverse penalty strength.
        val_auc: the validation patients' AUC at ``C``.
        grid: one row per ``C`` tried: C, val_auc, n_features (non-zero coefficients).
        coefficients: feature name -> standardised coefficient, non-zero ones only.
        train_patients, val_patients: who fitted and who chose (provenance, tests).
        n_input, n_after_variance, n_after_correlation: features at each selection step.
    """

    pipeline: Any
    C: float
    val_auc: float
    grid: pd.DataFrame
    coefficients: dict[str, float]
    train_patients: list[str] = field(default_factory=list)
    val_patients: list[str] = field(default_factory=list)
    n_input: int = 0
    n_after_variance: int = 0
    n_after_correlation: int = 0

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of label 1 for each row of ``X`` (same feature columns as fitted)."""
        return self.pipeline.predict_proba(X.to_numpy(dtype=float))[:, 1]


def _fit(X: pd.DataFrame, y: pd.Series, C: float, settings: ModelSettings):
    from sklearn.exceptions import ConvergenceWarning

    pipe = build_pipeline(C, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        pipe.fit(X.to_numpy(dtype=float), y.to_numpy(dtype=int))
    return pipe


def _kept_names(pipe, names: list[str]) -> tuple[list[str], int, int]:
    after_var = [n for n, k in zip(names, pipe.named_steps["variance"].get_support()) if k]
    after_corr = [after_var[j] for j in pipe.named_steps["correlation"].keep_]
    return after_corr, len(after_var), len(after_corr)


def fit_elastic_net(X_train: pd.DataFrame, y_train: pd.Series, X_val: pd.DataFrame, y_val: pd.Series,
                    settings: ModelSettings | None = None) -> FittedModel:
    """Fit the pipeline on the training patients for every ``C`` of the grid and keep the one
    with the best validation AUC.

    Args:
        X_train, y_train: training patients' features (indexed by patient_id) and labels.
        X_val, y_val: validation patients' features and labels (they choose ``C`` only).
        settings: :class:`ModelSettings`.

    Raises:
        NpcaiError: the training or validation patients lack one of the classes.
    """
    from npcai.stats.auc import roc_auc

    settings = settings or ModelSettings()
    for what, y in (("training", y_train), ("validation", y_val)):
        if pd.Series(y).nunique() < 2:
            raise NpcaiError(f"radiomics model: the {len(y)} {what} patients all have one label; both classes "
                             "are needed — use more patients or a larger --val-fraction")
    names = list(X_train.columns)
    rows, fits = [], []
    for C in sorted(float(c) for c in settings.c_grid):
        pipe = _fit(X_train, y_train, C, settings)
        auc = float(roc_auc(y_val.to_numpy(dtype=int), pipe.predict_proba(X_val.to_numpy(dtype=float))[:, 1]))
        n_nonzero = int(np.count_nonzero(pipe.named_steps["model"].coef_))
        rows.append({"C": C, "val_auc": auc, "n_features": n_nonzero})
        fits.append((C, auc, n_nonzero, pipe))
    # a penalty so strong that no feature survives scores every patient alike: chosen only
    # when no C keeps a feature
    candidates = [f for f in fits if f[2] > 0] or fits
    best = candidates[0]
    for f in candidates[1:]:
        if f[1] > best[1] + 1e-12:
            best = f
    C, auc, _, pipe = best
    kept, n_var, n_corr = _kept_names(pipe, names)
    coef = pipe.named_steps["model"].coef_.ravel()
    coefficients = {n: float(c) for n, c in sorted(zip(kept, coef), key=lambda t: -abs(t[1])) if c != 0}
    return FittedModel(pipe, C, auc, pd.DataFrame(rows), coefficients,
                       train_patients=list(X_train.index), val_patients=list(X_val.index),
                       n_input=len(names), n_after_variance=n_var, n_after_correlation=n_corr)
