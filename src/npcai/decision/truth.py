"""Score a treatment recommendation against the phantom's counterfactual truth.

Real data shows one treatment per patient, so a recommender can only be judged indirectly
(seed 002's twelve situations, seed 004's Kaplan-Meier curves inside the preferred groups).
The phantom knows every patient's outcome under *each* treatment (``truth/patients.csv``:
``dfs5_ccrt`` / ``dfs5_ic_ccrt`` = true 5-year DFS, ``p_residual_ccrt`` /
``p_residual_ic_ccrt`` = true probability of residual tumour, and the best treatment by each,
``best_treatment`` / ``best_treatment_residual``), so a recommendation can be scored directly:

- :func:`agreement_with_truth`: the share of patients whose recommended treatment is the truly
  best one, with a Wilson 95% CI. Recommendations that are not a treatment (seed 002's "IBT",
  individual-based treatment, or a missing value) name no treatment to compare; they are
  counted separately in ``n_undecided`` and left out of ``n`` and ``rate``.
- :func:`policy_value`: the mean true outcome the patients would have under the recommendation,
  under the physicians' choices and under the oracle (each patient's best treatment), and the
  regret = oracle - recommendation, with paired patient-bootstrap percentile CIs. Patients
  whose recommendation is undecided (IBT) get the physician's choice by default (the model
  defers to the physician), or are left out (``undecided="exclude"``).
- :func:`phantom_counterfactuals`: the per-treatment outcomes and the best treatment from a
  phantom truth table (:func:`npcai.cohort.phantom.load_truth`), oriented so higher is better.

All functions are pure: Series indexed by patient in, frozen dataclasses out.

Examples:
    >>> import pandas as pd
    >>> rec = pd.Series(["CCRT", "IC+CCRT", "IBT", "CCRT"], index=list("abcd"))
    >>> best = pd.Series(["CCRT", "CCRT", "CCRT", "CCRT"], index=list("abcd"))
    >>> a = agreement_with_truth(rec, best)
    >>> (a.n, a.agree, a.n_undecided)
    (3, 2, 1)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.stats.binary import wilson_ci

__all__ = ["TREATMENTS", "UNDECIDED", "Agreement", "PolicyEstimate", "PolicyValue", "Counterfactuals",
           "agreement_with_truth", "policy_value", "phantom_counterfactuals"]

#: the treatments compared (seed 002 and 004)
TREATMENTS = ("CCRT", "IC+CCRT")

#: recommendations that name no treatment (seed 002's individual-based treatment)
UNDECIDED = ("IBT",)

#: the phantom's treatments and the suffix of their truth columns
_TRUTH_SUFFIX = {"CCRT": "ccrt", "IC+CCRT": "ic_ccrt"}


@dataclass(frozen=True)
class Agreement:
    """How often a recommendation names the truly best treatment.

    Attributes:
        n: patients with a decided recommendation (a treatment), the denominator.
        agree: of those, patients whose recommendation is the best treatment.
        rate: ``agree / n`` (None when ``n == 0``).
        ci_low, ci_high: Wilson 95% CI of ``rate`` (None when ``n == 0``).
        n_undecided: patients whose recommendation names no treatment (IBT or missing);
            not in ``n``.
        n_total: ``n + n_undecided``.
        by_best: ``{treatment: (agree, n)}`` among the decided patients, per best treatment.
    """

    n: int
    agree: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    n_undecided: int
    n_total: int
    by_best: dict[str, tuple[int, int]]

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        undecided = f"; {self.n_undecided} undecided (IBT) not scored" if self.n_undecided else ""
        if self.rate is None:
            return f"no decided recommendation ({self.n_total} patients{undecided})"
        return (f"{self.agree}/{self.n} = {100 * self.rate:.1f}% "
                f"(95% CI {100 * self.ci_low:.1f}-{100 * self.ci_high:.1f}%){undecided}")


@dataclass(frozen=True)
class PolicyEstimate:
    """A mean over patients with its paired-bootstrap percentile CI."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} (95% CI {self.low:.3f} to {self.high:.3f})"


