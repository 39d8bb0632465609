"""npcai.survival behaviour that users rely on: R's edge-case rules, bad input refused in one line,
thresholds fixed on training patients, balance after matching, docstring examples."""
from __future__ import annotations

import doctest
import importlib
import logging

import numpy as np
import pandas as pd
import pytest

from npcai.errors import NpcaiError
from npcai.survival.cox import CoxPH
from npcai.survival.groups import RiskGroups, compare_groups, subgroup_hazard_ratios
from npcai.survival.kaplan_meier import KaplanMeier
from npcai.survival.logrank import logrank_test
from npcai.survival.matching import match_nearest
from npcai.survival.nomogram import Nomogram, r_pretty
from npcai.survival.stepwise import step_aic


def _cox_data(n=80, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = np.ceil(rng.exponential(30 * np.exp(-0.7 * x)))
    c = rng.uniform(10, 60, n)
    return pd.DataFrame({"time": np.minimum(t, np.ceil(c)), "event": (t <= c).astype(int), "x": x,
                         "grp": rng.choice(["a", "b"], n), "age": rng.integers(30, 70, n).astype(float)},
                        index=[f"P{i:04d}" for i in range(n)])


@pytest.mark.parametrize("module", ["__init__", "_data", "kaplan_meier", "logrank", "cox", "zph", "stepwise", "nomogram",
                                    "calibration", "matching", "groups", "cindex"])
def test_docstring_examples_run(module):
    mod = importlib.import_module("npcai.survival" if module == "__init__" else f"npcai.survival.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_km_median_on_a_flat_half_is_the_midpoint_like_r():
    # S = 0.75, 0.5, 0.25, 0: survival sits at exactly 0.5 from t=2 to t=3 -> R reports 2.5
    km = KaplanMeier().fit([1, 2, 3, 4], [1, 1, 1, 1])
    assert km.median_.median == 2.5


def test_km_median_not_reached_is_reported_as_such():
    km = KaplanMeier().fit([1, 2, 3, 4, 5, 6], [1, 0, 0, 0, 0, 0])
    assert not km.median_.reached
    assert "not reached" in str(km.median_)


def test_km_refuses_times_beyond_follow_up():
    km = KaplanMeier().fit([1, 2, 3], [1, 0, 1])
    with pytest.raises(NpcaiError, match="outside the follow-up"):
        km.at([10])


@pytest.mark.parametrize("time,event,match", [
    ([0, 2, 3], [1, 0, 1], "<= 0"),
    ([-1, 2, 3], [1, 0, 1], "<= 0"),
    ([np.nan, 2, 3], [1, 0, 1], "missing"),
    ([1, 2, 3], [1, 2, 1], "not 0 or 1"),
])
def test_bad_times_and_events_are_one_line_errors(time, event, match):
    with pytest.raises(NpcaiError, match=match) as exc:
        KaplanMeier().fit(time, event)
    assert "\n" not in str(exc.value)


def test_no_events_is_refused_by_cox_and_logrank():
    d = _cox_data()
    d["event"] = 0
    with pytest.raises(NpcaiError, match="none of the 80 patients had an event"):
        CoxPH().fit(d, "time", "event", ["x"])
    with pytest.raises(NpcaiError, match="none of the"):
        logrank_test(d.time, d.event, d.grp)


def test_single_group_is_refused():
    d = _cox_data()
    with pytest.raises(NpcaiError, match="one group"):
        logrank_test(d.time, d.event, ["a"] * len(d))
    d["grp"] = "a"
    with pytest.raises(NpcaiError, match="two or more values"):
        compare_groups(d, "time", "event", "grp")


def test_constant_and_collinear_covariates_are_named():
    d = _cox_data()
    d["const"] = 3.0
    with pytest.raises(NpcaiError, match="'const' is constant"):
        CoxPH().fit(d, "time", "event", ["x", "const"])
    d["x2"] = 2 * d.x + 1
    with pytest.raises(NpcaiError, match="'x2' is perfectly collinear with 'x'"):
        CoxPH().fit(d, "time", "event", ["x", "x2"])


def test_monotone_likelihood_is_refused_not_a_huge_coefficient():
    d = _cox_data()
    d["sep"] = np.where(d.event == 1, "y", "n")     # every event in one level: infinite HR
    with pytest.raises(NpcaiError, match="'sep=y'|did not converge"):
        CoxPH().fit(d, "time", "event", ["x", "sep"])


def test_missing_covariates_drop_patients_with_a_logged_warning(caplog):
    d = _cox_data()
    d.loc[d.index[:3], "x"] = np.nan
    with caplog.at_level(logging.WARNING):
        m = CoxPH().fit(d, "time", "event", ["x"])
    assert m.n_ == 77
    assert "3 of 80 patients dropped" in caplog.text and "x: 3" in caplog.text
    assert np.isfinite(m.summary_.to_numpy()).all()


def test_unknown_column_and_bad_term_are_one_line_errors():
    d = _cox_data()
    with pytest.raises(NpcaiError, match="column 'nope' not found"):
        CoxPH().fit(d, "time", "event", ["nope"])
    with pytest.raises(NpcaiError, match="is not a column or f\\(column\\)"):
        CoxPH().fit(d, "time", "event", ["x + 1"])


def test_prediction_with_an_unseen_level_is_refused():
    d = _cox_data()
    m = CoxPH().fit(d, "time", "event", ["x", "grp"])
    new = d.head(2).assign(grp="zzz")
    with pytest.raises(NpcaiError, match="not in the data the model was fitted on"):
        m.predict_survival(new, [12])


def test_stepwise_respects_marginality_of_interactions():
    d = _cox_data(200, seed=3)
    r = step_aic(d, "time", "event", upper=["x*grp", "age"], start=["x", "grp", "x:grp"])
    first = r.steps[r.steps.step == 1]
    assert "- x" not in set(first.move) and "- grp" not in set(first.move)
    r0 = step_aic(d, "time", "event", upper=["x*grp", "age"], start=[])
    assert "+ x:grp" not in set(r0.steps[r0.steps.step == 1].move)


def test_stepwise_lower_scope_is_never_dropped():
    d = _cox_data(200, seed=4)
    d["noise"] = np.random.default_rng(1).normal(size=len(d))
    r = step_aic(d, "time", "event", upper=["x", "noise", "age"], lower=["noise"])
    assert "noise" in r.final_terms
    assert not r.steps.move.eq("- noise").any()


def test_risk_threshold_is_fixed_on_training_patients_only():
    rg = RiskGroups("median").fit([1, 2, 3, 4, 5])
    assert rg.threshold_ == 3
    # a test cohort with a different distribution is cut at the training threshold
    assert rg.transform([10, 11, 12]).tolist() == ["high", "high", "high"]
    assert RiskGroups(0.5, higher_is_riskier=False).fit([0.2]).transform([0.4, 0.6]).tolist() == ["high", "low"]
    with pytest.raises(NpcaiError):
        RiskGroups("median").transform([1])


def test_subgroup_table_has_interaction_p_and_no_silent_nan():
    d = _cox_data(200, seed=5)
    tab = subgroup_hazard_ratios(d, "time", "event", "grp", ["age"])
    assert tab.iloc[0].factor == "All patients"
    rows = tab[tab.factor != "All patients"]
    assert rows.p_interaction.notna().all() and rows.hr.notna().all()
    assert tab.attrs["comparison"] == "b vs a"


def test_matching_balances_and_refuses_bad_requests():
    rng = np.random.default_rng(2)
    n = 300
    x = rng.normal(size=n)
    treat = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x - 1.2)))).astype(int)
    d = pd.DataFrame({"treat": treat, "x": x, "z": rng.normal(size=n)}, index=[f"P{i}" for i in range(n)])
    r = match_nearest(d, "treat", ["x", "z"], caliper=0.2)
    assert abs(r.balance.loc["x", "smd_before"]) > 0.5
    assert abs(r.balance.loc["x", "smd_after"]) < 0.1
    assert len(set(r.pairs.control)) == len(r.pairs)            # without replacement
    assert set(r.matched) == set(r.pairs.treated) | set(r.pairs.control)
    with pytest.raises(NpcaiError, match="exactly two treatment groups"):
        match_nearest(d.assign(treat=rng.integers(0, 3, n)), "treat", ["x"])
    swapped = match_nearest(d, "treat", ["x"], treated_level=0)    # more treated than controls
    assert len(swapped.unmatched_treated) >= (d.treat == 0).sum() - (d.treat == 1).sum()


