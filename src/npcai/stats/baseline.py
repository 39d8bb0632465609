"""Clinical baseline models: how far do the clinical covariates alone get on the same patients?

An image model's AUC means little without the AUC of what the clinic already knows. A
:class:`ClinicalModel` is a regression of the endpoint on clinical covariates (age, sex, T, N,
overall stage, EBV DNA, grade, ...) fitted on the *training* patients only:

- **binary endpoint**: logistic regression, lightly ridge-penalised by default
  (``penalty=1.0``: minimises ``-log L + penalty/2 * sum(beta**2)`` over covariates standardised
  on the training patients, intercept unpenalised; scikit-learn's ``LogisticRegression`` with
  ``C = 1 / penalty``). The light penalty keeps the fit finite when a small cohort separates a
  class or when stage is nearly a function of T and N; ``penalty=0`` is the unpenalised
  maximum-likelihood fit (R's ``glm(family = binomial)``). Both are checked against R in
  ``tests/stats/test_baseline.py`` (fixture written by ``tests/stats/fixtures/baseline.R``).
- **survival endpoint**: Cox proportional hazards (:class:`npcai.survival.cox.CoxPH`, Efron
  ties, unpenalised, equal to R's ``coxph``); the score is the linear predictor.

Covariates are coded as a clinician would: T/N/overall stage as ordinal numbers, sex as an
indicator of ``M``, EBV DNA as ``log10(1 + copies/ml)`` (:data:`TRANSFORMS`), other numeric
columns as they are and other text columns one indicator per level but the most frequent.
**Missing values: complete cases.** A patient missing any covariate is left out of the fit
(counted in :attr:`ClinicalModel.n_missing_`) and gets no prediction (NaN), so the
baseline's AUC is on the patients it can score, and the report says how many it could not.

Examples:
    >>> import pandas as pd
    >>> clin = pd.DataFrame({"age": [40, 52, 61, 70, 45, 66, 58, 49],
    ...                      "t_stage": [1, 2, 3, 4, 2, 3, 4, 1]},
    ...                     index=pd.Index([f"P{i}" for i in range(8)], name="patient_id"))
    >>> y = pd.Series([0, 0, 1, 1, 0, 1, 1, 0], index=clin.index)
    >>> m = ClinicalModel(["age", "t_stage"]).fit(clin, y)
    >>> m.terms_
    ['age', 't_stage']
    >>> bool((m.predict(clin)[y == 1] > 0.5).all())
    True
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["BASELINE_COVARIATES", "ORDINAL", "TRANSFORMS", "CovariateChoice", "default_covariates",
           "ClinicalModel", "logit"]

log = logging.getLogger(__name__)

#: the clinical covariates a default baseline uses, in this order, where the cohort has them
BASELINE_COVARIATES = ("age", "sex", "t_stage", "n_stage", "stage", "ebv_dna", "grade")
#: ordinal stage columns, used as numbers (as :mod:`npcai.stats.tnm` does)
ORDINAL = ("t_stage", "n_stage", "stage", "grade")
#: covariate -> (how the methods name the transform, the function)
TRANSFORMS = {"ebv_dna": ("log10(1 + EBV DNA copies/ml)", lambda x: np.log10(1.0 + np.clip(x, 0, None)))}
Kind = Literal["logistic", "cox"]


def logit(p, eps: float = 1e-6) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]`` (a score of exactly 0 or 1
    stays finite)."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class CovariateChoice:
    """The covariates a default baseline uses and those it leaves out, with why."""

    covariates: list[str]
    dropped: dict[str, str] = field(default_factory=dict)


def default_covariates(clinical: pd.DataFrame, patients: Sequence[str] | None = None, *,
                       max_missing: float = 0.2,
                       candidates: Sequence[str] = BASELINE_COVARIATES) -> CovariateChoice:
    """Every candidate covariate the clinical table has, among ``patients``, with at most
    ``max_missing`` of them missing and more than one value (a default that does not throw
    away a fifth of the cohort for one column; name covariates explicitly to override).

    Args:
        clinical: indexed by patient_id.
        patients: the patients the baseline is for (default all).
        max_missing: largest share of missing values a default covariate may have.
        candidates: the covariates considered, in order.
    """
    table = clinical if patients is None else clinical.reindex(list(patients))
    chosen, dropped = [], {}
    for col in candidates:
        if col not in table.columns:
            continue
        values = table[col]
        share = float(values.isna().mean()) if len(values) else 1.0
        if share > max_missing:
            dropped[col] = f"missing for {values.isna().sum()} of {len(values)} patients"
        elif values.dropna().nunique() < 2:
            dropped[col] = "the same value for every patient"
        else:
            chosen.append(col)
    return CovariateChoice(chosen, dropped)


class ClinicalModel:
    """A logistic (binary endpoint) or Cox (survival endpoint) model on clinical covariates.

    Parameters
    ----------
    covariates : list of str
        Clinical columns (see the module docstring for how each is coded).
    kind : {"logistic", "cox"}
        Logistic regression of a 0/1 label, or Cox regression of (time, event).
    penalty : float, optional
        Ridge penalty of the logistic fit on standardised covariates (default 1.0, light;
        0 = unpenalised maximum likelihood). The Cox fit is unpenalised (``penalty`` must be
        0 or None).

    Attributes
    ----------
    terms_ : list of str
        Design columns (one per numeric covariate, one per indicator).
    coef_ : pandas.Series
        Coefficients per unit of each term (log-odds or log-hazard ratio).
    intercept_ : float
        Logistic intercept (0 for Cox).
    n_fit_, n_missing_, n_events_ : int
        Patients fitted, patients left out for a missing covariate, label-1 patients / events.
    dropped_terms_ : dict
        Terms left out of the fit and why (e.g. constant among the fitted patients).

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"age": [40, 50, 60, 70, 45, 65], "sex": ["F", "M", "M", "F", "F", "M"]})
    >>> m = ClinicalModel(["age", "sex"], penalty=1.0).fit(d, pd.Series([0, 0, 1, 1, 0, 1]))
    >>> sorted(m.coef_.index)
    ['age', 'sex=M']
    """

    def __init__(self, covariates: Sequence[str], *, kind: Kind = "logistic", penalty: float | None = None):
        if kind not in ("logistic", "cox"):
            raise ValueError(f"kind {kind!r}: use logistic or cox")
        if not covariates:
            raise NpcaiError("clinical baseline: no covariate to fit; name at least one clinical column")
        if kind == "cox" and penalty:
            raise ValueError("the Cox baseline is unpenalised; leave penalty at 0 or None")
        self.covariates = list(covariates)
        self.kind = kind
        self.penalty = (1.0 if kind == "logistic" else 0.0) if penalty is None else float(penalty)
        if self.penalty < 0:
            raise ValueError(f"penalty {penalty} < 0")

    # ------------------------------------------------------------------ design
    def _coded(self, data: pd.DataFrame, levels: dict[str, list] | None) -> tuple[pd.DataFrame, dict[str, list]]:
        missing = [c for c in self.covariates if c not in data.columns]
        if missing:
            raise NpcaiError(f"clinical baseline: column {missing[0]!r} is not in the clinical table "
                             f"(present: {', '.join(map(str, data.columns))}); remove it from the baseline")
        fit = levels is None
        levels = {} if fit else levels
        out = {}
        for col in self.covariates:
            raw = data[col]
            numeric = pd.to_numeric(raw, errors="coerce")
            is_numeric = col in ORDINAL or col in TRANSFORMS or (col != "sex" and numeric.notna().sum() == raw.notna().sum())
            if is_numeric:
                if numeric.notna().sum() < raw.notna().sum():
                    bad = raw[raw.notna() & numeric.isna()].iloc[0]
                    raise NpcaiError(f"clinical baseline: column {col!r} holds {bad!r}, not a number; "
                                     "fix the value or leave the column out of the baseline")
                x = numeric.astype(float)
                if col in TRANSFORMS:
                    x = pd.Series(TRANSFORMS[col][1](x.to_numpy()), index=x.index)
                out[col] = x
                continue
            text = raw.astype("string")
            if fit:
                counts = text.dropna().value_counts()
                order = sorted(counts.index, key=lambda v: (-counts[v], v))
                ref = "F" if col == "sex" and "F" in order else (order[0] if order else None)
                levels[col] = [ref] + [v for v in order if v != ref]
            known = levels[col]
            unseen = text.notna() & ~text.isin(known)
            if unseen.any():
                log.info("clinical baseline: %d patient(s) have a %s value the training patients did not "
                         "have; they get no baseline prediction", int(unseen.sum()), col)
            for lev in known[1:]:
                ind = (text == lev).astype(float)
                ind[text.isna() | unseen] = np.nan
                out[f"{col}={lev}"] = ind
        return pd.DataFrame(out, index=data.index), levels

    # ------------------------------------------------------------------ fit
    def fit(self, data: pd.DataFrame, outcome: pd.Series | pd.DataFrame) -> "ClinicalModel":
        """Fit on the given patients only (the caller passes the training patients).

        Args:
            data: clinical table indexed by patient_id (at least the covariates).
            outcome: logistic: 0/1 labels (Series) indexed like ``data``; Cox: a DataFrame with
                ``time`` and ``event``.

        Returns:
            self
        """
        design, self.levels_ = self._coded(data, None)
        if self.kind == "logistic":
            y = pd.Series(outcome).reindex(design.index)
            ok = design.notna().all(axis=1) & y.notna()
        else:
            surv = pd.DataFrame(outcome).reindex(design.index)
            ok = design.notna().all(axis=1) & surv[["time", "event"]].notna().all(axis=1)
        self.n_missing_ = int((~ok).sum())
        design = design[ok]
        sd = design.std(ddof=0)
        self.dropped_terms_ = {t: "the same value for every fitted patient" for t in design.columns if not sd[t] > 0}
        self.terms_ = [t for t in design.columns if t not in self.dropped_terms_]
        if not self.terms_:
            raise NpcaiError(f"clinical baseline: no covariate of {', '.join(self.covariates)} varies among the "
                             f"{len(design)} patients with complete values; it cannot be fitted")
        self.mean_ = design[self.terms_].mean()
        self.scale_ = design[self.terms_].std(ddof=0)
        z = ((design[self.terms_] - self.mean_) / self.scale_).to_numpy()
        self.n_fit_ = int(len(design))
        if self.kind == "logistic":
            self._fit_logistic(z, y[ok].to_numpy().astype(int))
        else:
            self._fit_cox(design[self.terms_], surv[ok])
        return self

    def _fit_logistic(self, z: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        self.n_events_ = int(y.sum())
        if len(np.unique(y)) < 2:
            raise NpcaiError(f"clinical baseline: the {len(y)} patients with complete covariates all have label "
                             f"{int(y[0]) if len(y) else '?'}; a logistic model needs both classes")
        opts = {"C": 1.0 / self.penalty if self.penalty > 0 else np.inf}
        reg = LogisticRegression(solver="lbfgs", tol=1e-10, max_iter=10_000, **opts).fit(z, y)
        beta_std = reg.coef_[0]
        self.coef_std_ = pd.Series(beta_std, index=self.terms_)
        self.coef_ = self.coef_std_ / self.scale_
        self.intercept_ = float(reg.intercept_[0] - (self.coef_ * self.mean_).sum())
        if self.penalty == 0 and np.abs(beta_std).max() > 15:
            raise NpcaiError("clinical baseline: the unpenalised logistic fit diverges (a covariate separates the "
                             "classes); use the default light penalty")

    def _fit_cox(self, design: pd.DataFrame, surv: pd.DataFrame) -> None:
        from npcai.survival.cox import CoxPH

        names = {t: f"x{i}" for i, t in enumerate(self.terms_)}
        frame = design.rename(columns=names).assign(time=surv["time"].to_numpy(), event=surv["event"].to_numpy())
        cox = CoxPH().fit(frame, "time", "event", list(names.values()))
        self.n_events_ = int(surv["event"].sum())
        self.coef_ = pd.Series([float(cox.coef_[names[t]]) for t in self.terms_], index=self.terms_)
        self.coef_std_ = self.coef_ * self.scale_
        self.intercept_ = 0.0

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("ClinicalModel is not fitted; call fit() first")

    def linear_predictor(self, data: pd.DataFrame) -> pd.Series:
        """``intercept + x'beta`` per patient (NaN where a covariate is missing)."""
        self._check_fitted()
        design, _ = self._coded(data, self.levels_)
        for t in self.dropped_terms_:
            design = design.drop(columns=t)
        lp = self.intercept_ + design[self.terms_].to_numpy() @ self.coef_.to_numpy()
        return pd.Series(lp, index=data.index, name="linear_predictor")

    def predict(self, data: pd.DataFrame) -> pd.Series:
        """Logistic: the probability of label 1; Cox: the linear predictor (higher = higher
        hazard). NaN for patients missing a covariate."""
        lp = self.linear_predictor(data)
        if self.kind == "logistic":
            return (1.0 / (1.0 + np.exp(-lp))).rename("prob")
        return lp.rename("prob")

    def coefficients(self) -> pd.DataFrame:
        """One row per term: term, coefficient per unit, per SD (standardised), training mean and SD."""
        self._check_fitted()
        return pd.DataFrame({"term": self.terms_, "coef": self.coef_.to_numpy(),
                             "coef_per_sd": self.coef_std_.to_numpy(), "mean": self.mean_.to_numpy(),
                             "sd": self.scale_.to_numpy()})

    def describe(self, labels: dict[str, str] | None = None) -> str:
        """How the model was fitted, for the methods and the table notes (``labels``: how to
        name covariates, default their column names)."""
        self._check_fitted()
        labels = labels or {}
        if self.kind == "logistic":
            how = (f"logistic regression, ridge penalty {self.penalty:g} on standardised covariates"
                   if self.penalty > 0 else "unpenalised logistic regression")
        else:
            how = "Cox regression (Efron ties, unpenalised)"
        coded = [TRANSFORMS[c][0] for c in self.covariates if c in TRANSFORMS]
        return (f"{how}: {', '.join(labels.get(c, c) for c in self.covariates)}"
                + (f" ({'; '.join(coded)})" if coded else "")
                + f"; {self.n_fit_} patients fitted ({self.n_events_} {'label 1' if self.kind == 'logistic' else 'events'}), "
                f"{self.n_missing_} left out for a missing value")