@dataclass(frozen=True)
class PolicyValue:
    """Mean true outcome under three policies on the same patients, and the regrets.

    Attributes:
        n: patients scored.
        recommended: mean outcome if every patient had the recommended treatment.
        physician: mean outcome under the physicians' choices.
        oracle: mean outcome if every patient had their best treatment.
        regret: ``oracle - recommended`` (>= 0; 0 = the recommendation is the oracle).
        physician_regret: ``oracle - physician``.
        gain_over_physician: ``recommended - physician`` (> 0: the recommendation is better).
        n_undecided: patients whose recommendation named no treatment.
        undecided: how they were handled: ``"physician"`` (they get the physician's choice)
            or ``"exclude"`` (left out of ``n``).
        higher_is_better: the outcome's orientation (regrets are oriented so >= 0 is worse).
        n_boot, seed: the bootstrap.
    """

    n: int
    recommended: PolicyEstimate
    physician: PolicyEstimate
    oracle: PolicyEstimate
    regret: PolicyEstimate
    physician_regret: PolicyEstimate
    gain_over_physician: PolicyEstimate
    n_undecided: int
    undecided: str
    higher_is_better: bool
    n_boot: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Counterfactuals:
    """A phantom's true outcome under each treatment and the best treatment per patient.

    Attributes:
        outcome: what ``outcome_by_treatment`` holds, e.g. ``"5-year DFS"`` or
            ``"probability of non-residual tumour"`` (higher is better in both).
        outcome_by_treatment: ``{"CCRT": Series, "IC+CCRT": Series}`` indexed by patient.
        best: the best treatment per patient (the truth table's ``best_treatment*`` column).
    """

    outcome: str
    outcome_by_treatment: dict[str, pd.Series]
    best: pd.Series


def _as_series(x, what: str) -> pd.Series:
    if not isinstance(x, pd.Series):
        raise NpcaiError(f"{what}: expected a pandas Series indexed by patient, got {type(x).__name__}")
    if x.index.has_duplicates:
        dup = x.index[x.index.duplicated()][0]
        raise NpcaiError(f"{what}: patient {dup} appears more than once")
    return x


def _common_patients(named: Mapping[str, pd.Series]) -> pd.Index:
    """The patients of the first Series; every other Series must cover them."""
    (first_name, first), *rest = named.items()
    idx = first.index
    for name, s in rest:
        missing = idx.difference(s.index)
        if len(missing):
            raise NpcaiError(f"{name} has no value for {len(missing)} patient(s) of {first_name} "
                             f"(e.g. {missing[0]}); give every patient a value")
    return idx


def _decided(recommended: pd.Series, treatments: Sequence[str], undecided: Sequence[str]) -> pd.Series:
    """Boolean mask: the recommendation names one of ``treatments``; anything else unknown fails."""
    is_undecided = recommended.isna() | recommended.isin(list(undecided))
    unknown = ~is_undecided & ~recommended.isin(list(treatments))
    if unknown.any():
        bad = recommended[unknown]
        raise NpcaiError(f"recommendation {bad.iloc[0]!r} for patient {bad.index[0]} is neither a treatment "
                         f"({', '.join(treatments)}) nor undecided ({', '.join(undecided)})")
    return ~is_undecided


