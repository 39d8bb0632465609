"""Seed 002's rule and judgement: the four situations, the twelve conditions, Table 3's arithmetic."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from npcai.decision.residual_rule import (IBT, SEED_SITUATIONS, compare_judgements, judge, judge_all,
                                          recommend, recommend_all, table3)
from npcai.errors import NpcaiError

REF = json.loads((Path(__file__).parent / "fixtures" / "r_reference.json").read_text())
RT, NRT = True, False

# seed 002, Table 3: (CCRT model, IC+CCRT model, physician's regimen, effect) -> cases, and the
# footnote's judgement (model, physician)
SEED_TABLE3 = [
    (1, RT, NRT, "IC+CCRT", NRT, 9, "right", "right"),
    (2, NRT, NRT, "IC+CCRT", NRT, 17, "right", "wrong"),
    (3, NRT, RT, "IC+CCRT", NRT, 2, "wrong", "right"),
    (4, RT, RT, "IC+CCRT", NRT, 4, "wrong", "right"),
    (5, RT, RT, "IC+CCRT", RT, 11, "undecidable", "undecidable"),
    (6, NRT, NRT, "CCRT", NRT, 21, "right", "right"),
    (7, NRT, RT, "CCRT", NRT, 2, "right", "right"),
    (8, RT, RT, "CCRT", NRT, 1, "wrong", "right"),
    (9, NRT, NRT, "CCRT", RT, 4, "wrong", "undecidable"),
    (10, RT, NRT, "CCRT", RT, 9, "right", "wrong"),
    (11, RT, RT, "CCRT", RT, 5, "undecidable", "undecidable"),
]
# the combinations the seed's test cohort lacked, judged by the seed's Methods text
NOT_IN_TABLE3 = [
    # recommendation CCRT, physician IC+CCRT with residual tumour: "the model is correct, the physician wrong"
    (NRT, RT, "IC+CCRT", RT, "right", "wrong"),
    # ... unless the IC+CCRT prediction (non-residual) was wrong: "only when the prediction results of the
    # model are consistent with the actual results can the model regimen be judged as correct"
    (NRT, NRT, "IC+CCRT", RT, "wrong", "undecidable"),
    # recommendation IC+CCRT, physician IC+CCRT with residual tumour: "the model prediction error will lead to
    # a recommendation error and it is impossible to judge whether the physician's decision is correct"
    (RT, NRT, "IC+CCRT", RT, "wrong", "undecidable"),
    # recommendation IC+CCRT, physician CCRT with non-residual tumour: "the physician's decision is judged to
    # be accurate, and the model recommendation is wrong"
    (RT, NRT, "CCRT", NRT, "wrong", "right"),
    # recommendation CCRT, physician CCRT with residual tumour (IC+CCRT predicted residual): model wrong,
    # physician undecidable as in situation 9
    (NRT, RT, "CCRT", RT, "wrong", "undecidable"),
]


def test_the_four_situations_of_the_rule():
    assert recommend(residual_ccrt=NRT, residual_ic_ccrt=NRT) == "CCRT"       # (I)
    assert recommend(residual_ccrt=NRT, residual_ic_ccrt=RT) == "CCRT"        # (II)
    assert recommend(residual_ccrt=RT, residual_ic_ccrt=NRT) == "IC+CCRT"     # (III)
    assert recommend(residual_ccrt=RT, residual_ic_ccrt=RT) == IBT            # (IV)
    got = recommend_all(pd.Series([NRT, RT, RT], index=["a", "b", "c"]), pd.Series([RT, NRT, RT], index=["a", "b", "c"]))
    assert got.tolist() == ["CCRT", "IC+CCRT", "IBT"]


@pytest.mark.parametrize("situation,a,b,received,residual,cases,model,physician", SEED_TABLE3)
def test_each_seed_situation_is_judged_as_the_seed_says(situation, a, b, received, residual, cases, model,
                                                        physician):
    j = judge(a, b, received, residual)
    assert (j.model, j.physician, j.situation) == (model, physician, situation)


@pytest.mark.parametrize("a,b,received,residual,model,physician", NOT_IN_TABLE3)
def test_combinations_absent_from_table3_follow_the_seeds_text(a, b, received, residual, model, physician):
    j = judge(a, b, received, residual)
    assert (j.model, j.physician, j.situation) == (model, physician, None)


def test_all_twelve_recommendation_by_physician_conditions_are_covered():
    conditions = {(judge(a, b, t, y).recommendation, t, y) for _, a, b, t, y, *_ in SEED_TABLE3} | \
                 {(judge(a, b, t, y).recommendation, t, y) for a, b, t, y, *_ in NOT_IN_TABLE3}
    assert len(conditions) == 12            # 3 recommendations x 4 physician's (regimen, effect)
    assert len(SEED_SITUATIONS) == 11


def seed_patients() -> pd.DataFrame:
    rows = [{"residual_ccrt_pred": a, "residual_ic_ccrt_pred": b, "treatment": t, "residual_tumour": int(y)}
            for _, a, b, t, y, n, *_ in SEED_TABLE3 for _ in range(n)]
    return pd.DataFrame(rows, index=[f"P{i:03d}" for i in range(len(rows))])


def test_seed_arithmetic_and_p_values_match_r():
    judged = judge_all(seed_patients())
    assert len(judged) == 85
    c = compare_judgements(judged)
    assert (c.model.right, c.model.wrong, c.model.undecidable) == (58, 11, 16)
    assert (c.physician.right, c.physician.wrong, c.physician.undecidable) == (39, 26, 20)
    assert round(100 * c.model.rate, 2) == 84.06
    assert round(100 * c.physician.rate, 2) == 60.00
    ref = REF["seed002"]
    assert c.p_pearson == pytest.approx(ref["p_pearson"], abs=1e-9)     # 0.0019: the seed's P = 0.002
    assert c.p_fisher == pytest.approx(ref["p_fisher"], abs=1e-9)       # 0.0021
    assert (c.model.ci_low, c.model.ci_high) == pytest.approx(ref["model_ci"], abs=1e-6)
    assert (c.physician.ci_low, c.physician.ci_high) == pytest.approx(ref["physician_ci"], abs=1e-6)
    p = c.paired
    assert (p.n, p.both_right, p.model_only, p.physician_only, p.both_wrong) == (65, 32, 26, 7, 0)
    assert p.p_exact == pytest.approx(ref["mcnemar_exact"], abs=1e-9)
    assert p.p_chi2 == pytest.approx(ref["mcnemar_chi2"], abs=1e-9)


def test_tests_match_r_on_a_small_table():
    rows = ([("right", "right")] * 3 + [("right", "wrong")] * 4 + [("wrong", "right")] * 1
            + [("wrong", "wrong")] * 2 + [("undecidable", "right")] * 2)
    judged = pd.DataFrame(rows, columns=["model_judgement", "physician_judgement"])
    c = compare_judgements(judged)
    ref = REF["small"]
    assert (c.model.right, c.model.wrong, c.model.undecidable) == (7, 3, 2)
    assert (c.physician.right, c.physician.wrong) == (6, 6)
    assert c.paired.n == 10
    assert c.paired.p_exact == pytest.approx(ref["mcnemar_exact"], abs=1e-9)
    assert c.paired.p_chi2 == pytest.approx(ref["mcnemar_chi2"], abs=1e-9)


def test_unpaired_p_matches_r_on_a_small_table():
    rows = ([("right", "right")] * 3 + [("right", "wrong")] * 4 + [("wrong", "right")] * 1
            + [("wrong", "wrong")] * 2)
    c = compare_judgements(pd.DataFrame(rows, columns=["model_judgement", "physician_judgement"]))
    assert c.p_pearson == pytest.approx(REF["small"]["p_pearson"], abs=1e-9)
    assert c.p_fisher == pytest.approx(REF["small"]["p_fisher"], abs=1e-9)


def test_nothing_decidable_gives_no_rate_and_no_p():
    judged = judge_all(pd.DataFrame({"residual_ccrt_pred": [RT], "residual_ic_ccrt_pred": [RT],
                                     "treatment": ["CCRT"], "residual_tumour": [1]}))
    c = compare_judgements(judged)
    assert c.model.rate is None and c.p_pearson is None and c.paired.p_exact is None
    assert "undefined" in str(c.model)


def test_table3_layout_in_the_seeds_order_with_new_combinations_last():
    extra = pd.DataFrame([{"residual_ccrt_pred": RT, "residual_ic_ccrt_pred": NRT, "treatment": "CCRT",
                           "residual_tumour": 0}])
    judged = judge_all(pd.concat([extra, seed_patients().iloc[::-1]], ignore_index=True))
    t = table3(judged)
    assert t["Situation"].tolist() == [str(i) for i in range(1, 12)] + ["new"]
    assert t["Cases"].tolist() == [9, 17, 2, 4, 11, 21, 2, 1, 4, 9, 5, 1]
    row2 = t.iloc[1]
    assert row2["Model recommendation (predicted effect)"] == "CCRT (non-residual tumour)"
    assert row2["Physician's decision (actual effect)"] == "IC+CCRT (non-residual tumour)"
    assert (row2["Model"], row2["Physician"]) == ("right", "wrong")
    assert t.iloc[4]["Model recommendation (predicted effect)"] == "IBT (residual tumour)"


def test_bad_regimen_is_refused():
    with pytest.raises(NpcaiError, match="'RT' is not CCRT or IC\\+CCRT"):
        judge(NRT, NRT, "RT", False)