def test_exact_matching_keeps_pairs_within_strata():
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"t": rng.integers(0, 2, 200), "stage": rng.integers(1, 4, 200), "age": rng.normal(50, 8, 200)})
    r = match_nearest(d, "t", ["age", "stage"], exact=["stage"], distance="mahalanobis")
    assert (d.loc[r.pairs.treated, "stage"].to_numpy() == d.loc[r.pairs.control, "stage"].to_numpy()).all()
    assert r.balance.loc["stage", "smd_after"] == 0


def _phantom_clinical(n: int) -> pd.DataFrame:
    """The clinical table of ``npcai phantom --patients n`` (seed 0) as ingest reads it."""
    from npcai.cohort.clinical_schema import validate_clinical
    from npcai.cohort.phantom.clinical import CLINICAL_COLUMNS, simulate_patients

    d = validate_clinical(simulate_patients(n, seed=0)[CLINICAL_COLUMNS])
    return d.set_index(pd.Index([f"P{i:04d}" for i in range(n)])).drop(columns="hospital_id")


@pytest.mark.parametrize("n", [120, 400])
def test_default_recipe_balances_the_phantom_and_every_pair_respects_every_caliper(n):
    d = _phantom_clinical(n)
    covs = ["age", "t_stage", "n_stage", "ebv_dna"]
    r = match_nearest(d, "treatment", covs)
    assert r.balanced and r.max_abs_smd < 0.1
    assert (r.balance.loc[["t_stage", "n_stage"], "smd_before"].abs() > 0.45).all()
    t, c = d.loc[r.pairs.treated], d.loc[r.pairs.control]
    for col in ("t_stage", "n_stage"):
        assert (t[col].to_numpy() == c[col].to_numpy()).all()
    assert (np.abs(t.age.to_numpy() - c.age.to_numpy()) <= 0.25 * d.age.std() + 1e-9).all()
    assert (np.abs(r.pairs.score_treated - r.pairs.score_control) <= r.caliper + 1e-12).all()
    assert r.caliper == pytest.approx(0.2 * r.distance.std())
    assert r.counts["all"].sum() == n and r.counts.matched.tolist() == [len(r.pairs)] * 2
    # MatchIt's default on the same patients keeps everyone and leaves the stage imbalance
    plain = match_nearest(d, "treatment", covs, distance="propensity", caliper=None, ps_scale="probability",
                          exact=(), covariate_calipers=None)
    assert not plain.balanced and plain.counts.loc["treated", "unmatched"] == 0


