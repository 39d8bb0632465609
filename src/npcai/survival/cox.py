"""Cox proportional-hazards regression as R's ``survival::coxph`` (Efron or Breslow ties).

:class:`CoxPH` fits by Newton–Raphson with step halving on the partial likelihood, with
covariates centred at their means as R does, optionally stratified. It reports coefficients,
SEs, hazard ratios with Wald CIs, the Wald, likelihood-ratio and score tests of the whole
model, AIC, the Wald test of any term (e.g. the interaction ``treatment:score``, study 004's
p_interaction) and the predicted survival S(t | x) of new patients from the Breslow-type
baseline hazard (R's ``survfit.coxph``: the Efron-corrected increments after an Efron fit,
Nelson–Aalen-type increments after a Breslow fit). :func:`cox_univariate` is the screening
table (one model per covariate).

Written by hand (about 150 lines of numpy): lifelines' ``CoxPHFitter`` has Efron ties only,
no score test and no Breslow-type predicted survival under Efron's correction, which are
needed to equal R; ``tests/survival`` checks the Efron fit against lifelines as well as
against R (coefficients, SEs, the three tests, AIC, predicted survival, to 1e-6).

Bad input is refused with one line: a constant or collinear covariate, a covariate with no
events in one level (monotone likelihood: an infinite coefficient), non-convergence.
Missing covariate values are dropped with a logged warning (complete cases, R's ``na.omit``).

Examples:
    >>> import pandas as pd
    >>> d = pd.DataFrame({"time": [5, 8, 12, 3, 9, 15, 7, 11], "event": [1, 1, 0, 1, 0, 1, 1, 0],
    ...                   "age": [60, 45, 50, 70, 40, 55, 65, 42]})
    >>> m = CoxPH().fit(d, "time", "event", ["age"])
    >>> round(float(m.coef_["age"]), 4)
    0.1665
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.survival._data import (Design, build_design, check_survival, complete_cases, expand_terms,
                                  term_variables)

__all__ = ["CoxPH", "TestResult", "cox_univariate"]

log = logging.getLogger(__name__)
Ties = Literal["efron", "breslow"]


@dataclass(frozen=True)
class TestResult:
    """A chi-square test: statistic, degrees of freedom, p-value."""

    chisq: float
    df: int
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def _chi2(stat: float, df: int) -> TestResult:
    return TestResult(float(stat), int(df), float(_st.chi2.sf(stat, df)))


class _RiskSets:
    """Per-stratum sorted data and tied-event bookkeeping for fast partial-likelihood sums."""

    def __init__(self, time: np.ndarray, event: np.ndarray, strata: np.ndarray):
        self.blocks = []
        for s in np.unique(strata):
            idx = np.flatnonzero(strata == s)
            idx = idx[np.argsort(time[idx], kind="stable")]
            t, e = time[idx], event[idx]
            ut = np.unique(t[e == 1])
            if ut.size == 0:
                self.blocks.append(None)
                continue
            start = np.searchsorted(t, ut, side="left")
            dead = np.flatnonzero(e == 1)
            which = np.searchsorted(ut, t[dead])
            d = np.bincount(which, minlength=ut.size)
            # Efron expansion: one row per death, fraction r/d within its tied time
            rep_t = np.repeat(np.arange(ut.size), d)
            frac = np.concatenate([np.arange(k) / k for k in d])
            self.blocks.append(dict(idx=idx, ut=ut, start=start, dead=dead, which=which, d=d,
                                    rep_t=rep_t, frac=frac, label=s))


def _sums(X: np.ndarray, eta: np.ndarray, blk: dict):
    """Risk-set sums S0, S1, S2 at each event time and the deaths' sums D0, D1, D2, XD."""
    idx = blk["idx"]
    x, w = X[idx], np.exp(eta[idx])
    rc0 = np.cumsum(w[::-1])[::-1]
    rc1 = np.cumsum((w[:, None] * x)[::-1], axis=0)[::-1]
    xx = x[:, :, None] * x[:, None, :]
    rc2 = np.cumsum((w[:, None, None] * xx)[::-1], axis=0)[::-1]
    st = blk["start"]
    dd, which, k = blk["dead"], blk["which"], blk["ut"].size
    D0 = np.bincount(which, weights=w[dd], minlength=k)
    D1 = np.zeros((k, x.shape[1]))
    np.add.at(D1, which, w[dd, None] * x[dd])
    D2 = np.zeros((k, x.shape[1], x.shape[1]))
    np.add.at(D2, which, w[dd, None, None] * xx[dd])
    XD = np.zeros((k, x.shape[1]))
    np.add.at(XD, which, x[dd])
    return rc0[st], rc1[st], rc2[st], D0, D1, D2, XD, eta[idx][dd].sum()


