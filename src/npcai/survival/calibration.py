"""Calibration of predicted survival at a time point (3 or 5 years), as rms and Austin (2020).

:func:`calibrate_survival` does what ``rms::calibrate(fit, cmethod = "KM", u, m, B)`` does:

* each patient's predicted S(u | x) from the Cox model;
* groups of about ``m`` patients: ``g = floor(n / m)`` intervals cut at the quantiles of
  ``c(0, 1, predicted)`` (rms's ``cuts``; left-closed intervals as Hmisc's ``cut2``);
* per group the mean predicted S(u) and the Kaplan–Meier S(u) with its log-scale SE and CI
  (``rms::groupkm``);
* bootstrap optimism (``B`` resamples, seeded): the model is refitted on each resample; the
  optimism of a group is the mean over resamples of (observed - predicted on the resample)
  minus (observed - predicted on the original patients with the resample's model), in the
  original groups; ``km_corrected = km - optimism`` (rms's bias-corrected points). R's random
  numbers cannot be reproduced, so the bootstrap is seeded here but not compared with R.

Also a goodness-of-fit test and calibration indices:

* **D'Agostino–Nam** test (the survival version of Hosmer–Lemeshow, D'Agostino & Nam 2003):
  ``sum_g (KM failure_g - mean predicted failure_g)^2 / (p_g (1 - p_g) / n_g)`` over
  ``gof_groups`` groups of predicted risk, chi-square on ``groups - 1`` df;
* **ICI, E50, E90** (Austin, Harrell & van Klaveren 2020): a Cox model of the outcome on a
  restricted cubic spline (3 knots, Hmisc's ``rcspline.eval``) of ``log(-log S_pred(u))``
  gives each patient's smoothed observed S(u); ICI is the mean, E50 the median and E90 the
  90th percentile of |observed - predicted|.

Checked against R (groups, KM, SEs, cuts, the spline-smoothed observed values and ICI) to
1e-6 in ``tests/survival``. Written by hand: no Python package calibrates survival models.

Examples:
    >>> import numpy as np, pandas as pd
    >>> from npcai.survival.cox import CoxPH
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=120)
    >>> d = pd.DataFrame({"x": x, "time": np.ceil(rng.exponential(40 * np.exp(-x))), "event": 1})
    >>> cal = calibrate_survival(CoxPH().fit(d, "time", "event", ["x"]), d, u=24, m=40, n_boot=5)
    >>> len(cal.groups)
    3
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.progress import track
from npcai.survival._data import check_survival, complete_cases, term_variables
from npcai.survival.cox import CoxPH
from npcai.survival.kaplan_meier import KaplanMeier

__all__ = ["CalibrationResult", "calibrate_survival", "km_groups", "dagostino_nam", "rcs_basis",
           "calibration_indices"]

log = logging.getLogger(__name__)


@dataclass
class CalibrationResult:
    """Calibration at time ``u``.

    Attributes:
        groups: DataFrame per group: low, high (predicted-S interval), n, events,
            predicted (mean), km, std_err (of log KM), km_low, km_high, optimism,
            km_corrected.
        predicted: Series of each patient's predicted S(u).
        smoothed_observed: Series of each patient's spline-smoothed observed S(u).
        ici, e50, e90: Austin's calibration indices (absolute differences in S(u)).
        gof: D'Agostino–Nam chi-square, df, p and number of groups.
        n_boot, n_boot_failed, seed: the bootstrap.
    """

    u: float
    m: int
    groups: pd.DataFrame
    predicted: pd.Series
    smoothed_observed: pd.Series
    ici: float
    e50: float
    e90: float
    gof: dict
    n_boot: int
    n_boot_failed: int
    seed: int

    def summary(self) -> dict:
        return {"u": self.u, "m": self.m, "n_groups": len(self.groups), "ici": self.ici, "e50": self.e50,
                "e90": self.e90, "gof": self.gof, "n_boot": self.n_boot, "n_boot_failed": self.n_boot_failed,
                "seed": self.seed}


def _cut_groups(x: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Hmisc::cut2(x, cuts) codes 0..k-1: [c0, c1), [c1, c2), ..., [c_{k-1}, c_k]; -1 below c0
    (cut2 gives such values an interval of their own)."""
    idx = np.searchsorted(cuts, x, side="right") - 1
    return np.where(x < cuts[0], -1, np.clip(idx, 0, len(cuts) - 2))