def agreement_with_truth(recommended: pd.Series, best: pd.Series, *, treatments: Sequence[str] = TREATMENTS,
                         undecided: Sequence[str] = UNDECIDED, level: float = 0.95) -> Agreement:
    """Share of patients whose recommended treatment is the truly best one (Wilson CI).

    Args:
        recommended: recommended treatment per patient (index = patient id). Values in
            ``undecided`` (default ``("IBT",)``) or missing name no treatment: they are counted
            in ``n_undecided`` and not scored.
        best: the best treatment per patient (e.g. the phantom's ``best_treatment_residual``);
            must cover every patient of ``recommended``.
        treatments: the treatments a recommendation or a best treatment may name.
        undecided: recommendation values that name no treatment.
        level: CI level.

    Returns:
        :class:`Agreement`.

    Examples:
        >>> import pandas as pd
        >>> rec = pd.Series(["CCRT", "IC+CCRT", "CCRT"], index=["p1", "p2", "p3"])
        >>> best = pd.Series(["CCRT", "IC+CCRT", "IC+CCRT"], index=["p1", "p2", "p3"])
        >>> str(agreement_with_truth(rec, best))
        '2/3 = 66.7% (95% CI 20.8-93.9%)'
    """
    recommended = _as_series(recommended, "recommendation")
    best = _as_series(best, "best treatment")
    idx = _common_patients({"recommendation": recommended, "best treatment": best})
    rec, bst = recommended.loc[idx], best.loc[idx]
    bad = ~bst.isin(list(treatments))
    if bad.any():
        raise NpcaiError(f"best treatment {bst[bad].iloc[0]!r} for patient {bst.index[bad][0]} is not one of "
                         f"the treatments ({', '.join(treatments)})")
    treatments = list(treatments)
    decided = _decided(rec, treatments, undecided)
    hit = (rec[decided] == bst[decided])
    n, k = int(decided.sum()), int(hit.sum())
    lo, hi = wilson_ci(k, n, level) if n else (None, None)
    by_best = {t: (int(hit[bst[decided] == t].sum()), int((bst[decided] == t).sum())) for t in treatments}
    return Agreement(n=n, agree=k, rate=k / n if n else None, ci_low=lo, ci_high=hi,
                     n_undecided=int((~decided).sum()), n_total=len(idx), by_best=by_best)


def _percentile(samples: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(samples, a)), float(np.quantile(samples, 1 - a))


def policy_value(recommended: pd.Series, outcome_by_treatment: Mapping[str, pd.Series],
                 physician: pd.Series, *, higher_is_better: bool = True,
                 undecided: Literal["physician", "exclude"] = "physician",
                 undecided_values: Sequence[str] = UNDECIDED, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> PolicyValue:
    """Mean true outcome under the recommendation vs the physicians' choices vs the oracle.

    Args:
        recommended: recommended treatment per patient (index = patient id); values in
            ``undecided_values`` or missing are undecided.
        outcome_by_treatment: ``{treatment: Series}``, each patient's true outcome under each
            treatment (e.g. the phantom's ``dfs5_ccrt`` / ``dfs5_ic_ccrt``, or
            ``1 - p_residual_*``); must cover every patient of ``recommended``.
        physician: the physician's choice per patient (a key of ``outcome_by_treatment``).
        higher_is_better: orientation of the outcome; the oracle takes each patient's best and
            regrets are >= 0 either way.
        undecided: ``"physician"``: an undecided patient gets the physician's choice (the model
            defers); ``"exclude"``: undecided patients are left out of every policy.
        n_boot, seed, level: paired percentile bootstrap over patients (one resample is used
            for all three policies, so the regrets are paired).

    Returns:
        :class:`PolicyValue`.

    Examples:
        >>> import pandas as pd
        >>> idx = ["p1", "p2"]
        >>> out = {"CCRT": pd.Series([0.9, 0.2], idx), "IC+CCRT": pd.Series([0.8, 0.6], idx)}
        >>> pv = policy_value(pd.Series(["CCRT", "CCRT"], idx), out, pd.Series(["IC+CCRT", "IC+CCRT"], idx))
        >>> round(pv.recommended.mean, 2), round(pv.physician.mean, 2), round(pv.oracle.mean, 2)
        (0.55, 0.7, 0.75)
        >>> round(pv.regret.mean, 2)
        0.2
    """
    if undecided not in ("physician", "exclude"):
        raise NpcaiError(f"undecided recommendations: {undecided!r} is not 'physician' or 'exclude'")
    if not outcome_by_treatment:
        raise NpcaiError("policy value: no treatment outcomes given")
    recommended = _as_series(recommended, "recommendation")
    physician = _as_series(physician, "physician's choice")
    outcomes = {t: _as_series(s, f"true outcome under {t}") for t, s in outcome_by_treatment.items()}
    treatments = list(outcomes)
    idx = _common_patients({"recommendation": recommended, "physician's choice": physician,
                            **{f"true outcome under {t}": s for t, s in outcomes.items()}})
    rec, phys = recommended.loc[idx], physician.loc[idx]
    bad = ~phys.isin(treatments)
    if bad.any():
        raise NpcaiError(f"physician's choice {phys[bad].iloc[0]!r} for patient {phys[bad].index[0]} is not "
                         f"one of the treatments with a true outcome ({', '.join(treatments)})")
    decided = _decided(rec, treatments, undecided_values)
    n_undecided = int((~decided).sum())
    if undecided == "exclude":
        idx, rec, phys = idx[decided.to_numpy()], rec[decided], phys[decided]
    else:
        rec = rec.where(decided, phys)
    if len(idx) == 0:
        raise NpcaiError("policy value: no patient left to score (every recommendation is undecided)")
    table = np.column_stack([outcomes[t].loc[idx].to_numpy(dtype=float) for t in treatments])
    if np.isnan(table).any():
        r, _ = np.argwhere(np.isnan(table))[0]
        raise NpcaiError(f"true outcome is missing for patient {idx[r]}")
    col = {t: i for i, t in enumerate(treatments)}
    rows = np.arange(len(idx))
    y_rec = table[rows, rec.map(col).to_numpy(dtype=int)]
    y_phys = table[rows, phys.map(col).to_numpy(dtype=int)]
    y_orc = table.max(axis=1) if higher_is_better else table.min(axis=1)
    sign = 1.0 if higher_is_better else -1.0
    per_patient = {"recommended": y_rec, "physician": y_phys, "oracle": y_orc,
                   "regret": sign * (y_orc - y_rec), "physician_regret": sign * (y_orc - y_phys),
                   "gain_over_physician": sign * (y_rec - y_phys)}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(idx), size=(n_boot, len(idx)))
    est = {}
    for name, v in per_patient.items():
        lo, hi = _percentile(v[draws].mean(axis=1), level)
        est[name] = PolicyEstimate(mean=float(v.mean()), low=lo, high=hi)
    return PolicyValue(n=len(idx), n_undecided=n_undecided, undecided=undecided,
                       higher_is_better=higher_is_better, n_boot=n_boot, seed=seed, **est)