def _event_terms(X: np.ndarray, beta: np.ndarray, rs: _RiskSets, ties: str, need_var: bool = True):
    """Per stratum, per event-time row (one row per death under Efron): the row's unique-time
    index, multiplicity, risk-set mean m and variance V; and per unique time the deaths' sum of
    x and of the linear predictor. The partial likelihood, score, information and cox.zph are
    sums of these."""
    eta = X @ beta
    for blk in rs.blocks:
        if blk is None:
            continue
        S0, S1, S2, D0, D1, D2, XD, eta_d = _sums(X, eta, blk)
        if ties == "efron":
            r, f = blk["rep_t"], blk["frac"]
            S0, S1, S2 = S0[r] - f * D0[r], S1[r] - f[:, None] * D1[r], S2[r] - f[:, None, None] * D2[r]
            mult = np.ones(r.size)
        else:
            r = np.arange(blk["ut"].size)
            mult = blk["d"].astype(float)
        m = S1 / S0[:, None]
        v = S2 / S0[:, None, None] - m[:, :, None] * m[:, None, :] if need_var else None
        yield dict(blk=blk, row_time=r, mult=mult, S0=S0, m=m, V=v, XD=XD, eta_d=eta_d)


def _loglik(X: np.ndarray, beta: np.ndarray, rs: _RiskSets, ties: str, need_info: bool = True):
    """Partial log-likelihood, score vector and information matrix at ``beta``."""
    p = X.shape[1]
    ll, grad, info = 0.0, np.zeros(p), np.zeros((p, p))
    for c in _event_terms(X, beta, rs, ties, need_info):
        mult = c["mult"]
        ll += c["eta_d"] - np.sum(mult * np.log(c["S0"]))
        grad += c["XD"].sum(0) - (mult[:, None] * c["m"]).sum(0)
        if need_info:
            info += (mult[:, None, None] * c["V"]).sum(0)
    return ll, grad, info


def _check_design(X: np.ndarray, columns: list[str], what: str) -> None:
    for j, c in enumerate(columns):
        if np.ptp(X[:, j]) == 0:
            raise NpcaiError(f"{what}: covariate {c!r} is constant ({X[0, j]:g} for every patient); "
                             "it cannot be estimated: remove it")
    for j in range(1, X.shape[1]):
        Xc = X[:, : j + 1] - X[:, : j + 1].mean(0)
        if np.linalg.matrix_rank(Xc, tol=1e-9 * max(1.0, np.abs(Xc).max())) < j + 1:
            raise NpcaiError(f"{what}: covariate {columns[j]!r} is perfectly collinear with "
                             f"{', '.join(map(repr, columns[:j]))}; remove one of them")


