"""Behaviour of the pure metric functions: bad input, edge cases, invariants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from npcai.errors import NpcaiError
from npcai.stats import (auc_ci, binary_metrics, bootstrap_ci, brier_score,
                         calibration_intercept_slope, confusion_matrix, delong_test, harrell_c,
                         roc_auc, table1, tnm_baseline, wilson_ci, youden_threshold)


def test_single_class_auc_is_a_clear_error_not_nan():
    with pytest.raises(NpcaiError, match=r"AUC is undefined: all 5 patients .* have label 1"):
        auc_ci([1, 1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(NpcaiError, match="label 0"):
        roc_auc([0, 0, 0], [0.1, 0.2, 0.3])


def test_nan_and_out_of_range_probabilities_are_named():
    with pytest.raises(NpcaiError, match=r"2 of 4 score\(s\) are NaN or infinite \(at P2, P4\)"):
        auc_ci([0, 1, 0, 1], [0.1, np.nan, 0.3, np.inf], ids=["P1", "P2", "P3", "P4"])
    with pytest.raises(NpcaiError, match=r"1 of 3 probabilities are not in \[0, 1\] \(at #2\)"):
        brier_score([0, 1, 1], [0.1, 0.9, 1.7])
    with pytest.raises(NpcaiError, match="not 0 or 1"):
        auc_ci([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(NpcaiError, match="different lengths"):
        auc_ci([0, 1, 1], [0.1, 0.2])


def test_auc_is_not_flipped_and_is_rank_invariant():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    s = rng.normal(size=40) + y
    a = roc_auc(y, s)
    assert roc_auc(y, -s) == pytest.approx(1 - a)
    assert roc_auc(y, np.exp(s)) == pytest.approx(a)
    from sklearn.metrics import roc_auc_score
    assert a == pytest.approx(roc_auc_score(y, s))


def test_delong_test_of_a_model_with_itself_is_p_one():
    y = [0, 1, 0, 1, 1, 0]
    s = [0.2, 0.7, 0.4, 0.5, 0.9, 0.1]
    t = delong_test(y, s, s)
    assert t.statistic == 0.0 and t.p_value == 1.0


def test_delong_needs_two_of_each_class():
    with pytest.raises(NpcaiError, match="at least 2 patients of each label"):
        auc_ci([0, 0, 1], [0.1, 0.2, 0.3])


def test_youden_threshold_applies_as_strictly_greater():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.8, 0.9])
    cut = youden_threshold(y, s)
    assert cut.threshold == pytest.approx(0.65)
    # tied optima (0.3 and 0.65 without the last patient): the lowest threshold is returned
    assert youden_threshold(y[:-1], s[:-1]).threshold == pytest.approx(0.3)
    m = binary_metrics(y, s, cut.threshold)
    assert m.sensitivity.value == pytest.approx(cut.sensitivity)
    assert m.specificity.value == pytest.approx(cut.specificity)


def test_binary_metrics_counts_and_wilson():
    m = binary_metrics([1, 1, 1, 0, 0, 0, 0], [0.9, 0.8, 0.2, 0.7, 0.1, 0.2, 0.3], threshold=0.5)
    assert m.confusion.to_dict() == {"tp": 2, "fp": 1, "tn": 3, "fn": 1}
    assert (m.ppv.k, m.ppv.n, m.npv.k, m.npv.n) == (2, 3, 3, 4)
    assert m.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    lo, hi = wilson_ci(0, 12)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0 < hi < 0.3
    assert confusion_matrix([1, 1], [1, 1]).tp == 2     # one class is fine for counting


def test_undefined_ppv_is_none_with_reason_never_nan():
    m = binary_metrics([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], threshold=0.9)
    assert m.ppv.value is None and m.ppv.n == 0 and "no patient predicted 1" in m.ppv.undefined
    assert m.npv.value == 0.5 and m.sensitivity.value == 0.0
    assert "undefined" in str(m.ppv)
    from npcai.stats import proportion
    with pytest.raises(NpcaiError, match="denominator is 0"):
        proportion(0, 0, what="PPV")


def test_bootstrap_is_seeded_patient_level_and_stratified():
    rng = np.random.default_rng(1)
    y = np.repeat(rng.integers(0, 2, 30), 3)               # 30 patients x 3 slices
    s = y + np.repeat(rng.normal(scale=1.2, size=30), 3) + rng.normal(scale=0.2, size=90)  # patient effect
    g = np.repeat(np.arange(30), 3)
    a = bootstrap_ci(roc_auc, y, s, groups=g, n_boot=300, seed=3)
    b = bootstrap_ci(roc_auc, y, s, groups=g, n_boot=300, seed=3)
    assert a == b
    assert a.low < a.estimate < a.high and a.n_failed == 0
    # resampling patients gives a wider interval than pretending slices are independent
    naive = bootstrap_ci(roc_auc, y, s, n_boot=300, seed=3)
    assert (a.high - a.low) > (naive.high - naive.low)


def test_harrell_c_handles_ties_and_needs_events():
    # times tied with one event and one censored: comparable (the event came first)
    r = harrell_c([5, 5, 9], [1, 0, 1], [2.0, 1.0, 0.0])
    assert r.comparable == 2 and r.c_index == 1.0     # (censored at 5, event at 9) is not
    with pytest.raises(NpcaiError, match="none of the 3 patients had an event"):
        harrell_c([1, 2, 3], [0, 0, 0], [1, 2, 3])
    from lifelines.utils import concordance_index
    rng = np.random.default_rng(2)
    t, e, x = rng.exponential(size=50).round(1), rng.integers(0, 2, 50), rng.normal(size=50).round(1)
    assert harrell_c(t, e, x).c_index == pytest.approx(concordance_index(t, -x, e))


def test_calibration_recovers_known_slope():
    rng = np.random.default_rng(4)
    lp = rng.normal(scale=1.5, size=4000)
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-0.5 * lp))).astype(int)   # true slope 0.5
    r = calibration_intercept_slope(y, 1 / (1 + np.exp(-lp)))
    assert r.slope == pytest.approx(0.5, abs=0.08)
    assert abs(r.intercept) < 0.1
    with pytest.raises(NpcaiError, match="does not converge"):
        calibration_intercept_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])


def test_table1_tests_match_scipy_and_choose_fisher():
    clin = pd.DataFrame({"age": [40, 50, 60, 45, 55, 65, 70, 35],
                         "sex": ["M", "M", "M", "F", "M", "F", "F", "M"],
                         "t_stage": [1, 2, 3, 4, 2, 3, np.nan, 1]})
    by = pd.Series(["train"] * 4 + ["test"] * 4)
    t = table1(clin, by, continuous="mean")         # the seeds' layout (default: median [IQR])
    assert list(t.columns) == ["variable", "level", "train", "test", "p_value", "test_used"]
    age = t[t.variable == "age"].iloc[0]
    assert age["p_value"] == pytest.approx(st.ttest_ind([40, 50, 60, 45], [55, 65, 70, 35]).pvalue)
    assert age["train"] == "48.75 ± 8.54"
    sex = t[t.variable == "sex"]
    assert sex.iloc[0]["test_used"] == "Fisher"
    assert sex.iloc[0]["p_value"] == pytest.approx(st.fisher_exact([[1, 2], [3, 2]]).pvalue)
    assert list(t[t.variable == "t_stage"]["level"]) == ["T1", "T2", "T3", "T4", "missing"]
    with pytest.raises(NpcaiError, match="column 'ebv' is not in the clinical table"):
        table1(clin, by, variables=["ebv"])


def test_tnm_baseline_auc_and_paired_delong():
    idx = pd.Index([f"P{i}" for i in range(12)], name="patient_id")
    clin = pd.DataFrame({"t_stage": [1, 2, 2, 3, 4, 1, 3, 4, 2, 3, 1, 4],
                         "stage": [2, 3, 3, 3, 4, 2, 4, 4, 3, 4, 2, 4]}, index=idx)
    labels = pd.Series([0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1], index=idx)
    model = pd.Series(np.linspace(0.1, 0.9, 12), index=idx)
    res = tnm_baseline(clin, labels, models={"m": model})
    t_row = res.table.set_index("score").loc["T stage"]
    assert t_row["auc"] == pytest.approx(roc_auc(labels, clin["t_stage"]))
    assert set(res.delong["score"]) == {"T stage", "Overall stage"}
    with pytest.raises(NpcaiError, match="none of the columns t_stage, n_stage, stage"):
        tnm_baseline(clin.rename(columns={"t_stage": "a", "stage": "b"}), labels)
