"""Kaplan–Meier survival with Greenwood standard errors, log and log-log CIs, and the median.

This is ``survival::survfit(Surv(time, event) ~ 1, conf.type = "log" | "log-log")`` and
``quantile(fit, 0.5)``, checked against R to 1e-6 in ``tests/survival``. Written by hand
(about 60 lines) rather than wrapping lifelines' ``KaplanMeierFitter`` because lifelines
offers only the log-log ("exponential Greenwood") interval and its median and median CI do
not follow R's rule for a curve that sits exactly on 0.5 (R takes the midpoint to the next
time); the figure and risk-group code need both interval types.

Definitions (R's): at each distinct time ``t`` with ``n`` at risk and ``d`` events,
``S(t) = prod(1 - d/n)``; ``std_err_log = sqrt(sum d / (n (n - d)))`` is the Greenwood
standard error of ``-log S`` (R's ``fit$std.err``) and ``std_err = S * std_err_log`` that of
``S`` (R's ``summary(fit)$std.err``). ``log`` CI: ``S exp(+-z se)`` (upper clipped at 1);
``log-log`` CI: ``S^exp(-+z se / log S)``. Limits are undefined (NaN, R's NA) where S = 0,
and for log-log also where S = 1.

Examples:
    >>> km = KaplanMeier().fit([2, 3, 3, 5, 8, 9], [1, 1, 0, 1, 0, 1])
    >>> [round(float(s), 3) for s in km.survival_at([3, 6])]
    [0.667, 0.444]
    >>> km.median_.median
    5.0
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.survival._data import check_survival

__all__ = ["KaplanMeier", "MedianSurvival", "SurvivalAt"]

ConfType = Literal["log", "log-log"]


@dataclass(frozen=True)
class MedianSurvival:
    """Median survival time with its CI; NaN (and ``reached=False``) where the curve or a CI
    limit never falls to 0.5."""

    median: float
    low: float
    high: float
    level: float
    conf_type: str

    @property
    def reached(self) -> bool:
        return bool(np.isfinite(self.median))

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        def f(v: float) -> str:
            return f"{v:.1f}" if np.isfinite(v) else "not reached"
        return f"{f(self.median)} ({f(self.low)}-{f(self.high)})"


@dataclass(frozen=True)
class SurvivalAt:
    """S(t) at one time with its SE and CI, and the number still at risk."""

    time: float
    survival: float
    std_err: float
    low: float
    high: float
    n_risk: int


def _confint(surv: np.ndarray, se_log: np.ndarray, z: float, conf_type: str) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "log":
            s = np.where(surv > 0, surv, np.nan)
            lo = np.exp(np.log(s) - z * se_log)
            hi = np.minimum(np.exp(np.log(s) + z * se_log), 1.0)
        elif conf_type == "log-log":
            s = np.where((surv > 0) & (surv < 1), surv, np.nan)
            ll = np.log(-np.log(s))
            lo = np.exp(-np.exp(ll - z * se_log / np.log(s)))
            hi = np.exp(-np.exp(ll + z * se_log / np.log(s)))
        else:
            raise NpcaiError(f"Kaplan-Meier: conf_type {conf_type!r} is not 'log' or 'log-log'")
    return lo, hi


def _findq(x: np.ndarray, y: np.ndarray, p: float, tol: float) -> float:
    """survival:::findq: the time where the failure curve ``y`` (0 at ``x[0]``) reaches ``p``."""
    ok = np.isfinite(y)
    xmax = x[-1]
    x, y = x[ok], y[ok]
    if y.size == 0 or y.max() < p:
        return float("nan")
    keep = ~pd.Series(y).duplicated().to_numpy()   # keep the first time a value is reached
    x, y = x[keep], y[keep]

    def first_at_least(v: np.ndarray) -> int | None:
        hit = np.flatnonzero(v >= p)
        return int(hit[0]) if hit.size else None

    i1, i2 = first_at_least(y + tol), first_at_least(y - tol)
    if i1 is None:
        return float("nan")
    if abs(p - y[-1]) < tol:
        return float((x[i1] + xmax) / 2)
    if i2 is None:
        return float("nan")
    return float((x[i1] + x[i2]) / 2)


class KaplanMeier:
    """Kaplan–Meier estimator (R's ``survfit``), lifelines-style: ``fit()`` returns self.

    Args:
        conf_type: ``"log-log"`` (default) or ``"log"`` (R's default ``conf.type``).
        level: confidence level of the pointwise intervals and the median's CI.

    Attributes (after ``fit``):
        table_: DataFrame, one row per distinct time: time, n_risk, n_event, n_censor,
            survival, std_err, std_err_log, low, high.
        median_: :class:`MedianSurvival`.
        n_, n_events_: patients and events.
    """

    def __init__(self, conf_type: ConfType = "log-log", level: float = 0.95):
        if conf_type not in ("log", "log-log"):
            raise NpcaiError(f"Kaplan-Meier: conf_type {conf_type!r} is not 'log' or 'log-log'")
        if not 0 < level < 1:
            raise NpcaiError(f"Kaplan-Meier: level {level} must be between 0 and 1")
        self.conf_type = conf_type
        self.level = level

    def fit(self, time, event, *, what: str = "Kaplan-Meier", ids: Sequence | None = None) -> "KaplanMeier":
        """Estimate S(t) from right-censored ``time`` (> 0) and ``event`` (0/1)."""
        t, e = check_survival(time, event, what=what, ids=ids, require_events=False)
        times, inv = np.unique(t, return_inverse=True)
        n_event = np.bincount(inv, weights=e, minlength=times.size).astype(int)
        n_total = np.bincount(inv, minlength=times.size)
        n_risk = n_total[::-1].cumsum()[::-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            surv = np.cumprod(1.0 - n_event / n_risk)
            var_log = np.cumsum(np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0))
        se_log = np.sqrt(var_log)
        se_log = np.where(np.isfinite(se_log) & (surv > 0), se_log, np.nan)
        z = _st.norm.ppf(1 - (1 - self.level) / 2)
        lo, hi = _confint(surv, se_log, z, self.conf_type)
        self.table_ = pd.DataFrame({
            "time": times, "n_risk": n_risk, "n_event": n_event, "n_censor": n_total - n_event,
            "survival": surv, "std_err": surv * se_log, "std_err_log": se_log, "low": lo, "high": hi})
        self.n_, self.n_events_ = int(t.size), int(e.sum())
        self._z = z
        tol = float(np.sqrt(np.finfo(float).eps))
        x = np.concatenate([[0.0], times])

        def q(curve: np.ndarray) -> float:
            return _findq(x, np.concatenate([[0.0], 1 - curve]), 0.5, tol)

        self.median_ = MedianSurvival(median=q(surv), low=q(lo), high=q(hi), level=self.level,
                                      conf_type=self.conf_type)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "table_"):
            raise NpcaiError("Kaplan-Meier: call fit() first")

    def survival_at(self, times) -> np.ndarray:
        """S(t) at each of ``times`` (the step function, right-continuous; 1 before the first time)."""
        self._check_fitted()
        return self.at(times)["survival"].to_numpy()

    def at(self, times) -> pd.DataFrame:
        """S(t), SE, CI and number at risk at each of ``times`` (R's ``summary(fit, times = ...)``).

        A time after the last follow-up is an error (R drops it silently).
        """
        self._check_fitted()
        ts = np.atleast_1d(np.asarray(times, dtype=float))
        tab = self.table_
        last = float(tab["time"].iloc[-1])
        if (ts > last).any() or (ts < 0).any():
            bad = ts[(ts > last) | (ts < 0)][0]
            raise NpcaiError(f"Kaplan-Meier: time {bad:g} is outside the follow-up (0 to {last:g}); "
                             "ask for survival within the observed follow-up")
        idx = np.searchsorted(tab["time"].to_numpy(), ts, side="right") - 1
        rows = []
        for t, i in zip(ts, idx):
            n_risk = int(tab["n_risk"].iloc[i + 1]) if i + 1 < len(tab) else 0
            if i < 0:
                rows.append(SurvivalAt(float(t), 1.0, 0.0, 1.0, 1.0, int(tab["n_risk"].iloc[0])))
            else:
                r = tab.iloc[i]
                rows.append(SurvivalAt(float(t), float(r.survival), float(r.std_err), float(r.low),
                                       float(r.high), n_risk if t > r.time else int(r.n_risk)))
        return pd.DataFrame([asdict(r) for r in rows])

    def n_at_risk(self, times) -> np.ndarray:
        """Number of patients still at risk (time >= t) at each of ``times``, for the figure's table."""
        self._check_fitted()
        tab = self.table_
        ts = np.atleast_1d(np.asarray(times, dtype=float))
        idx = np.searchsorted(tab["time"].to_numpy(), ts, side="left")
        return np.array([int(tab["n_risk"].iloc[i]) if i < len(tab) else 0 for i in idx])
