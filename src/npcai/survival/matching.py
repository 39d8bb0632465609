"""1:1 nearest-neighbour matching of two treatment groups, as ``MatchIt::matchit(method = "nearest")``.

Study 004 (Appendix A) matches IC+CCRT and CCRT patients 1:1 before modelling, because
physicians chose the treatment by stage. :func:`match_nearest` does what MatchIt 4 does by
default, without replacement:

* ``distance="propensity"``: a logistic regression of the treatment on the covariates
  (fitted by IRLS, R's ``glm``); the distance is the propensity score; treated patients are
  matched in decreasing order of it (``m.order = "largest"``), each to the nearest unmatched
  control; an optional ``caliper`` in standard deviations of the propensity score (MatchIt's
  ``std.caliper = TRUE``: ``caliper * sd(ps)``) leaves treated patients without a close
  control unmatched;
* ``distance="mahalanobis"``: covariates standardised, then the Mahalanobis distance with
  the pooled within-group covariance; treated patients in data order (MatchIt's default for
  this distance); a caliper then applies to a propensity score of the same covariates
  (MatchIt's ``mahvars``);
* ``exact``: columns that must agree within a pair (MatchIt's ``exact``).

Ties go to the first control in data order. The balance table gives for every covariate
(and the propensity score) the means, the standardised mean difference (treated minus
control over the treated group's SD in the full sample; ``sqrt(p (1 - p))`` for 0/1
columns, as MatchIt's ATT summary) and a p-value (Welch t-test; chi-square for 0/1
columns) before and after matching.

Written by hand (about 100 lines): causallib and psmpy do not reproduce MatchIt's matching
order, caliper scale or balance statistics; the pairs and SMDs here equal MatchIt 4.5
(``tests/survival``; the p-values are scipy's, not compared).

Examples:
    >>> import pandas as pd
    >>> d = pd.DataFrame({"treat": [1, 1, 0, 0, 0, 0], "age": [60, 40, 58, 41, 30, 70]},
    ...                  index=["P1", "P2", "P3", "P4", "P5", "P6"])
    >>> r = match_nearest(d, "treat", ["age"], distance="mahalanobis")
    >>> r.pairs[["treated", "control"]].values.tolist()
    [['P1', 'P3'], ['P2', 'P4']]
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.survival._data import build_design, complete_cases, term_variables

__all__ = ["MatchResult", "match_nearest", "logistic_propensity", "balance_table"]

log = logging.getLogger(__name__)


@dataclass
class MatchResult:
    """Matched pairs, balance before/after, and the matched patients.

    Attributes:
        pairs: DataFrame: pair, treated, control (patient ids), propensity_treated,
            propensity_control (NaN when no propensity was estimated), gap (the matching distance).
        balance: DataFrame per covariate: mean_treated_before, mean_control_before,
            smd_before, p_before, mean_treated_after, mean_control_after, smd_after, p_after.
        matched: patient ids in the matched cohort (treated then control of each pair).
        unmatched_treated: treated patients without a control (caliper or too few controls).
        distance: Series of the propensity score per patient (None for Mahalanobis).
        caliper: the caliper in propensity-score units (None without one).
        treated_level, control_level: the treatment values matched.
    """

    pairs: pd.DataFrame
    balance: pd.DataFrame
    matched: list
    unmatched_treated: list
    distance: pd.Series | None
    caliper: float | None
    treated_level: object
    control_level: object
    method: str


def logistic_propensity(X: np.ndarray, treat: np.ndarray, max_iter: int = 50) -> np.ndarray:
    """P(treated | X) from an unpenalised logistic regression with intercept (IRLS, as ``glm``)."""
    A = np.column_stack([np.ones(len(treat)), X])
    beta = np.zeros(A.shape[1])
    for _ in range(max_iter):
        eta = A @ beta
        p = 1 / (1 + np.exp(-eta))
        w = np.clip(p * (1 - p), 1e-12, None)
        step = np.linalg.solve(A.T @ (w[:, None] * A), A.T @ (treat - p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        raise NpcaiError("propensity model: the logistic regression did not converge (the covariates "
                         "separate the treatment groups perfectly); drop the separating covariate or use "
                         "distance=mahalanobis")
    p = 1 / (1 + np.exp(-(A @ beta)))
    if (np.minimum(p, 1 - p) < 1e-8).any():
        raise NpcaiError("propensity model: some patients have a propensity of 0 or 1 (perfect separation); "
                         "drop the separating covariate or use distance=mahalanobis")
    return p


def _sd(x: np.ndarray) -> float:
    binary = np.isin(x, (0.0, 1.0)).all()
    return float(np.sqrt(x.mean() * (1 - x.mean()))) if binary else float(x.std(ddof=1))


def _p_value(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or b.size < 2:
        return float("nan")
    if np.isin(np.concatenate([a, b]), (0.0, 1.0)).all():
        table = np.array([[a.sum(), a.size - a.sum()], [b.sum(), b.size - b.sum()]])
        if (table.sum(0) == 0).any():
            return 1.0
        return float(_st.chi2_contingency(table)[1])
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    return float(_st.ttest_ind(a, b, equal_var=False).pvalue)


def balance_table(X: pd.DataFrame, treat: np.ndarray, matched: np.ndarray) -> pd.DataFrame:
    """Means, SMD (over the treated SD of the full sample) and p before and after matching."""
    rows = []
    t_all, c_all = treat == 1, treat == 0
    t_m, c_m = t_all & matched, c_all & matched
    for col in X.columns:
        x = X[col].to_numpy(dtype=float)
        sd = _sd(x[t_all])
        row = {"covariate": col}
        for tag, tt, cc in (("before", t_all, c_all), ("after", t_m, c_m)):
            mt, mc = x[tt].mean(), x[cc].mean()
            row[f"mean_treated_{tag}"], row[f"mean_control_{tag}"] = mt, mc
            row[f"smd_{tag}"] = (mt - mc) / sd if sd > 0 else 0.0
            row[f"p_{tag}"] = _p_value(x[tt], x[cc])
        rows.append(row)
    return pd.DataFrame(rows).set_index("covariate")


def match_nearest(data: pd.DataFrame, treatment: str, covariates: Sequence[str], *,
                  distance: Literal["propensity", "mahalanobis"] = "propensity", caliper: float | None = None,
                  treated_level=None, exact: Sequence[str] = ()) -> MatchResult:
    """1:1 nearest-neighbour matching without replacement (MatchIt ``method = "nearest"``).

    Args:
        data: one row per patient (index = patient id).
        treatment: a column with exactly two values (e.g. CCRT / IC+CCRT, or 0/1).
        covariates: terms of the propensity model / Mahalanobis distance (factors allowed).
        distance: ``"propensity"`` (logistic) or ``"mahalanobis"``.
        caliper: in SDs of the propensity score (e.g. 0.2). With the Mahalanobis distance the
            propensity score of the same covariates is estimated for the caliper only (MatchIt's
            ``distance = "glm", mahvars = ...``).
        exact: columns that must be equal within a pair (MatchIt's ``exact``), e.g. t_stage.
        treated_level: which value is "treated" (matched in full); default 1 for 0/1 columns,
            else the smaller group (ties: the later value in sorted order).
    """
    if distance not in ("propensity", "mahalanobis"):
        raise NpcaiError(f"matching: distance {distance!r} is not 'propensity' or 'mahalanobis'")
    if caliper is not None and caliper <= 0:
        raise NpcaiError(f"matching: caliper {caliper} must be positive (in SDs of the propensity score)")
    if not covariates:
        raise NpcaiError("matching: give at least one covariate to match on")
    data = complete_cases(data, [treatment] + [v for c in covariates for v in term_variables(c)] + list(exact),
                          what="matching")
    levels = sorted(data[treatment].unique().tolist(), key=str)
    if len(levels) != 2:
        raise NpcaiError(f"matching: column {treatment!r} has {len(levels)} value(s) "
                         f"({', '.join(map(str, levels))}); 1:1 matching needs exactly two treatment groups")
    if treated_level is None:
        if set(levels) == {0, 1}:
            treated_level = 1
        else:
            counts = data[treatment].value_counts()
            treated_level = levels[1] if counts[levels[1]] <= counts[levels[0]] else levels[0]
    if treated_level not in levels:
        raise NpcaiError(f"matching: treated level {treated_level!r} is not a value of {treatment!r} "
                         f"({', '.join(map(str, levels))})")
    control_level = next(v for v in levels if v != treated_level)
    treat = (data[treatment] == treated_level).to_numpy().astype(int)
    design = build_design(data, covariates)
    X = design.X
    const = [c for j, c in enumerate(design.columns) if np.ptp(X[:, j]) == 0]
    if const:
        raise NpcaiError(f"matching: covariate {const[0]!r} is constant; remove it")
    ids = list(data.index)
    t_idx, c_idx = np.flatnonzero(treat == 1), np.flatnonzero(treat == 0)
    if c_idx.size < t_idx.size:
        log.warning("matching: %d treated (%s) but only %d control (%s) patients; at least %d treated "
                    "patients stay unmatched (or choose the other level as treated)", t_idx.size, treated_level,
                    c_idx.size, control_level, t_idx.size - c_idx.size)
    ps, cal = None, None
    if distance == "propensity" or caliper is not None:
        ps = logistic_propensity(X, treat)
        if caliper is not None:
            cal = float(caliper * ps.std(ddof=1))
    if distance == "propensity":
        order = t_idx[np.argsort(-ps[t_idx], kind="stable")]

        def dist(i: int, cand: np.ndarray) -> np.ndarray:
            return np.abs(ps[cand] - ps[i])
    else:
        Z = (X - X.mean(0)) / X.std(0, ddof=1)
        Zc = Z.copy()
        for g in (0, 1):
            Zc[treat == g] -= Z[treat == g].mean(0)
        S = np.cov(Zc, rowvar=False).reshape(Z.shape[1], Z.shape[1]) * (len(Z) - 1) / (len(Z) - 2)
        Sinv = np.linalg.pinv(S)
        order = t_idx

        def dist(i: int, cand: np.ndarray) -> np.ndarray:
            diff = Z[cand] - Z[i]
            return np.sqrt(np.einsum("ij,jk,ik->i", diff, Sinv, diff))
    available = np.ones(len(ids), bool)
    available[t_idx] = False
    ex = data[list(exact)].astype(str).agg("|".join, axis=1).to_numpy() if exact else np.zeros(len(ids))
    pairs, unmatched = [], []
    for i in order:
        cand = np.flatnonzero(available & (ex == ex[i]))
        dd = dist(i, cand)
        if cal is not None:
            ok = np.abs(ps[cand] - ps[i]) <= cal
            cand, dd = cand[ok], dd[ok]
        if cand.size == 0:
            unmatched.append(ids[i])
            continue
        j = cand[int(np.argmin(dd))]
        available[j] = False
        pairs.append((i, j, float(dd.min())))
    if not pairs:
        raise NpcaiError("matching: no treated patient has a control within the caliper; widen the caliper")
    matched = np.zeros(len(ids), bool)
    for i, j, _ in pairs:
        matched[[i, j]] = True
    cov_frame = pd.DataFrame(X, columns=design.columns, index=data.index)
    if ps is not None and distance == "propensity":
        cov_frame.insert(0, "propensity", ps)
    pair_df = pd.DataFrame({
        "pair": np.arange(1, len(pairs) + 1), "treated": [ids[i] for i, _, _ in pairs],
        "control": [ids[j] for _, j, _ in pairs],
        "propensity_treated": [ps[i] if ps is not None else np.nan for i, _, _ in pairs],
        "propensity_control": [ps[j] if ps is not None else np.nan for _, j, _ in pairs],
        "gap": [g for *_, g in pairs]})
    return MatchResult(pairs=pair_df, balance=balance_table(cov_frame, treat, matched),
                       matched=[x for i, j, _ in pairs for x in (ids[i], ids[j])], unmatched_treated=unmatched,
                       distance=pd.Series(ps, index=data.index, name="propensity") if ps is not None else None,
                       caliper=cal, treated_level=treated_level, control_level=control_level, method=distance)
