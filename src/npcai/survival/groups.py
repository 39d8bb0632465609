"""Survival by group: Kaplan–Meier per group with log-rank and hazard ratio, risk groups cut at a
threshold fixed on the training cohort, and subgroup hazard ratios with interaction p-values.

* :func:`compare_groups` -- KM per group, the log-rank test and the univariate Cox HR (each
  group against the reference, the first in sorted order unless given), as study 004 pairs
  them in Fig. 4/5;
* :class:`RiskGroups` -- ``fit`` fixes the cut-off on training patients only (the median, or
  a given value such as the nomogram's mean total points); ``transform`` labels any cohort
  high/low risk without looking at it;
* :func:`subgroup_hazard_ratios` -- the HR of one binary comparison (treatment, risk group)
  inside each level of other factors, with the Wald p of the comparison x factor
  interaction (the forest plot of seed 004 Fig. D3).

Examples:
    >>> rg = RiskGroups("median").fit([0.1, 0.4, 0.35, 0.8, 0.2])
    >>> rg.threshold_, rg.transform([0.3, 0.5]).tolist()
    (0.35, ['low', 'high'])
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.survival._data import check_survival, complete_cases
from npcai.survival.cox import CoxPH
from npcai.survival.kaplan_meier import KaplanMeier
from npcai.survival.logrank import LogRankResult, logrank_test

__all__ = ["GroupComparison", "compare_groups", "RiskGroups", "subgroup_hazard_ratios"]

log = logging.getLogger(__name__)


@dataclass
class GroupComparison:
    """KM fits per group, the log-rank test and HRs against the reference group.

    Attributes:
        curves: group -> fitted :class:`KaplanMeier`.
        logrank: :class:`LogRankResult`.
        hazard_ratios: DataFrame per non-reference group: group, reference, hr, hr_low,
            hr_high, p (Wald), from a Cox model with the group as a factor.
        summary: DataFrame per group: group, n, events, median (CI), S at each ``at`` time
            with CI.
    """

    curves: dict[str, KaplanMeier]
    logrank: LogRankResult
    hazard_ratios: pd.DataFrame
    summary: pd.DataFrame
    reference: str


def compare_groups(data: pd.DataFrame, time: str, event: str, by: str, *, at: Sequence[float] = (),
                   reference: str | None = None, strata: str | None = None,
                   conf_type: str = "log-log", ties: str = "efron") -> GroupComparison:
    """Kaplan–Meier per level of ``by``, log-rank test (stratified by ``strata``) and Cox HRs."""
    data = complete_cases(data, [time, event, by] + ([strata] if strata else []), what=f"survival by {by}")
    ids = [str(i) for i in data.index]
    t, e = check_survival(data[time], data[event], what=f"{time}/{event}", ids=ids)
    g = data[by].astype(str).to_numpy()
    levels = sorted(set(g))
    if len(levels) < 2:
        raise NpcaiError(f"survival by {by}: every patient has {by} = {levels[0]!r}; comparing groups needs "
                         "two or more values")
    ref = reference if reference is not None else levels[0]
    if ref not in levels:
        raise NpcaiError(f"survival by {by}: reference {ref!r} is not a value of {by} ({', '.join(levels)})")
    lr = logrank_test(t, e, g, strata=data[strata].to_numpy() if strata else None, what=f"log-rank test by {by}")
    curves, rows = {}, []
    for lv in levels:
        s = g == lv
        km = KaplanMeier(conf_type).fit(t[s], e[s], what=f"{by} = {lv}")
        curves[lv] = km
        row = {"group": lv, "n": km.n_, "events": km.n_events_, "median": km.median_.median,
               "median_low": km.median_.low, "median_high": km.median_.high}
        last = float(km.table_["time"].iloc[-1])
        for u in at:
            if u <= last:
                r = km.at([u]).iloc[0]
                row[f"S({u:g})"], row[f"S({u:g})_low"], row[f"S({u:g})_high"] = r.survival, r.low, r.high
            else:
                log.warning("survival by %s: S(%g) of %s = %s is undefined (follow-up ends at %g); left empty",
                            by, u, by, lv, last)
                row[f"S({u:g})"] = row[f"S({u:g})_low"] = row[f"S({u:g})_high"] = np.nan
        rows.append(row)
    d = pd.DataFrame({"time": t, "event": e, "grp": pd.Categorical(g, categories=[ref] + [x for x in levels if x != ref]),
                      "stratum": data[strata].astype(str).to_numpy() if strata else ""})
    # the HR comes from the Cox model matching the log-rank test: stratified when the test is
    cox = CoxPH(ties=ties).fit(d, "time", "event", ["grp"], strata="stratum" if strata else None,
                               what=f"Cox model of {by}")
    hr = []
    for col, r in cox.summary_.iterrows():
        hr.append({"group": col.split("=", 1)[1], "reference": ref, "hr": r.hr, "hr_low": r.hr_low,
                   "hr_high": r.hr_high, "p": r.p})
    return GroupComparison(curves=curves, logrank=lr, hazard_ratios=pd.DataFrame(hr),
                           summary=pd.DataFrame(rows), reference=ref)


class RiskGroups:
    """High/low risk by a threshold fixed on training patients; lifelines-style ``fit`` -> self.

    Args:
        rule: ``"median"`` or ``"mean"`` of the training scores, or a number (a fixed cut-off,
            e.g. the nomogram's mean total points of the training cohort).
        higher_is_riskier: True for risk scores and nomogram points; False for predicted survival.
    """

    def __init__(self, rule: str | float = "median", higher_is_riskier: bool = True):
        if not isinstance(rule, (int, float)) and rule not in ("median", "mean"):
            raise NpcaiError(f"risk groups: rule {rule!r} is not 'median', 'mean' or a number")
        self.rule, self.higher_is_riskier = rule, higher_is_riskier

    def fit(self, train_scores) -> "RiskGroups":
        s = np.asarray(train_scores, dtype=float)
        if s.size == 0 or not np.isfinite(s).all():
            raise NpcaiError("risk groups: the training scores are empty or contain NaN; the threshold is "
                             "fixed on training patients with a score")
        self.threshold_ = float(self.rule) if isinstance(self.rule, (int, float)) else \
            float(np.median(s) if self.rule == "median" else s.mean())
        self.n_train_ = int(s.size)
        return self

    def transform(self, scores) -> np.ndarray:
        if not hasattr(self, "threshold_"):
            raise NpcaiError("risk groups: call fit() on the training scores first")
        s = np.asarray(scores, dtype=float)
        high = s > self.threshold_ if self.higher_is_riskier else s < self.threshold_
        return np.where(high, "high", "low")


def _subgroup_levels(data: pd.DataFrame, factor: str, cut: float | None = None) -> tuple[pd.Series, str]:
    """Subgroup labels of a factor: its values, or ``<= cut`` / ``> cut`` for a numeric column cut at
    ``cut`` (given) or at its median when it has more than 5 values (the cut is in the label)."""
    s = data[factor]
    if cut is not None:
        if not pd.api.types.is_numeric_dtype(s):
            raise NpcaiError(f"subgroup analysis: a cut needs a numeric column; {factor!r} is not numeric")
        name = f"{factor} (cut {cut:g})"
    elif pd.api.types.is_numeric_dtype(s) and s.nunique() > 5:
        cut, name = float(s.median()), f"{factor} (median cut)"
    else:
        return s.astype(str), factor
    return pd.Series(np.where(s > cut, f"> {cut:g}", f"<= {cut:g}"), index=data.index), name


def subgroup_hazard_ratios(data: pd.DataFrame, time: str, event: str, by: str, factors: Sequence[str], *,
                           reference: str | None = None, ties: str = "efron",
                           cuts: Mapping[str, float] | None = None) -> pd.DataFrame:
    """HR of ``by`` (two values) within every subgroup of each factor, with interaction p.

    A numeric factor is cut at ``cuts[factor]`` when given (e.g. ``{"age": 45}``), else at its
    median when it has more than 5 values; other factors give one subgroup per value.

    Returns rows: factor, subgroup, n, events, hr, hr_low, hr_high, p, p_interaction (the
    Wald test of ``by x factor`` in ``by + factor + by:factor``; the same on all rows of a factor).
    Subgroups without events in both arms get NaN HRs and a ``note``.
    """
    cuts = dict(cuts or {})
    stray = [c for c in cuts if c not in factors]
    if stray:
        raise NpcaiError(f"subgroup analysis: a cut is given for {stray[0]!r}, which is not one of the factors "
                         f"({', '.join(factors)})")
    data = complete_cases(data, [time, event, by] + list(factors), what="subgroup analysis")
    levels = sorted(data[by].astype(str).unique())
    if len(levels) != 2:
        raise NpcaiError(f"subgroup analysis: {by!r} has {len(levels)} value(s); the forest plot compares two "
                         "groups (e.g. treatment or high/low risk)")
    ref = reference if reference is not None else levels[0]
    other = levels[1] if ref == levels[0] else levels[0]
    d = data.copy()
    d["_arm"] = (d[by].astype(str) == other).astype(float)
    rows = []
    overall = CoxPH(ties=ties).fit(d, time, event, ["_arm"], what="overall Cox model")
    r = overall.summary_.iloc[0]
    rows.append({"factor": "All patients", "subgroup": "", "n": overall.n_, "events": overall.n_events_,
                 "hr": r.hr, "hr_low": r.hr_low, "hr_high": r.hr_high, "p": r.p, "p_interaction": np.nan,
                 "note": ""})
    for f in factors:
        labels, name = _subgroup_levels(d, f, cuts.get(f))
        d["_sub"] = labels.to_numpy()
        try:
            full = CoxPH(ties=ties).fit(d, time, event, ["_arm", "_sub", "_arm:_sub"],
                                        what=f"interaction model of {by} x {f}")
            p_int = full.term_test("_arm:_sub").p_value
        except NpcaiError as exc:
            p_int, note_int = np.nan, str(exc)
        else:
            note_int = ""
        for lv in sorted(d["_sub"].unique()):
            sub = d[d["_sub"] == lv]
            row = {"factor": name, "subgroup": lv, "n": len(sub), "events": int(sub[event].sum()),
                   "p_interaction": p_int, "note": note_int}
            try:
                m = CoxPH(ties=ties).fit(sub, time, event, ["_arm"], what=f"{f} = {lv}")
                s = m.summary_.iloc[0]
                row.update(hr=s.hr, hr_low=s.hr_low, hr_high=s.hr_high, p=s.p)
            except NpcaiError as exc:
                row.update(hr=np.nan, hr_low=np.nan, hr_high=np.nan, p=np.nan, note=str(exc))
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["comparison"] = f"{other} vs {ref}"
    return out
