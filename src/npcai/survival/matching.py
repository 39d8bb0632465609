"""1:1 nearest-neighbour matching of two treatment groups, as ``MatchIt::matchit(method = "nearest")``.

Study 004 (Appendix A) matches IC+CCRT and CCRT patients 1:1 before modelling, because
physicians chose the treatment by stage; it matched inside one T and N stage (T3N1M0).
:func:`match_nearest` matches without replacement: each treated patient in turn takes the
nearest still-unmatched control among the *eligible* ones, or stays unmatched when none is.

**The default recipe** (what ``npcai survival match`` does unless told otherwise):

1. a logistic regression of the treatment on the covariates (IRLS, R's ``glm``) gives the
   propensity score; treated patients are matched in decreasing order of it (MatchIt's
   ``m.order = "largest"``);
2. a control is eligible when its logit propensity is within 0.2 SD of the logit of the
   treated patient's (Austin 2011, Pharm Stat 10:150: the caliper that removes most bias
   with least loss), when it has the same T and N stage (the stage columns among the
   covariates, :data:`STAGE_COLUMNS`, as study 004), and when every other numeric covariate
   is within 0.25 SD (Cochran & Rubin 1973: a 0.2-0.25 SD caliper on a normal covariate
   removes about 98 % of its bias);
3. among the eligible controls, the nearest in the Mahalanobis distance of the covariates
   (Rubin & Thomas 2000: Mahalanobis matching within propensity calipers).

In MatchIt this is ``matchit(treat ~ covs, method = "nearest", distance = "glm",
link = "linear.logit", mahvars = ~ covs, exact = ~ t_stage + n_stage,
caliper = c(0.2, age = 0.25, ...))``; ``tests/survival`` checks the pairs, calipers, SMDs and
counts against it. Why this recipe: on the default phantom (120 patients; physicians give
IC+CCRT to advanced stages, so T and N stage start 0.77 SD apart) MatchIt's default (nearest
propensity, no caliper) leaves |SMD| up to 0.70 (t_stage); a 0.2-SD logit caliper alone 0.42
(age), Mahalanobis within it 0.36 (age), plus exact T and N stage 0.39 (age: the few controls
left in each stage are younger); only the covariate caliper on top reaches |SMD| < 0.1 on
every covariate. The price is discarded patients: 14 of 57 treated are matched on the
120-patient phantom (108 of 179 on 400 patients). The balance table and the counts per arm
say so; :attr:`MatchResult.balanced` says whether every covariate reached |SMD| < 0.1.

The other distances, MatchIt's:

* ``distance="propensity"``: the nearest propensity score (on ``ps_scale``). With
  ``caliper=None, ps_scale="probability", exact=(), covariate_calipers=None`` this is
  MatchIt's default ``matchit(method = "nearest")``;
* ``distance="mahalanobis"`` with ``caliper=None``: no propensity model; treated patients
  in data order (MatchIt's ``distance = "mahalanobis"``). The Mahalanobis distance
  standardises the covariates and uses the pooled within-group covariance, as MatchIt.

Ties go to the first control in data order. The balance table gives for every covariate
(and the propensity score) the means, the standardised mean difference (treated minus
control over the treated group's SD in the full sample; ``sqrt(p (1 - p))`` for 0/1
columns, as MatchIt's ATT summary) and a p-value (Welch t-test; chi-square for 0/1
columns) before and after matching. The SMD of a very skewed covariate (EBV DNA copies)
is small even for a real difference because its SD is huge: on the 120-patient phantom raw
``ebv_dna`` starts at SMD 0.15 but ``log1p(ebv_dna)`` at 0.68, and after the default matching
on raw ``ebv_dna`` the groups still differ (p = 0.003 on 400 patients at SMD 0.008). Match on
``log1p(ebv_dna)`` to balance it truly; the default recipe then keeps 4 pairs of 120 patients
(55 of 400): the honest price of balancing three strong confounders in a small cohort.

Written by hand (about 150 lines): causallib and psmpy do not reproduce MatchIt's matching
order, caliper scale or balance statistics; the pairs and SMDs here equal MatchIt 4.5
(``tests/survival``; the p-values are scipy's, not compared). MatchIt 4.5.1 ignores a
caliper in its fast path (propensity distance without ``mahvars``); there the pairs are
checked against its documented rule written in R.

Examples:
    >>> import pandas as pd
    >>> d = pd.DataFrame({"treat": [1, 1, 0, 0, 0, 0], "age": [60, 40, 58, 41, 30, 70]},
    ...                  index=["P1", "P2", "P3", "P4", "P5", "P6"])
    >>> r = match_nearest(d, "treat", ["age"], distance="mahalanobis", caliper=None)
    >>> r.pairs[["treated", "control"]].values.tolist()
    [['P1', 'P3'], ['P2', 'P4']]
    >>> r.counts.loc["control", ["all", "matched", "unmatched"]].tolist()
    [4, 2, 2]
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.survival._data import Design, build_design, complete_cases, expand_terms, term_variables

__all__ = ["MatchResult", "match_nearest", "logistic_propensity", "mahalanobis_coordinates", "balance_table",
           "default_exact", "DEFAULT_CALIPER", "DEFAULT_COVARIATE_CALIPER", "STAGE_COLUMNS", "SMD_THRESHOLD"]

log = logging.getLogger(__name__)

#: the caliper of the default recipe, in SDs of the logit of the propensity score (Austin 2011)
DEFAULT_CALIPER = 0.2
#: the caliper on each other numeric covariate, in its SDs (Cochran & Rubin 1973: 0.2-0.25 SD)
DEFAULT_COVARIATE_CALIPER = 0.25
#: clinical columns matched exactly by default when they are covariates (study 004 matched within one T/N stage)
STAGE_COLUMNS = ("t_stage", "n_stage", "stage")
#: |SMD| below this after matching counts as balanced (Austin 2009; Stuart 2010)
SMD_THRESHOLD = 0.1
_SCORE_ROWS = {"logit": "propensity (logit)", "probability": "propensity"}


@dataclass
class MatchResult:
    """Matched pairs, balance before/after, and how many patients each arm kept.

    Attributes:
        pairs: DataFrame: pair, treated, control (patient ids), score_treated, score_control
            (the propensity score on its scale; NaN when none was estimated), gap (the
            matching distance: propensity difference or Mahalanobis distance).
        balance: DataFrame per covariate column (and first the propensity score, when one was
            estimated): mean_treated_before, mean_control_before, smd_before, p_before,
            mean_treated_after, mean_control_after, smd_after, p_after.
        counts: DataFrame indexed by ``treated``/``control``: level, all, matched, unmatched
            (MatchIt's ``summary()$nn``).
        matched: patient ids in the matched cohort (treated then control of each pair).
        unmatched_treated: treated patients without a control (caliper, exact strata or too
            few controls).
        distance: Series of the propensity score per patient on ``ps_scale`` (None when none
            was estimated).
        caliper: the caliper in units of that score (None without one).
        caliper_sd: the caliper in standard deviations of the score, as given.
        ps_scale: ``"logit"`` or ``"probability"``.
        treated_level, control_level: the treatment values matched.
        method: ``"propensity"`` or ``"mahalanobis"`` (what picks the control).
        mahvars: the covariates of the Mahalanobis distance (empty for propensity matching).
        exact: the columns matched exactly.
        covariate_calipers: term -> caliper in SDs of that covariate.
        n_missing: patients left out before matching for a missing value.
        recipe: one sentence describing the matching, for a methods section.
    """

    pairs: pd.DataFrame
    balance: pd.DataFrame
    counts: pd.DataFrame
    matched: list
    unmatched_treated: list
    distance: pd.Series | None
    caliper: float | None
    caliper_sd: float | None
    ps_scale: str
    treated_level: object
    control_level: object
    method: str
    mahvars: list = field(default_factory=list)
    exact: list = field(default_factory=list)
    covariate_calipers: dict = field(default_factory=dict)
    n_missing: int = 0
    recipe: str = ""

    @property
    def covariate_balance(self) -> pd.DataFrame:
        """The balance rows of the covariates (without the propensity score's row)."""
        return self.balance.drop(index=[r for r in self.balance.index if r in _SCORE_ROWS.values()])

    @property
    def max_abs_smd(self) -> float:
        """The largest |SMD| after matching over the covariates (the balance criterion)."""
        return float(self.covariate_balance.smd_after.abs().max())

    @property
    def balanced(self) -> bool:
        """True when every covariate's |SMD| after matching is below :data:`SMD_THRESHOLD` (0.1)."""
        return self.max_abs_smd < SMD_THRESHOLD


def _logistic_lp(X: np.ndarray, treat: np.ndarray, max_iter: int = 50) -> np.ndarray:
    """Linear predictor of an unpenalised logistic regression with intercept (IRLS, as ``glm``)."""
    A = np.column_stack([np.ones(len(treat)), X])
    beta = np.zeros(A.shape[1])
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(-(A @ beta)))
        w = np.clip(p * (1 - p), 1e-12, None)
        step = np.linalg.solve(A.T @ (w[:, None] * A), A.T @ (treat - p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        raise NpcaiError("propensity model: the logistic regression did not converge (the covariates "
                         "separate the treatment groups perfectly); drop the separating covariate or match "
                         "exactly on it")
    eta = A @ beta
    p = 1 / (1 + np.exp(-eta))
    if (np.minimum(p, 1 - p) < 1e-8).any():
        raise NpcaiError("propensity model: some patients have a propensity of 0 or 1 (perfect separation); "
                         "drop the separating covariate or match exactly on it")
    return eta


def logistic_propensity(X: np.ndarray, treat: np.ndarray, max_iter: int = 50) -> np.ndarray:
    """P(treated | X) from an unpenalised logistic regression with intercept (IRLS, as ``glm``)."""
    return 1 / (1 + np.exp(-_logistic_lp(X, treat, max_iter)))


def mahalanobis_coordinates(X: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """Coordinates in which Euclidean distance is MatchIt's Mahalanobis distance.

    Columns are standardised, then whitened with the pooled within-group covariance (each
    group centred on its own mean, divided by n - 2), as MatchIt's ``transform_covariates``;
    constant columns are dropped, a singular covariance uses the pseudo-inverse.
    """
    X = X[:, np.ptp(X, axis=0) > 0]
    if X.shape[1] == 0:
        raise NpcaiError("matching: every Mahalanobis covariate is constant; choose covariates that vary")
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    Zc = Z.copy()
    for g in (0, 1):
        Zc[treat == g] -= Z[treat == g].mean(0)
    S = Zc.T @ Zc / (len(Z) - 2)
    vals, vecs = np.linalg.eigh(S)
    keep = vals > vals.max() * 1e-12
    return Z @ (vecs[:, keep] / np.sqrt(vals[keep]))


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


def _levels(data: pd.DataFrame, treatment: str, treated_level) -> tuple[object, object]:
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
    return treated_level, next(v for v in levels if v != treated_level)


def _check_options(distance: str, caliper: float | None, ps_scale: str, covariates: Sequence[str]) -> None:
    if distance not in ("propensity", "mahalanobis"):
        raise NpcaiError(f"matching: distance {distance!r} is not 'propensity' or 'mahalanobis'")
    if ps_scale not in ("logit", "probability"):
        raise NpcaiError(f"matching: propensity scale {ps_scale!r} is not 'logit' or 'probability'")
    if caliper is not None and not caliper > 0:
        raise NpcaiError(f"matching: caliper {caliper} must be positive (in SDs of the propensity score)")
    if not covariates:
        raise NpcaiError("matching: give at least one covariate to match on")


def default_exact(covariates: Sequence[str]) -> list[str]:
    """The stage columns (:data:`STAGE_COLUMNS`) among the covariates' variables: matched exactly by default.

    Examples:
        >>> default_exact(["age", "C(t_stage)", "n_stage", "ebv_dna"])
        ['t_stage', 'n_stage']
    """
    found = [v for c in covariates if ":" not in c for v in term_variables(c) if v in STAGE_COLUMNS]
    return list(dict.fromkeys(found))


def _caliper_widths(design: Design, exact: Sequence[str],
                    covariate_calipers: float | Mapping[str, float] | None) -> dict[str, float]:
    """Term -> caliper in SDs: a number applies to every one-column numeric term with more than two
    values whose variable is not matched exactly; a mapping names the terms."""
    if covariate_calipers is None:
        return {}
    if isinstance(covariate_calipers, Mapping):
        widths = {str(k): float(v) for k, v in covariate_calipers.items()}
        unknown = [t for t in widths if t not in design.terms]
        if unknown:
            raise NpcaiError(f"matching: caliper on {unknown[0]!r}, which is not a covariate "
                             f"({', '.join(design.terms)})")
    else:
        widths = {t: float(covariate_calipers) for t in design.terms
                  if len(design.assign[t]) == 1 and t not in design.factors and ":" not in t
                  and not set(term_variables(t)) & set(exact)
                  and len(np.unique(design.X[:, design.assign[t][0]])) > 2}
    for term, width in widths.items():
        if not width > 0:
            raise NpcaiError(f"matching: the caliper of {term!r} ({width:g}) must be positive (in SDs of {term})")
        j = design.assign[term]
        if len(j) != 1 or len(np.unique(design.X[:, j[0]])) <= 2:
            raise NpcaiError(f"matching: a caliper needs a numeric covariate with more than two values; {term!r} "
                             "is binary or a factor (match exactly on it instead)")
    return widths


def _recipe(distance: str, caliper_sd: float | None, ps_scale: str, mahvars: Sequence[str],
            exact: Sequence[str], widths: Mapping[str, float], covariates: Sequence[str]) -> str:
    score = "logit of the propensity score" if ps_scale == "logit" else "propensity score"
    ps_model = f"logistic regression of the treatment on {', '.join(covariates)}"
    if distance == "propensity":
        text = f"1:1 nearest-neighbour matching without replacement on the {score} ({ps_model})"
    else:
        text = ("1:1 nearest-neighbour matching without replacement on the Mahalanobis distance of "
                f"{', '.join(mahvars)}")
    if caliper_sd is not None:
        text += (f"{' among controls' if distance == 'mahalanobis' else ''} within {caliper_sd:g} SD "
                 f"of the {score}" + (f" ({ps_model})" if distance == "mahalanobis" else ""))
    if exact:
        text += f", exactly on {', '.join(exact)}"
    if widths:
        text += ", within " + ", ".join(f"{w:g} SD of {t}" for t, w in widths.items())
    if distance == "propensity" or caliper_sd is not None:
        text += "; treated patients in decreasing order of the score"
    return text


def match_nearest(data: pd.DataFrame, treatment: str, covariates: Sequence[str], *,
                  distance: Literal["propensity", "mahalanobis"] = "mahalanobis",
                  caliper: float | None = DEFAULT_CALIPER, ps_scale: Literal["logit", "probability"] = "logit",
                  exact: Sequence[str] | None = None,
                  covariate_calipers: float | Mapping[str, float] | None = DEFAULT_COVARIATE_CALIPER,
                  mahvars: Sequence[str] | None = None, treated_level=None) -> MatchResult:
    """1:1 nearest-neighbour matching without replacement (MatchIt ``method = "nearest"``).

    The defaults are the recipe of the module docstring: the Mahalanobis distance of the
    covariates among controls within 0.2 SD of the logit of the propensity score, exactly on
    the stage columns among the covariates, and within 0.25 SD on every other numeric
    covariate. ``distance="propensity", caliper=None, ps_scale="probability", exact=(),
    covariate_calipers=None`` is MatchIt's own default; ``distance="mahalanobis",
    caliper=None, exact=(), covariate_calipers=None`` is MatchIt's ``distance="mahalanobis"``.

    Args:
        data: one row per patient (index = patient id).
        treatment: a column with exactly two values (e.g. CCRT / IC+CCRT, or 0/1).
        covariates: terms of the propensity model (factors allowed, e.g. ``C(t_stage)``).
        distance: what picks the control among the eligible ones: ``"propensity"`` (the
            nearest score) or ``"mahalanobis"`` (the nearest in ``mahvars``).
        caliper: in SDs of the propensity score on ``ps_scale`` (Austin 2011: 0.2 of the
            logit); ``None`` for none. A treated patient with no eligible control stays unmatched.
        ps_scale: ``"logit"`` (MatchIt ``link = "linear.logit"``) or ``"probability"``.
        exact: columns that must be equal within a pair (MatchIt's ``exact``); default
            (``None``): :func:`default_exact`, the stage columns among the covariates; ``()`` for none.
        covariate_calipers: calipers on covariates in SDs of the whole sample (MatchIt's named
            ``caliper`` entries): a number applies to every numeric covariate term with more
            than two values not matched exactly; a mapping (term -> SDs) names them; ``None``: none.
        mahvars: terms of the Mahalanobis distance (default: ``covariates``).
        treated_level: which value is "treated" (matched in full); default 1 for 0/1 columns,
            else the smaller group (ties: the later value in sorted order).
    """
    _check_options(distance, caliper, ps_scale, covariates)
    covariates = expand_terms(covariates)
    mahvars = expand_terms(mahvars) if mahvars else list(covariates)
    exact = default_exact(covariates) if exact is None else list(exact)
    used = [treatment] + [v for c in [*covariates, *mahvars] for v in term_variables(c)] + exact
    n_in = len(data)
    data = complete_cases(data, used, what="matching")
    treated_level, control_level = _levels(data, treatment, treated_level)
    treat = (data[treatment] == treated_level).to_numpy().astype(int)
    design = build_design(data, covariates)
    X = design.X
    const = [c for j, c in enumerate(design.columns) if np.ptp(X[:, j]) == 0]
    if const:
        raise NpcaiError(f"matching: covariate {const[0]!r} is constant; remove it")
    widths = _caliper_widths(design, exact, covariate_calipers)
    t_idx, c_idx = np.flatnonzero(treat == 1), np.flatnonzero(treat == 0)
    if c_idx.size < t_idx.size:
        log.warning("matching: %d treated (%s) but only %d control (%s) patients; at least %d treated "
                    "patients stay unmatched (or choose the other level as treated)", t_idx.size, treated_level,
                    c_idx.size, control_level, t_idx.size - c_idx.size)
    score, cal = None, None
    if distance == "propensity" or caliper is not None:
        eta = _logistic_lp(X, treat)
        score = eta if ps_scale == "logit" else 1 / (1 + np.exp(-eta))
        if caliper is not None:
            cal = float(caliper * score.std(ddof=1))
        order = t_idx[np.argsort(-score[t_idx], kind="stable")]     # MatchIt m.order = "largest"
    else:
        order = t_idx                                                # MatchIt m.order = "data"
    if distance == "propensity":
        def dist(i: int, cand: np.ndarray) -> np.ndarray:
            return np.abs(score[cand] - score[i])
    else:
        M = mahalanobis_coordinates(build_design(data, mahvars).X, treat)

        def dist(i: int, cand: np.ndarray) -> np.ndarray:
            return np.sqrt(((M[cand] - M[i]) ** 2).sum(axis=1))
    limits = [(X[:, design.assign[t][0]], w * float(X[:, design.assign[t][0]].std(ddof=1)))
              for t, w in widths.items()]
    pairs, unmatched = _greedy(order, treat, dist, score, cal, _strata(data, exact), limits)
    if not pairs:
        raise NpcaiError("matching: no treated patient has an eligible control (caliper"
                         f"{', exact columns' if exact else ''}{', covariate calipers' if widths else ''}); "
                         "widen the calipers or match exactly on fewer columns")
    return _result(data, design, treat, pairs, unmatched, score, n_in, treated_level=treated_level,
                   control_level=control_level, caliper=cal, caliper_sd=caliper, ps_scale=ps_scale,
                   method=distance, mahvars=mahvars if distance == "mahalanobis" else [], exact=exact,
                   covariate_calipers=widths,
                   recipe=_recipe(distance, caliper, ps_scale, mahvars, exact, widths, covariates))


def _result(data: pd.DataFrame, design: Design, treat: np.ndarray, pairs: list, unmatched: list,
            score: np.ndarray | None, n_in: int, **fields) -> MatchResult:
    ids = list(data.index)
    matched = np.zeros(len(ids), bool)
    for i, j, _ in pairs:
        matched[[i, j]] = True
    cov_frame = pd.DataFrame(design.X, columns=design.columns, index=data.index)
    if score is not None:
        cov_frame.insert(0, _SCORE_ROWS[fields["ps_scale"]], score)
    pair_df = pd.DataFrame({
        "pair": np.arange(1, len(pairs) + 1), "treated": [ids[i] for i, _, _ in pairs],
        "control": [ids[j] for _, j, _ in pairs],
        "score_treated": [score[i] if score is not None else np.nan for i, _, _ in pairs],
        "score_control": [score[j] if score is not None else np.nan for _, j, _ in pairs],
        "gap": [g for *_, g in pairs]})
    n_t, n_c = int(treat.sum()), int((treat == 0).sum())
    counts = pd.DataFrame({"level": [fields["treated_level"], fields["control_level"]], "all": [n_t, n_c],
                           "matched": [len(pairs), len(pairs)], "unmatched": [n_t - len(pairs), n_c - len(pairs)]},
                          index=pd.Index(["treated", "control"], name="arm"))
    name = _SCORE_ROWS[fields["ps_scale"]]
    return MatchResult(pairs=pair_df, balance=balance_table(cov_frame, treat, matched), counts=counts,
                       matched=[ids[k] for i, j, _ in pairs for k in (i, j)],
                       unmatched_treated=[ids[i] for i in unmatched],
                       distance=pd.Series(score, index=data.index, name=name) if score is not None else None,
                       n_missing=n_in - len(data), **fields)


def _strata(data: pd.DataFrame, exact: Sequence[str]) -> np.ndarray:
    if not exact:
        return np.zeros(len(data))
    return data[list(exact)].astype(str).agg("|".join, axis=1).to_numpy()


def _greedy(order: np.ndarray, treat: np.ndarray, dist, score: np.ndarray | None, cal: float | None,
            strata: np.ndarray, limits: list[tuple[np.ndarray, float]] = ()) -> tuple[list[tuple[int, int, float]], list[int]]:
    """Each treated patient in ``order`` takes the nearest available control of its stratum
    within the caliper (ties: the first in data order); returns the pairs and the unmatched."""
    available = treat == 0
    pairs, unmatched = [], []
    for i in order:
        cand = np.flatnonzero(available & (strata == strata[i]))
        if cal is not None:
            cand = cand[np.abs(score[cand] - score[i]) <= cal]
        for x, width in limits:
            cand = cand[np.abs(x[cand] - x[i]) <= width]
        if cand.size == 0:
            unmatched.append(int(i))
            continue
        dd = dist(i, cand)
        k = int(np.argmin(dd))
        available[cand[k]] = False
        pairs.append((int(i), int(cand[k]), float(dd[k])))
    return pairs, unmatched
