"""Study 004's DFS-difference rule on a hand-made nomogram, the CPTDN fit and its bad inputs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from npcai.decision.recommend_dfs import (check_threshold, dfs_under_each_treatment, preferred_group_survival,
                                          recommend_by_difference, recommend_patient)
from npcai.errors import NpcaiError

# age: points = -8 + 0.4 age; Predictive-score axes: 50 + 20 x (CCRT), 30 + 2.5 x (IC+CCRT);
# lp = -3 + total / 20; S(60) = exp(-0.30 exp(lp))
HAND_NOMOGRAM = {
    "format": "npcai-nomogram/1", "time_unit": "months", "scale": 20.0, "lp_offset": -3.0, "center": 1.0,
    "times": [36, 60], "baseline_cumhaz": [0.15, 0.30], "lp_range": [-2, 2],
    "axes": [
        {"label": "age", "variable": "age", "kind": "numeric", "condition": None, "values": [20, 80],
         "points": [0, 24], "points_at_zero": -8.0, "points_per_unit": 0.4},
        {"label": "predictive_score (treatment=CCRT)", "variable": "predictive_score", "kind": "numeric",
         "condition": {"treatment": "CCRT"}, "values": [-1, 1], "points": [30, 70], "points_at_zero": 50.0,
         "points_per_unit": 20.0},
        {"label": "predictive_score (treatment=IC+CCRT)", "variable": "predictive_score", "kind": "numeric",
         "condition": {"treatment": "IC+CCRT"}, "values": [-1, 1], "points": [27.5, 32.5],
         "points_at_zero": 30.0, "points_per_unit": 2.5}]}


def _s60(total: float) -> float:
    return math.exp(-0.30 * math.exp(-3.0 + total / 20.0))


@pytest.fixture
def nomogram():
    from npcai.survival.nomogram import Nomogram

    return Nomogram.from_dict(HAND_NOMOGRAM)


@pytest.fixture
def patients():
    # differences by hand: P1 +7.6 pp, P2 -1.0 pp, P3 +2.8 pp
    return pd.DataFrame({"age": [40, 40, 40], "predictive_score": [-0.4, -1.3, -0.8]}, index=["P1", "P2", "P3"])


def test_dfs_both_treatments_equal_the_hand_calculation(nomogram, patients):
    d = dfs_under_each_treatment(nomogram, patients, horizon=60)
    for pid, x in patients["predictive_score"].items():
        ccrt = _s60(-8 + 0.4 * 40 + 50 + 20 * x)
        ic = _s60(-8 + 0.4 * 40 + 30 + 2.5 * x)
        assert d.loc[pid, "dfs_ccrt"] == pytest.approx(ccrt, abs=1e-12)
        assert d.loc[pid, "dfs_ic_ccrt"] == pytest.approx(ic, abs=1e-12)
        assert d.loc[pid, "difference"] == pytest.approx(100 * (ic - ccrt), abs=1e-9)
    assert d.loc["P1", "difference"] == pytest.approx(7.58, abs=0.01)


@pytest.mark.parametrize("threshold, expected", [
    (0, ["IC+CCRT", "CCRT", "IC+CCRT"]),
    (2, ["IC+CCRT", "CCRT", "IC+CCRT"]),
    (5, ["IC+CCRT", "CCRT", "CCRT"]),
    (10, ["CCRT", "CCRT", "CCRT"]),
])
def test_rule_at_each_threshold(nomogram, patients, threshold, expected):
    d = dfs_under_each_treatment(nomogram, patients, horizon=60)
    assert recommend_by_difference(d, threshold).tolist() == expected


def test_difference_equal_to_threshold_recommends_ccrt():
    d = pd.DataFrame({"difference": [2.0, 2.0000001, 0.0]}, index=["a", "b", "c"])
    assert recommend_by_difference(d, 2).tolist() == ["CCRT", "IC+CCRT", "CCRT"]
    assert recommend_by_difference(d, 0).tolist() == ["IC+CCRT", "IC+CCRT", "CCRT"]


def test_one_patient_for_the_web_tool(nomogram):
    r = recommend_patient(nomogram, {"age": 40, "predictive_score": -0.4}, threshold=5)
    assert r["recommended"] == "IC+CCRT" and r["group"] == "ICT-preferred"
    assert r["dfs_ic_ccrt"] == pytest.approx(_s60(37.0))


@pytest.mark.parametrize("bad", [-1, 100.5, 250, "abc", float("nan")])
def test_threshold_outside_0_100_is_one_clear_error(bad):
    with pytest.raises(NpcaiError, match="between 0 and 100"):
        check_threshold(bad)
    with pytest.raises(NpcaiError, match="between 0 and 100"):
        recommend_by_difference(pd.DataFrame({"difference": [1.0]}), bad)


def test_nomogram_without_horizon_or_treatment_is_refused(nomogram, patients):
    with pytest.raises(NpcaiError, match="not at 48"):
        dfs_under_each_treatment(nomogram, patients, horizon=48)


def _synthetic(n=240, seed=3):
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({"age": rng.normal(50, 10, n), "prognostic_score": rng.normal(size=n),
                      "predictive_score": rng.normal(size=n), "noise": rng.normal(size=n),
                      "treatment": np.where(rng.random(n) < 0.5, "CCRT", "IC+CCRT")},
                     index=[f"P{i:04d}" for i in range(n)])
    ic = (d["treatment"] == "IC+CCRT").astype(float)
    lp = 0.8 * d["prognostic_score"] + 0.03 * (d["age"] - 50) + (ic - 0.5) * 1.2 * d["predictive_score"]
    t = rng.exponential(50 * np.exp(-lp))
    d["event"] = (t < 80).astype(int)
    d["time"] = np.minimum(t, 80.0) + 0.01
    return d


def test_cptdn_keeps_the_treatment_terms_and_matches_its_nomogram():
    from npcai.decision.cptdn import TREATMENT_TERMS, cindex_table, fit_comparison_models, fit_cptdn
    from npcai.survival.nomogram import Nomogram

    d = _synthetic()
    m = fit_cptdn(d, "time", "event", clinical=["age", "noise"])
    assert set(TREATMENT_TERMS) <= set(m.terms) and "prognostic_score" in m.terms
    assert m.model.term_test("treatment:predictive_score").p_value < 0.05      # the planted interaction
    nom = Nomogram([36, 60]).fit(m.model, d)
    by_cox = dfs_under_each_treatment(m.model, d.head(20), horizon=60)
    by_nom = dfs_under_each_treatment(nom, d.head(20).drop(columns=["treatment"]), horizon=60)
    np.testing.assert_allclose(by_cox.to_numpy(), by_nom.to_numpy(), atol=1e-9)
    # higher predictive score -> IC+CCRT worse than CCRT (log-hazard + (T - 1/2) 1.2 f)
    assert by_cox["difference"].corr(d.head(20)["predictive_score"], method="spearman") < -0.7
    models = {"CPTDN": m, **fit_comparison_models(d, "time", "event", clinical=["age", "noise"])}
    table = cindex_table(models, {"Training": d}, "time", "event")
    assert len(table) == 5 * 3
    cx = table.set_index(["group", "model"])["c_index"]
    assert cx[("All", "CPTDN")] > cx[("All", "Model_clin_all")]


def test_cptdn_bad_treatments():
    from npcai.decision.cptdn import fit_cptdn

    d = _synthetic(60)
    with pytest.raises(NpcaiError, match="both"):
        fit_cptdn(d.assign(treatment="CCRT"), "time", "event", clinical=["age"])
    with pytest.raises(NpcaiError, match="RT"):
        fit_cptdn(d.assign(treatment=np.where(d.index < "P0010", "RT", d["treatment"])), "time", "event",
                  clinical=["age"])
    with pytest.raises(NpcaiError, match="no treatment column"):
        fit_cptdn(d.drop(columns=["treatment"]), "time", "event", clinical=["age"])


def test_preferred_groups_hazard_ratios():
    d = _synthetic()
    rec = pd.Series(np.where(d["predictive_score"] < 0, "IC+CCRT", "CCRT"), index=d.index)
    pg = preferred_group_survival(d, rec, time="time", event="event", threshold=0)
    t = pg.table.set_index("group")
    assert t.loc["ICT-preferred", "hr"] < 1 < t.loc["CCRT-preferred", "hr"]
    assert t["n"].sum() == len(d)
