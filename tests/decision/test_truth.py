"""Scoring a recommendation against counterfactual truth, on hand-made patients."""
from __future__ import annotations

import pandas as pd
import pytest

from npcai.decision.truth import agreement_with_truth, phantom_counterfactuals, policy_value
from npcai.errors import NpcaiError

IDX = ["p1", "p2", "p3", "p4", "p5"]


def s(values, idx=IDX):
    return pd.Series(values, index=idx[:len(values)])


def test_agreement_counts_undecided_apart_and_gives_wilson_ci():
    rec = s(["CCRT", "IC+CCRT", "IBT", "CCRT", None])
    best = s(["CCRT", "CCRT", "IC+CCRT", "CCRT", "IC+CCRT"])
    a = agreement_with_truth(rec, best)
    assert (a.n, a.agree, a.n_undecided, a.n_total) == (3, 2, 2, 5)
    assert a.rate == pytest.approx(2 / 3)
    # Wilson 95% for 2/3 (R: prop.test(2, 3, correct = FALSE)$conf.int)
    assert (a.ci_low, a.ci_high) == pytest.approx((0.2076596, 0.9385081), abs=1e-6)
    assert a.by_best == {"CCRT": (2, 3), "IC+CCRT": (0, 0)}
    assert "2 undecided (IBT) not scored" in str(a)


def test_agreement_accepts_a_treatment_no_patient_is_best_on():
    a = agreement_with_truth(s(["IC+CCRT", "CCRT"]), s(["CCRT", "CCRT"]))
    assert (a.n, a.agree) == (2, 1)


def test_agreement_aligns_on_patient_ids_not_order():
    rec = pd.Series(["CCRT", "IC+CCRT"], index=["p2", "p1"])
    best = pd.Series(["IC+CCRT", "CCRT", "CCRT"], index=["p1", "p2", "p3"])
    assert agreement_with_truth(rec, best).agree == 2


def test_agreement_all_undecided_has_no_rate():
    a = agreement_with_truth(s(["IBT", "IBT"]), s(["CCRT", "CCRT"]))
    assert a.n == 0 and a.rate is None and a.ci_low is None
    assert "no decided recommendation" in str(a)


def test_agreement_refuses_unknown_recommendation_and_missing_truth():
    with pytest.raises(NpcaiError, match="'RT' for patient p1"):
        agreement_with_truth(s(["RT"]), s(["CCRT"]))
    with pytest.raises(NpcaiError, match="best treatment 'RT' for patient p1"):
        agreement_with_truth(s(["CCRT"]), s(["RT"]))
    with pytest.raises(NpcaiError, match="best treatment has no value for 1 patient"):
        agreement_with_truth(s(["CCRT", "CCRT"]), s(["CCRT"]))


def outcomes():
    return {"CCRT": s([0.9, 0.2, 0.5, 0.7]), "IC+CCRT": s([0.8, 0.6, 0.5, 0.9])}


def test_policy_value_hand_computed():
    rec = s(["CCRT", "IC+CCRT", "CCRT", "CCRT"])
    phys = s(["IC+CCRT", "CCRT", "CCRT", "IC+CCRT"])
    pv = policy_value(rec, outcomes(), phys, n_boot=500)
    assert pv.recommended.mean == pytest.approx((0.9 + 0.6 + 0.5 + 0.7) / 4)
    assert pv.physician.mean == pytest.approx((0.8 + 0.2 + 0.5 + 0.9) / 4)
    assert pv.oracle.mean == pytest.approx((0.9 + 0.6 + 0.5 + 0.9) / 4)
    assert pv.regret.mean == pytest.approx(0.2 / 4)
    assert pv.physician_regret.mean == pytest.approx(0.5 / 4)
    assert pv.gain_over_physician.mean == pytest.approx(0.3 / 4)
    for est in (pv.recommended, pv.physician, pv.oracle, pv.regret):
        assert est.low <= est.mean <= est.high
    assert pv.regret.low >= 0                      # a regret is never negative
    again = policy_value(rec, outcomes(), phys, n_boot=500)
    assert again == pv                             # same seed, same intervals


def test_policy_value_undecided_defers_to_physician_or_is_excluded():
    rec = s(["IBT", "IC+CCRT", "CCRT", "CCRT"])
    phys = s(["IC+CCRT", "CCRT", "CCRT", "IC+CCRT"])
    deferred = policy_value(rec, outcomes(), phys, n_boot=100)
    assert deferred.n == 4 and deferred.n_undecided == 1
    assert deferred.recommended.mean == pytest.approx((0.8 + 0.6 + 0.5 + 0.7) / 4)
    excluded = policy_value(rec, outcomes(), phys, undecided="exclude", n_boot=100)
    assert excluded.n == 3 and excluded.undecided == "exclude"
    assert excluded.recommended.mean == pytest.approx((0.6 + 0.5 + 0.7) / 3)


def test_policy_value_lower_is_better_takes_the_minimum():
    risk = {"CCRT": s([0.1, 0.8]), "IC+CCRT": s([0.3, 0.4])}
    pv = policy_value(s(["IC+CCRT", "CCRT"]), risk, s(["CCRT", "CCRT"]), higher_is_better=False, n_boot=100)
    assert pv.oracle.mean == pytest.approx(0.25)
    assert pv.recommended.mean == pytest.approx(0.55)
    assert pv.regret.mean == pytest.approx(0.30)           # oriented: worse is positive
    assert pv.gain_over_physician.mean == pytest.approx(-0.10)


def test_policy_value_refuses_bad_physician_choice_and_missing_outcomes():
    with pytest.raises(NpcaiError, match="physician's choice 'RT' for patient p1"):
        policy_value(s(["CCRT"]), {"CCRT": s([0.5]), "IC+CCRT": s([0.4])}, s(["RT"]))
    with pytest.raises(NpcaiError, match="true outcome under IC\\+CCRT has no value"):
        policy_value(s(["CCRT", "CCRT"]), {"CCRT": s([0.5, 0.1]), "IC+CCRT": s([0.4])}, s(["CCRT", "CCRT"]))
    with pytest.raises(NpcaiError, match="every recommendation is undecided"):
        policy_value(s(["IBT"]), {"CCRT": s([0.5])}, s(["CCRT"]), undecided="exclude")


def test_phantom_counterfactuals_orient_residual_as_higher_is_better():
    truth = pd.DataFrame({"p_residual_ccrt": [0.2, 0.7], "p_residual_ic_ccrt": [0.3, 0.4],
                          "best_treatment_residual": ["CCRT", "IC+CCRT"],
                          "dfs5_ccrt": [0.8, 0.5], "dfs5_ic_ccrt": [0.7, 0.6],
                          "best_treatment": ["CCRT", "IC+CCRT"]}, index=["p1", "p2"])
    cf = phantom_counterfactuals(truth, "residual")
    assert cf.outcome_by_treatment["CCRT"].tolist() == pytest.approx([0.8, 0.3])
    assert cf.best.tolist() == ["CCRT", "IC+CCRT"]
    assert phantom_counterfactuals(truth, "dfs5").outcome_by_treatment["IC+CCRT"].tolist() == [0.7, 0.6]
    with pytest.raises(NpcaiError, match="no column 'dfs5_ccrt'"):
        phantom_counterfactuals(truth.drop(columns="dfs5_ccrt"), "dfs5")