def test_run_match_defaults_are_the_library_recipe():
    import inspect

    from npcai.survival.commands import run_match

    lib = inspect.signature(match_nearest).parameters
    cmd = inspect.signature(run_match).parameters
    for name in ("distance", "caliper", "ps_scale", "exact", "covariate_calipers"):
        assert cmd[name].default == lib[name].default, name


def test_covariate_calipers_refuse_binary_factor_and_unknown_terms():
    rng = np.random.default_rng(4)
    d = pd.DataFrame({"t": rng.integers(0, 2, 100), "sex": rng.choice(["F", "M"], 100),
                      "age": rng.normal(50, 8, 100), "flag": rng.integers(0, 2, 100)})
    with pytest.raises(NpcaiError, match="'flag' is binary"):
        match_nearest(d, "t", ["age", "flag"], covariate_calipers={"flag": 0.2})
    with pytest.raises(NpcaiError, match="'sex' is binary or a factor"):
        match_nearest(d, "t", ["age", "sex"], covariate_calipers={"sex": 0.2})
    with pytest.raises(NpcaiError, match="caliper on 'bmi', which is not a covariate"):
        match_nearest(d, "t", ["age"], covariate_calipers={"bmi": 0.2})
    with pytest.raises(NpcaiError, match="must be positive"):
        match_nearest(d, "t", ["age"], covariate_calipers={"age": 0})
    r = match_nearest(d, "t", ["age", "sex", "flag"])             # a number skips binary and factor terms
    assert r.covariate_calipers == {"age": 0.25}


@pytest.mark.parametrize("term", ["__import__('os').system('x')", "exp(age)", "log(age, 2)", "log(age + 1)",
                                  "age.__class__", "C(log(age))", "lambda: 1", "log(__builtins__)"])
def test_terms_are_data_never_code(term):
    from npcai.survival._data import parse_variable

    with pytest.raises(NpcaiError, match="is not a column or f\\(column\\)"):
        parse_variable(term)


