"""Report wording follows the statistics: "higher than" only with a significant test, CIs with
estimates, aAUC ± SD only over two or more backbones."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from npcai.report.wording import (Comparison, average_auc_text, backbone_comparison_sentence, comparison_sentence,
                                  estimate_text, format_p, is_significant)
from npcai.stats.auc import delong_test


def test_significant_difference_says_higher_and_names_the_test():
    c = Comparison("Expanded 20 px", "Tumour only", 0.812, 0.701, p_value=0.017, diff_low=0.020, diff_high=0.202, n=44)
    s = comparison_sentence(c)
    assert s == ("Expanded 20 px had a higher AUC than Tumour only (0.812 vs 0.701; paired DeLong test, 44 patients, "
                 "difference 0.111, 95% CI 0.020 to 0.202, p = 0.017).")
    flipped = Comparison("Tumour only", "Expanded 20 px", 0.701, 0.812, p_value=0.017, diff_low=-0.202,
                         diff_high=-0.020)
    assert comparison_sentence(flipped).startswith("Tumour only had a lower AUC than Expanded 20 px (0.701 vs 0.812;")


def test_no_significant_difference_never_says_higher():
    # the case: the expanded ROI "beats" the tumour-only ROI with p = 0.525
    c = Comparison("Expanded 20 px", "Tumour only", 0.800, 0.700, p_value=0.525, diff_low=-0.21, diff_high=0.41)
    s = comparison_sentence(c)
    assert s == ("No significant difference in AUC between Expanded 20 px (0.800) and Tumour only (0.700) "
                 "(paired DeLong test, difference 0.100, 95% CI -0.210 to 0.410, p = 0.525).")
    assert "higher" not in s and "beat" not in s


@pytest.mark.parametrize("p, low, high, expected", [
    (0.03, None, None, True),          # only p given
    (0.2, None, None, False),
    (None, 0.01, 0.2, True),           # only the CI given
    (None, -0.01, 0.2, False),
    (0.03, -0.01, 0.2, False),         # disagree: conservative
    (None, None, None, None),          # nothing tested
])
def test_significance_uses_ci_and_p(p, low, high, expected):
    assert is_significant(Comparison("a", "b", 0.8, 0.7, p_value=p, diff_low=low, diff_high=high)) is expected


def test_ci_alone_decides_and_is_printed():
    c = Comparison("Age", "Whole slice", 0.92, 0.60, diff_low=0.05, diff_high=0.59, test="paired bootstrap")
    s = comparison_sentence(c)
    assert s.startswith("Age had a higher AUC than Whole slice (0.920 vs 0.600; paired bootstrap, difference 0.320, "
                        "95% CI 0.050 to 0.590, p not available)")


def test_untested_pair_gives_numbers_only():
    s = comparison_sentence(Comparison("A", "B", 0.8, 0.7))
    assert s == "A had AUC 0.800 and B 0.700; the difference was not tested."
    s = comparison_sentence(Comparison("A", "B", float("nan"), 0.7, p_value=0.5))
    assert s == "A and B could not be compared: AUC not available vs 0.700."


def test_p_value_format():
    assert format_p(0.525) == "p = 0.525"
    assert format_p(0.0004) == "p < 0.001"
    assert format_p(0.0496) == "p = 0.0496"      # significant must not print as 0.050
    assert format_p(0.0504) == "p = 0.050"
    assert format_p(None) == format_p(float("nan")) == "p not available"


def test_estimate_always_with_ci():
    assert estimate_text(0.712, 0.601, 0.823) == "AUC 0.712 (95% CI 0.601–0.823)"
    assert estimate_text(0.64, 0.52, 0.77, metric="C-index") == "C-index 0.640 (95% CI 0.520–0.770)"
    assert estimate_text(0.712) == "AUC 0.712 (95% CI not available)"
    assert estimate_text(None) == "AUC not available"


def test_aauc_with_sd_only_over_two_or_more_backbones():
    assert average_auc_text([0.71]) == "AUC 0.710"                       # never "± 0.000"
    assert average_auc_text([0.71, float("nan")]) == "AUC 0.710"
    assert average_auc_text([]) == "AUC not available"
    text = average_auc_text([0.70, 0.74, 0.78])
    assert text == f"aAUC 0.740 ± {np.std([0.70, 0.74, 0.78], ddof=1):.3f} (SD over 3 backbones)"


def test_backbone_comparison_reports_each_backbone():
    per = {"resnet18": Comparison("E", "T", 0.78, 0.69, p_value=0.012, diff_low=0.02, diff_high=0.16),
           "efficientnet_b0": Comparison("E", "T", 0.74, 0.71, p_value=0.525, diff_low=-0.06, diff_high=0.12)}
    s = backbone_comparison_sentence("Expanded 20 px", "Tumour only", per)
    assert s == ("Expanded 20 px (aAUC 0.760 ± 0.028 (SD over 2 backbones)) vs Tumour only "
                 "(aAUC 0.700 ± 0.014 (SD over 2 backbones)), paired DeLong test per backbone: "
                 "higher on 1 of 2 backbones (resnet18: p = 0.012); no significant difference on efficientnet_b0 "
                 "(p = 0.525).")
    one = backbone_comparison_sentence("E", "T", {"resnet18": per["efficientnet_b0"]})
    assert one.startswith("No significant difference in AUC between E (0.740) and T (0.710)")
    assert "±" not in one
    with pytest.raises(ValueError):
        backbone_comparison_sentence("E", "T", {})


def test_from_real_delong_test_and_from_table_rows():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20), np.zeros(30)]
    strong = y + rng.normal(0, 0.5, 50)
    weak = rng.normal(0, 1, 50)
    d = delong_test(y, strong, weak)
    c = Comparison.from_delong("Strong", "Weak", d, n=50)
    assert d.p_value < 0.05 and d.diff_low > 0
    assert comparison_sentence(c).startswith("Strong had a higher AUC than Weak")
    d2 = delong_test(y, strong, strong + rng.normal(0, 0.01, 50))
    assert comparison_sentence(Comparison.from_delong("A", "B", d2)).startswith("No significant difference")
    # the study's DeLong table (report) and compare's delong.csv
    row = pd.Series({"Model A": "Expanded", "Model B": "TNM stage", "AUC A": 0.8, "AUC B": 0.6,
                     "Difference": 0.2, "z": 1.1, "p (DeLong, paired)": 0.27, "Paired test patients": 22})
    c = Comparison.from_row(row)
    assert (c.name_b, c.n, c.diff_low) == ("TNM stage", 22, None)
    assert comparison_sentence(c).endswith("(paired DeLong test, 22 patients, difference 0.200, p = 0.270).")
    c = Comparison.from_row({"model_a": "x", "model_b": "y", "auc_a": 0.7, "auc_b": 0.72, "p_value": math.nan, "n": 9})
    assert is_significant(c) is None


def test_bad_comparisons_are_refused():
    with pytest.raises(ValueError, match="go together"):
        Comparison("a", "b", 0.8, 0.7, diff_low=0.1)
    with pytest.raises(ValueError, match="not in"):
        Comparison("a", "b", 0.8, 0.7, p_value=1.5)