class CoxPH:
    """Cox proportional-hazards model (R's ``coxph``); ``fit()`` returns self.

    Args:
        ties: ``"efron"`` (R's default) or ``"breslow"``.
        level: confidence level of the hazard-ratio intervals.
        max_iter: Newton–Raphson iterations before giving up (non-convergence is an error).

    Attributes (after ``fit``):
        design_: the :class:`~npcai.survival._data.Design` (columns, terms, factor levels).
        coef_, se_: Series indexed by design column; ``vcov_`` the covariance matrix.
        summary_: DataFrame per column: coef, hr, se, z, p, hr_low, hr_high.
        loglik_: (null, fitted) partial log-likelihoods (R's ``fit$loglik``).
        wald_test_, lr_test_, score_test_: :class:`TestResult` of the whole model.
        aic_: ``-2 loglik + 2 p`` (R's ``AIC``/``extractAIC``).
        n_, n_events_, iterations_.
    """

    def __init__(self, ties: Ties = "efron", level: float = 0.95, max_iter: int = 30):
        if ties not in ("efron", "breslow"):
            raise NpcaiError(f"Cox model: ties {ties!r} is not 'efron' or 'breslow'")
        self.ties, self.level, self.max_iter = ties, level, max_iter

    # ------------------------------------------------------------------ fitting
    def fit(self, data: pd.DataFrame, time: str, event: str, terms: Sequence[str], *,
            strata: str | None = None, what: str = "Cox model") -> "CoxPH":
        """Fit on ``data`` (one row per patient) with ``terms`` (see :mod:`npcai.survival._data`).

        Args:
            data: DataFrame with the time, event, covariate (and strata) columns.
            time, event: column names (time > 0; event 0/1).
            terms: model terms, e.g. ``["age", "C(t_stage)", "treatment*score"]``.
            strata: a column whose levels get separate baseline hazards (R's ``strata()``).
        """
        terms = expand_terms(terms)
        if not terms:
            raise NpcaiError(f"{what}: no covariates; give at least one term")
        used = [time, event] + [v for t in terms for v in term_variables(t)] + ([strata] if strata else [])
        data = complete_cases(data, used, what=what)
        ids = [str(i) for i in data.index]
        t, e = check_survival(data[time], data[event], what=f"{what} ({time}/{event})", ids=ids)
        design = build_design(data, terms)
        _check_design(design.X, design.columns, what)
        s = data[strata].astype(str).to_numpy() if strata else np.zeros(len(t), dtype=int)
        self._fit_arrays(design, t, e, s, what)
        self.strata = strata
        self.time_col, self.event_col = time, event
        return self

    def _fit_arrays(self, design: Design, t: np.ndarray, e: np.ndarray, s: np.ndarray, what: str) -> None:
        self.design_ = design
        mean = design.X.mean(0)
        X = design.X - mean
        rs = _RiskSets(t, e, s)
        p = X.shape[1]
        beta = np.zeros(p)
        ll, grad, info = _loglik(X, beta, rs, self.ties)
        ll0 = ll
        try:
            score = float(grad @ np.linalg.solve(info, grad))
        except np.linalg.LinAlgError as exc:
            raise NpcaiError(f"{what}: the information matrix is singular at the start; a covariate has "
                             "no variation among patients at risk") from exc
        converged = False
        for it in range(1, self.max_iter + 1):
            try:
                step = np.linalg.solve(info, grad)
            except np.linalg.LinAlgError as exc:
                raise NpcaiError(f"{what}: singular information matrix at iteration {it}; a covariate "
                                 "separates events perfectly or is collinear: remove it") from exc
            new = beta + step
            ll_new, g_new, i_new = _loglik(X, new, rs, self.ties)
            halving = 0
            while not np.isfinite(ll_new) or ll_new < ll - 1e-12 * abs(ll):
                halving += 1
                if halving > 30:
                    raise NpcaiError(f"{what}: Newton-Raphson failed to improve the likelihood; "
                                     "check for extreme covariate values")
                new = (beta + new) / 2
                ll_new, g_new, i_new = _loglik(X, new, rs, self.ties)
            done = abs(ll_new - ll) <= 1e-13 * abs(ll_new) and np.max(np.abs(new - beta)) < 1e-9
            beta, ll, grad, info = new, ll_new, g_new, i_new
            if done:
                converged = True
                break
        if not converged:
            raise NpcaiError(f"{what}: did not converge in {self.max_iter} iterations; a covariate may "
                             "separate events perfectly (e.g. no events in one level): remove or merge it")
        vcov = np.linalg.inv(info)
        se = np.sqrt(np.diag(vcov))
        sd = design.X.std(0)
        diverged = np.abs(beta) * sd > 20
        if diverged.any():
            c = design.columns[int(np.flatnonzero(diverged)[0])]
            raise NpcaiError(f"{what}: the coefficient of {c!r} is infinite (monotone likelihood: e.g. no "
                             "events in one of its levels); remove or merge that covariate")
        cols = design.columns
        z = _st.norm.ppf(1 - (1 - self.level) / 2)
        zstat = beta / se
        self.coef_ = pd.Series(beta, index=cols, name="coef")
        self.se_ = pd.Series(se, index=cols, name="se")
        self.vcov_ = pd.DataFrame(vcov, index=cols, columns=cols)
        self.summary_ = pd.DataFrame({
            "coef": beta, "hr": np.exp(beta), "se": se, "z": zstat, "p": 2 * _st.norm.sf(np.abs(zstat)),
            "hr_low": np.exp(beta - z * se), "hr_high": np.exp(beta + z * se)}, index=pd.Index(cols, name="term"))
        self.loglik_ = (float(ll0), float(ll))
        self.wald_test_ = _chi2(float(beta @ info @ beta), p)
        self.lr_test_ = _chi2(2 * (ll - ll0), p)
        self.score_test_ = _chi2(score, p)
        self.aic_ = float(-2 * ll + 2 * p)
        self.n_, self.n_events_, self.iterations_ = int(t.size), int(e.sum()), it
        self._center = mean
        self._train = dict(X=X, t=t, e=e, s=s, rs=rs)   # for cox.zph and residuals
        self._baseline = self._baseline_hazard(X, beta, rs)

    def _baseline_hazard(self, X: np.ndarray, beta: np.ndarray, rs: _RiskSets) -> dict:
        """Cumulative baseline hazard per stratum at the centred covariates (survfit.coxph)."""
        eta = X @ beta
        out = {}
        for blk in rs.blocks:
            if blk is None:
                continue
            S0, _, _, D0, *_ = _sums(X[:, :1] if X.shape[1] else np.zeros((len(eta), 1)), eta, blk)
            if self.ties == "efron":
                r, f = blk["rep_t"], blk["frac"]
                dh = np.bincount(r, weights=1.0 / (S0[r] - f * D0[r]), minlength=blk["ut"].size)
            else:
                dh = blk["d"] / S0
            out[blk["label"]] = (blk["ut"], np.cumsum(dh))
        return out

    # ------------------------------------------------------------------ results
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NpcaiError("Cox model: call fit() first")

    def term_test(self, term: str) -> TestResult:
        """Wald test that all coefficients of one term are 0 (e.g. an interaction's p)."""
        self._check_fitted()
        cols = self.design_.assign.get(term)
        if cols is None:
            terms = self.design_.terms
            alt = next((t for t in terms if set(t.split(":")) == set(term.split(":"))), None)
            if alt is None:
                raise NpcaiError(f"Cox model: no term {term!r} (terms: {', '.join(terms)})")
            cols = self.design_.assign[alt]
        b = self.coef_.to_numpy()[cols]
        v = self.vcov_.to_numpy()[np.ix_(cols, cols)]
        return _chi2(float(b @ np.linalg.solve(v, b)), len(cols))

    def predict_lp(self, data: pd.DataFrame, *, centered: bool = False) -> np.ndarray:
        """Linear predictor x'beta of new patients (``centered``: minus the training means, as R's
        ``predict(fit, type="lp")``)."""
        self._check_fitted()
        X = self.design_.transform(data)
        if np.isnan(X).any():
            raise NpcaiError("Cox model prediction: missing covariate values; every used column needs a value")
        return (X - self._center) @ self.coef_.to_numpy() if centered else X @ self.coef_.to_numpy()

    def baseline_cumhaz(self, times, stratum=None) -> np.ndarray:
        """Cumulative baseline hazard at the training means, at ``times`` (step function)."""
        self._check_fitted()
        key = stratum if stratum is not None else next(iter(self._baseline))
        if key not in self._baseline:
            raise NpcaiError(f"Cox model: stratum {stratum!r} has no events in the training data")
        ut, H = self._baseline[key]
        i = np.searchsorted(ut, np.asarray(times, dtype=float), side="right") - 1
        return np.where(i >= 0, H[np.maximum(i, 0)], 0.0)

    def predict_survival(self, data: pd.DataFrame, times) -> pd.DataFrame:
        """S(t | x) for each patient (rows, ``data``'s index) at each of ``times`` (columns).

        Equals R's ``summary(survfit(fit, newdata), times)``.
        """
        self._check_fitted()
        times = np.atleast_1d(np.asarray(times, dtype=float))
        lp = self.predict_lp(data, centered=True)
        if self.strata:
            st = data[self.strata].astype(str).to_numpy()
            H = np.vstack([self.baseline_cumhaz(times, s) for s in st])
        else:
            H = np.tile(self.baseline_cumhaz(times), (len(lp), 1))
        S = np.exp(-H * np.exp(lp)[:, None])
        return pd.DataFrame(S, index=data.index, columns=[float(t) for t in times])


def cox_univariate(data: pd.DataFrame, time: str, event: str, covariates: Sequence[str], *,
                   ties: Ties = "efron", level: float = 0.95) -> pd.DataFrame:
    """Univariate screening: one Cox model per covariate (study 004, Fig. D1).

    Returns one row per design column: covariate, term, n, events, coef, hr, hr_low, hr_high,
    p (Wald of the column) and p_term (Wald of the whole covariate, e.g. a 3-df factor).
    """
    rows = []
    for cov in covariates:
        m = CoxPH(ties=ties, level=level).fit(data, time, event, [cov], what=f"univariate Cox model of {cov}")
        p_term = m.term_test(m.design_.terms[0]).p_value if len(m.design_.terms) == 1 else float("nan")
        for col, r in m.summary_.iterrows():
            rows.append({"covariate": cov, "term": col, "n": m.n_, "events": m.n_events_, "coef": r.coef,
                         "hr": r.hr, "hr_low": r.hr_low, "hr_high": r.hr_high, "p": r.p, "p_term": p_term})
    return pd.DataFrame(rows)