def test_log_terms_in_cox_stepwise_and_their_domain():
    d = _cox_data(120)
    d["ebv"] = np.round(np.exp(d.x * 2 + 5))
    d.loc[d.index[:3], "ebv"] = 0
    with pytest.raises(NpcaiError, match=r"term log\(ebv\): 3 value\(s\) of 'ebv' are not > 0 \(at P0000, P0001, P0002\)"):
        CoxPH().fit(d, "time", "event", ["log(ebv)"])
    with pytest.raises(NpcaiError, match="'grp' is not numeric"):
        CoxPH().fit(d, "time", "event", ["log(grp)"])
    a = CoxPH().fit(d, "time", "event", ["log1p(ebv)"])
    d2 = d.assign(lebv=np.log1p(d.ebv))
    b = CoxPH().fit(d2, "time", "event", ["lebv"])
    assert a.coef_.iloc[0] == pytest.approx(b.coef_.iloc[0], abs=1e-10)
    c = CoxPH().fit(d.assign(e2=d.ebv + 1), "time", "event", ["log10(e2)"])
    assert c.coef_.iloc[0] == pytest.approx(a.coef_.iloc[0] * np.log(10), abs=1e-8)
    r = step_aic(d, "time", "event", upper=["age", "log1p(ebv)", "grp"], start=["log1p(ebv)"])
    assert "log1p(ebv)" in r.final_terms
    assert r.steps.move.str.contains("log1p", regex=False).any()


def test_r_pretty_matches_r():
    # values printed by R 4.2: pretty(c(lo, hi), 10)
    assert r_pretty(21, 78) == list(np.arange(20, 81, 5).astype(float))
    assert r_pretty(-2.7, 2.9) == [round(v, 1) for v in np.arange(-3, 3.01, 0.5)]
    assert r_pretty(-2.34, 2.91) == [round(v, 1) for v in np.arange(-2.5, 3.01, 0.5)]


def test_nomogram_refuses_what_it_cannot_draw():
    d = _cox_data(120)
    d["y"] = d.x ** 2
    m = CoxPH().fit(d, "time", "event", ["x*y"])
    with pytest.raises(NpcaiError, match="factor x numeric"):
        Nomogram().fit(m, d)
    nom = Nomogram().fit(CoxPH().fit(d, "time", "event", ["x", "grp"]), d)
    with pytest.raises(NpcaiError, match="no value for 'grp'"):
        nom.points({"x": 0.1})
    with pytest.raises(NpcaiError, match="not one of"):
        nom.points({"x": 0.1, "grp": "c"})
    with pytest.raises(NpcaiError, match="format"):
        Nomogram.from_dict({"format": "other"})


def test_nomogram_json_keeps_numeric_factor_levels_usable():
    d = _cox_data(150, seed=6)
    d["stage"] = np.random.default_rng(0).integers(1, 4, len(d))
    nom = Nomogram((12,)).fit(CoxPH().fit(d, "time", "event", ["x", "C(stage)"]), d)
    import json

    again = Nomogram.from_dict(json.loads(json.dumps(nom.to_dict())))
    stage_axis = next(a for a in again.axes_ if a.variable == "stage")
    assert stage_axis.values == [1, 2, 3]
    assert again.points({"x": 0.3, "stage": 2.0}).total == pytest.approx(nom.points({"x": 0.3, "stage": 2}).total)


def test_subgroup_cuts_are_given_or_median_and_checked():
    d = _cox_data(200)
    tab = subgroup_hazard_ratios(d, "time", "event", "grp", ["age", "x"], cuts={"age": 45})
    age = tab[tab.factor == "age (cut 45)"].set_index("subgroup").n
    assert age.to_dict() == {"<= 45": int((d.age <= 45).sum()), "> 45": int((d.age > 45).sum())}
    assert (tab.factor == "x (median cut)").sum() == 2
    with pytest.raises(NpcaiError, match="a cut is given for 'bmi'"):
        subgroup_hazard_ratios(d, "time", "event", "grp", ["age"], cuts={"bmi": 25})
    with pytest.raises(NpcaiError, match="'grp2' is not numeric"):
        subgroup_hazard_ratios(d.assign(grp2=d.grp), "time", "event", "grp", ["grp2"], cuts={"grp2": 1})