def km_groups(pred: np.ndarray, time: np.ndarray, event: np.ndarray, u: float, cuts: np.ndarray,
              level: float = 0.95) -> pd.DataFrame:
    """Mean predicted S(u) and Kaplan–Meier S(u) per interval of ``pred`` (rms::groupkm).

    Values below the first cut (after rms sets |pred| < 1e-10 to 0) form a group of their
    own, as Hmisc's ``cut2`` does; a group of fewer than 2 patients has no KM estimate.
    """
    pred = np.where(np.abs(pred) < 1e-10, 0.0, pred)
    code = _cut_groups(pred, cuts)
    z = _st.norm.ppf(1 - (1 - level) / 2)
    rows = []
    below = (code == -1).any()
    for g in range(-1 if below else 0, len(cuts) - 1):
        s = code == g
        lo, hi = (pred[s].min(), cuts[0]) if g == -1 else (cuts[g], cuts[g + 1])
        row = {"low": lo, "high": hi, "n": int(s.sum()), "events": int(event[s].sum()),
               "predicted": float(pred[s].mean()) if s.any() else np.nan, "km": np.nan, "std_err": np.nan}
        if s.sum() >= 2:
            tab = KaplanMeier("log").fit(time[s], event[s]).table_
            tt = np.concatenate([[0.0], tab["time"].to_numpy()])
            ss = np.concatenate([[1.0], tab["survival"].to_numpy()])
            se = np.concatenate([[0.0], tab["std_err_log"].to_numpy()])
            i = int(np.flatnonzero(tt <= u + 1e-6).max())
            if not (u > tt[-1] + 1e-6 and ss[-1] > 0):
                row["km"], row["std_err"] = float(ss[i]), float(se[i])
        rows.append(row)
    out = pd.DataFrame(rows)
    out["km_low"] = np.where(out.km == 0, 0.0, out.km * np.exp(-z * out.std_err))
    out["km_high"] = np.where(out.km == 0, 0.0, np.minimum(1.0, out.km * np.exp(z * out.std_err)))
    return out


