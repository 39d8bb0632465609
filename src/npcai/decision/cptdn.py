"""Study 004's combined prognosis and treatment-decision nomogram (CPTDN) and its comparison models.

The CPTDN (seed 004, sections 2.4 and 3.3) is a multivariable Cox model of DFS fitted on the
training cohort only, with terms chosen by stepwise AIC (both directions) among the clinical
factors, the deep model's Prognostic-score, the treatment and the treatment x Predictive-score
interaction. The treatment terms are kept in every candidate model (the lower scope), so the
nomogram can always predict a patient's DFS under both treatments, which is what the
recommendation needs; the interaction's Wald p is reported whatever its size.

The comparison models of the seed's Fig. 3 / Table D2 are stepwise Cox models too:

* ``Model_clin_all`` -- clinical factors, all training patients;
* ``Model_clin_ccrt`` -- clinical factors, training patients treated with CCRT;
* ``Model_clin_ict+ccrt`` -- clinical factors, training patients treated with IC+CCRT;
* ``Model_clin+prog`` -- clinical factors and the Prognostic-score, all training patients.

Each model's risk score on any patient is its linear predictor; a model whose stepwise
selection keeps no term scores everyone alike (C-index 0.5) and says so.

Examples:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> n = 200
    >>> d = pd.DataFrame({"age": rng.normal(50, 10, n), "prognostic_score": rng.normal(size=n),
    ...                   "predictive_score": rng.normal(size=n),
    ...                   "treatment": np.where(rng.random(n) < .5, "CCRT", "IC+CCRT")})
    >>> lp = d.prognostic_score + (d.treatment == "IC+CCRT") * d.predictive_score
    >>> d["time"] = rng.exponential(60 * np.exp(-lp)); d["event"] = (d.time < 80).astype(int)
    >>> d.loc[d.time >= 80, "time"] = 80.0
    >>> m = fit_cptdn(d, "time", "event", clinical=["age"])
    >>> "treatment:predictive_score" in m.terms
    True
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["TREATMENT_TERMS", "SelectedModel", "fit_cptdn", "fit_comparison_models", "model_risk",
           "cindex_table", "univariate_screening", "COMPARISON_MODELS"]

log = logging.getLogger(__name__)

#: the terms every CPTDN keeps (lower scope of the stepwise selection)
TREATMENT_TERMS = ("treatment", "predictive_score", "treatment:predictive_score")
#: the comparison models of seed 004 (Fig. 3, Table D2), in report order
COMPARISON_MODELS = ("CPTDN", "Model_clin_all", "Model_clin_ccrt", "Model_clin_ict+ccrt", "Model_clin+prog")


@dataclass
class SelectedModel:
    """A Cox model chosen by stepwise AIC.

    Attributes:
        name: e.g. ``CPTDN``.
        terms: the selected terms (empty: no term lowered the AIC).
        model: the fitted :class:`~npcai.survival.cox.CoxPH` (None when no term was kept).
        steps: the stepwise path (``npcai.survival.step_aic``'s table).
        n, events: the patients it was fitted on.
        fitted_on: which patients (e.g. "training cohort, CCRT").
        candidates: the upper scope.
    """

    name: str
    terms: list[str]
    model: object | None
    steps: pd.DataFrame
    n: int
    events: int
    fitted_on: str
    candidates: list[str] = field(default_factory=list)

    def coefficients(self) -> pd.DataFrame:
        """The fitted coefficients (HR with 95% CI and Wald p), one row per design column."""
        if self.model is None:
            return pd.DataFrame(columns=["model", "term", "coef", "hr", "hr_low", "hr_high", "p"])
        s = self.model.summary_.reset_index().rename(columns={"index": "term"})
        s.insert(0, "model", self.name)
        return s[["model", "term", "coef", "hr", "hr_low", "hr_high", "p"]]


def _stepwise(name: str, data: pd.DataFrame, time: str, event: str, upper: Sequence[str],
              lower: Sequence[str] = (), fitted_on: str = "") -> SelectedModel:
    from npcai.survival.stepwise import step_aic

    if int(data[event].sum()) < 2:
        raise NpcaiError(f"{name}: {int(data[event].sum())} event(s) among the {len(data)} {fitted_on or 'patients'}; "
                         "a Cox model needs events: use more patients or a longer follow-up")
    r = step_aic(data, time, event, upper=list(upper), lower=list(lower), start=list(lower) or [])
    return SelectedModel(name=name, terms=list(r.final_terms), model=r.final_model, steps=r.steps,
                         n=len(data), events=int(data[event].sum()), fitted_on=fitted_on, candidates=list(upper))


def fit_cptdn(train: pd.DataFrame, time: str, event: str, *, clinical: Sequence[str],
              prognostic: str = "prognostic_score") -> SelectedModel:
    """The CPTDN on the training patients: stepwise AIC from the treatment terms upward.

    Args:
        train: training patients (index = id) with time, event, ``treatment`` (CCRT / IC+CCRT),
            ``prognostic_score``, ``predictive_score`` and the clinical factor columns.
        clinical: candidate clinical terms (``age``, ``sex``, ``C(t_stage)``, ...).
    """
    _check_treatments(train, "CPTDN training cohort")
    upper = list(clinical) + [prognostic, *TREATMENT_TERMS]
    return _stepwise("CPTDN", train, time, event, upper, TREATMENT_TERMS, "training cohort")


def _check_treatments(data: pd.DataFrame, what: str) -> None:
    from npcai.decision.recommend_dfs import CONTROL, EXPERIMENTAL

    if "treatment" not in data.columns:
        raise NpcaiError(f"{what}: no treatment column; the CPTDN needs each patient's treatment "
                         f"({CONTROL} or {EXPERIMENTAL})")
    vals = set(data["treatment"].dropna().astype(str))
    bad = vals - {CONTROL, EXPERIMENTAL}
    if bad:
        raise NpcaiError(f"{what}: treatment value(s) {sorted(bad)}; study 004 compares {CONTROL} and {EXPERIMENTAL} "
                         "only: exclude other treatments first")
    if len(vals) < 2:
        raise NpcaiError(f"{what}: every patient received {next(iter(vals), 'nothing')}; the treatment "
                         f"interaction needs patients of both {CONTROL} and {EXPERIMENTAL}")


def fit_comparison_models(train: pd.DataFrame, time: str, event: str, *, clinical: Sequence[str],
                          prognostic: str = "prognostic_score") -> dict[str, SelectedModel]:
    """Model_clin_all, Model_clin_ccrt, Model_clin_ict+ccrt and Model_clin+prog on the training patients."""
    from npcai.decision.recommend_dfs import CONTROL, EXPERIMENTAL

    out = {}
    specs = [("Model_clin_all", train, list(clinical), "training cohort"),
             ("Model_clin_ccrt", train[train["treatment"] == CONTROL], list(clinical), f"training cohort, {CONTROL}"),
             ("Model_clin_ict+ccrt", train[train["treatment"] == EXPERIMENTAL], list(clinical),
              f"training cohort, {EXPERIMENTAL}"),
             ("Model_clin+prog", train, list(clinical) + [prognostic], "training cohort")]
    for name, data, upper, on in specs:
        try:
            out[name] = _stepwise(name, data, time, event, upper, (), on)
        except NpcaiError as exc:
            log.warning("%s not fitted: %s", name, exc)
            out[name] = SelectedModel(name, [], None, pd.DataFrame(), len(data), int(data[event].sum()), on, upper)
    return out


def model_risk(m: SelectedModel, data: pd.DataFrame) -> np.ndarray:
    """The model's linear predictor on ``data`` (higher = riskier); zeros for an empty model."""
    if m.model is None:
        return np.zeros(len(data))
    return m.model.predict_lp(data)


def cindex_table(models: dict[str, SelectedModel], cohorts: dict[str, pd.DataFrame], time: str, event: str,
                 *, groups: dict[str, object] | None = None) -> pd.DataFrame:
    """Harrell's C (95% CI) of every model in every cohort and treatment group (Fig. 3, Table D2).

    Args:
        models: name -> :class:`SelectedModel`.
        cohorts: cohort label -> patients (e.g. training, internal test, external test).
        groups: group label -> treatment value (None = all patients); default all, CCRT, IC+CCRT.

    Returns:
        rows: cohort, group, model, n, events, c_index, low, high, note.
    """
    from npcai.decision.recommend_dfs import CONTROL, EXPERIMENTAL
    from npcai.stats.concordance import harrell_c

    groups = groups or {"All": None, CONTROL: CONTROL, EXPERIMENTAL: EXPERIMENTAL}
    rows = []
    for cname, d in cohorts.items():
        for gname, level in groups.items():
            sub = d if level is None else d[d["treatment"] == level]
            for mname, m in models.items():
                row = {"cohort": cname, "group": gname, "model": mname, "n": len(sub),
                       "events": int(sub[event].sum()) if len(sub) else 0, "c_index": np.nan, "low": np.nan,
                       "high": np.nan, "note": ""}
                if m.model is None:
                    row["note"] = "no term selected: every patient scores alike"
                    if row["events"]:
                        row.update(c_index=0.5)
                elif row["events"] == 0 or len(sub) < 2:
                    row["note"] = "no events"
                else:
                    c = harrell_c(sub[time].to_numpy(float), sub[event].to_numpy(int), model_risk(m, sub),
                                  what=f"C-index of {mname} ({cname}, {gname})")
                    row.update(c_index=c.c_index, low=c.low, high=c.high)
                rows.append(row)
    return pd.DataFrame(rows)


def univariate_screening(train: pd.DataFrame, time: str, event: str, factors: Sequence[str]) -> pd.DataFrame:
    """Univariate Cox of each clinical factor on the training cohort (seed 004, Fig. D1), with the
    Wald p of its interaction with the treatment (association with treatment response).

    Returns the :func:`npcai.survival.cox.cox_univariate` table plus ``p_interaction``.
    """
    from npcai.survival.cox import CoxPH, cox_univariate

    rows = []
    for f in factors:
        try:
            tab = cox_univariate(train, time, event, [f])
        except NpcaiError as exc:
            log.warning("univariate Cox of %s skipped: %s", f, exc)
            continue
        try:
            m = CoxPH().fit(train, time, event, [f"treatment*{f}"], what=f"interaction of treatment and {f}")
            p_int = m.term_test(f"treatment:{f}").p_value
        except NpcaiError as exc:
            log.warning("interaction of treatment and %s not estimable: %s", f, exc)
            p_int = np.nan
        tab["p_interaction"] = p_int
        rows.append(tab)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