def phantom_counterfactuals(truth: pd.DataFrame, endpoint: Literal["residual", "dfs5"]) -> Counterfactuals:
    """The true outcome under each treatment and the best treatment, from a phantom truth table.

    Args:
        truth: the phantom truth indexed by patient (:func:`npcai.cohort.phantom.load_truth`).
        endpoint: ``"residual"``: outcome = 1 - ``p_residual_*`` (probability of non-residual
            tumour), best = ``best_treatment_residual``; ``"dfs5"``: outcome = ``dfs5_*`` (true
            5-year DFS), best = ``best_treatment``. Higher is better in both.

    Returns:
        :class:`Counterfactuals` with keys ``"CCRT"`` and ``"IC+CCRT"``.
    """
    spec = {"residual": ("p_residual_{}", "best_treatment_residual", "probability of non-residual tumour"),
            "dfs5": ("dfs5_{}", "best_treatment", "5-year DFS")}
    if endpoint not in spec:
        raise NpcaiError(f"phantom truth: endpoint {endpoint!r} is not 'residual' or 'dfs5'")
    pattern, best_col, label = spec[endpoint]
    needed = [pattern.format(s) for s in _TRUTH_SUFFIX.values()] + [best_col]
    missing = [c for c in needed if c not in truth.columns]
    if missing:
        raise NpcaiError(f"phantom truth has no column {missing[0]!r}; regenerate the phantom with "
                         "`npcai phantom` (this npcai version writes it)")
    out = {}
    for t, s in _TRUTH_SUFFIX.items():
        v = truth[pattern.format(s)].astype(float)
        out[t] = 1.0 - v if endpoint == "residual" else v
    return Counterfactuals(outcome=label, outcome_by_treatment=out, best=truth[best_col].astype(str))