def dagostino_nam(pred: np.ndarray, time: np.ndarray, event: np.ndarray, u: float,
                  groups: int = 10) -> dict:
    """D'Agostino–Nam goodness-of-fit test at ``u`` over ``groups`` quantile groups of risk."""
    n = pred.size
    groups = max(2, min(groups, n // 5))
    cuts = np.unique(np.quantile(pred, np.linspace(0, 1, groups + 1)))
    tab = km_groups(pred, time, event, u, cuts)
    tab = tab[(tab.n >= 2) & tab.km.notna()]
    p = 1 - tab.predicted.to_numpy()
    obs = 1 - tab.km.to_numpy()
    ok = (p > 0) & (p < 1)
    if ok.sum() < 2:
        raise NpcaiError(f"calibration at {u:g}: fewer than two risk groups have a follow-up to {u:g}; "
                         "the goodness-of-fit test needs more patients or an earlier time")
    stat = float(np.sum((obs[ok] - p[ok]) ** 2 / (p[ok] * (1 - p[ok]) / tab.n.to_numpy()[ok])))
    df = int(ok.sum()) - 1
    return {"test": "D'Agostino-Nam", "chisq": stat, "df": df, "p_value": float(_st.chi2.sf(stat, df)),
            "groups": int(ok.sum())}


def rcs_basis(x: np.ndarray, knots: np.ndarray | None = None, nk: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Restricted cubic spline basis with x, as Hmisc's ``rcspline.eval(x, nk, inclx=TRUE)``.

    Knots default to Hmisc's: quantiles 0.1, 0.5, 0.9 for 3 knots (n >= 100); for n < 100 the
    outer knots are the 5th smallest and largest values.
    """
    x = np.asarray(x, dtype=float)
    if knots is None:
        if nk != 3:
            raise NpcaiError("rcs_basis: default knots are implemented for 3 knots only")
        if x.size >= 100:
            knots = np.quantile(x, [0.1, 0.5, 0.9])
        else:
            xs = np.sort(x)
            knots = np.array([xs[4], np.quantile(xs[5:x.size - 5], 0.5), xs[-5]])
    k = np.asarray(knots, dtype=float)
    if np.unique(k).size < k.size:
        raise NpcaiError("calibration smoothing: the predicted survival has too few distinct values for a "
                         "spline (knots coincide)")
    norm = (k[-1] - k[0]) ** 2
    cols = [x]
    for j in range(k.size - 2):
        term = (np.maximum(x - k[j], 0) ** 3
                - np.maximum(x - k[-2], 0) ** 3 * (k[-1] - k[j]) / (k[-1] - k[-2])
                + np.maximum(x - k[-1], 0) ** 3 * (k[-2] - k[j]) / (k[-1] - k[-2]))
        cols.append(term / norm)
    return np.column_stack(cols), k


def calibration_indices(pred: np.ndarray, time: np.ndarray, event: np.ndarray, u: float) -> dict:
    """Austin's ICI/E50/E90 and each patient's smoothed observed S(u)."""
    cll = np.log(-np.log(np.clip(pred, 1e-12, 1 - 1e-12)))
    basis, knots = rcs_basis(cll)
    d = pd.DataFrame({"time": time, "event": event, "b1": basis[:, 0], "b2": basis[:, 1]})
    m = CoxPH().fit(d, "time", "event", ["b1", "b2"], what="calibration smoothing model")
    obs = m.predict_survival(d, [u]).iloc[:, 0].to_numpy()
    diff = np.abs(obs - pred)
    return {"observed": obs, "knots": knots, "ici": float(diff.mean()), "e50": float(np.quantile(diff, 0.5)),
            "e90": float(np.quantile(diff, 0.9))}


def calibrate_survival(model: CoxPH, data: pd.DataFrame, u: float, *, m: int = 50, n_boot: int = 40,
                       seed: int = 0, gof_groups: int = 10, level: float = 0.95) -> CalibrationResult:
    """Calibration of ``model``'s S(u) on ``data`` (the patients it was fitted on, for optimism).

    Args:
        model: a fitted :class:`CoxPH` (its terms are refitted on each bootstrap resample).
        data: the patients, with the model's time, event and covariate columns.
        u: the time point (e.g. 36 months).
        m: patients per group (rms's ``m``).
        n_boot: bootstrap resamples for the optimism correction (0: none).
        seed: bootstrap seed.
        gof_groups: groups of the D'Agostino–Nam test.
    """
    if not hasattr(model, "coef_"):
        raise NpcaiError("calibration: fit the Cox model first")
    if m < 2:
        raise NpcaiError(f"calibration: m = {m} patients per group is too few; use m >= 2 (rms uses 50-150)")
    tcol, ecol = model.time_col, model.event_col
    terms = model.design_.terms
    data = complete_cases(data, [tcol, ecol] + [v for t in terms for v in term_variables(t)], what="calibration")
    if model.strata:
        raise NpcaiError("calibration: stratified Cox models are not supported; fit without strata")
    t, e = check_survival(data[tcol], data[ecol], what=f"calibration ({tcol}/{ecol})")
    if u >= t.max():
        raise NpcaiError(f"calibration at {u:g}: no follow-up beyond {u:g} (longest {t.max():g}); choose an "
                         "earlier time")
    pred = model.predict_survival(data, [u]).iloc[:, 0].to_numpy()
    g = max(1, len(pred) // m)
    cuts = np.unique(np.quantile(np.concatenate([[0.0, 1.0], pred]), np.linspace(0, 1, g + 1)))
    groups = km_groups(pred, t, e, u, cuts, level)
    if groups.km.isna().any():
        log.warning("calibration at %g: %d group(s) have no Kaplan-Meier estimate (fewer than 2 patients or "
                    "follow-up ending before %g)", u, int(groups.km.isna().sum()), u)
    opt = np.zeros(len(groups))
    n_ok = np.zeros(len(groups))
    failed = 0
    rng = np.random.default_rng(seed)
    for _ in track(range(n_boot), f"Calibration bootstrap at {u:g}"):
        idx = rng.integers(0, len(data), len(data))
        boot = data.iloc[idx]
        if boot[ecol].sum() < 5:           # rms: fewer than 5 events -> resample skipped
            failed += 1
            continue
        try:
            mb = CoxPH(ties=model.ties).fit(boot, tcol, ecol, terms, what="bootstrap Cox model")
        except NpcaiError:
            failed += 1
            continue
        train = km_groups(mb.predict_survival(boot, [u]).iloc[:, 0].to_numpy(), t[idx], e[idx], u, cuts)
        test = km_groups(mb.predict_survival(data, [u]).iloc[:, 0].to_numpy(), t, e, u, cuts)
        d = (train.km - train.predicted) - (test.km - test.predicted)
        ok = d.notna().to_numpy()
        opt[ok] += d.to_numpy()[ok]
        n_ok[ok] += 1
    if n_boot and failed > 0.1 * n_boot:
        raise NpcaiError(f"calibration: the model could not be refitted on {failed} of {n_boot} bootstrap "
                         "resamples (too few events); use fewer covariates or n_boot=0")
    if failed:
        log.warning("calibration: %d of %d bootstrap resamples skipped (fewer than 5 events or no fit)",
                    failed, n_boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        groups["optimism"] = np.where(n_ok > 0, opt / np.maximum(n_ok, 1), np.nan) if n_boot else 0.0
    groups["km_corrected"] = groups.km - groups.optimism
    idx = data.index
    ici = calibration_indices(pred, t, e, u)
    return CalibrationResult(u=float(u), m=int(m), groups=groups, predicted=pd.Series(pred, index=idx),
                             smoothed_observed=pd.Series(ici["observed"], index=idx), ici=ici["ici"],
                             e50=ici["e50"], e90=ici["e90"], gof=dagostino_nam(pred, t, e, u, gof_groups),
                             n_boot=n_boot, n_boot_failed=failed, seed=seed)

