"""npcai.stats against R (pROC 1.18, survival 3.5, Hmisc 4.8) to 1e-6.

The reference values in fixtures/r_reference.json were produced by fixtures/make_reference.R
from the CSV datasets beside it; R is needed only to regenerate them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from npcai.stats.auc import (auc_ci, delong_test, delong_test_unpaired, roc_curve,
                             youden_threshold)
from npcai.stats.binary import wilson_ci
from npcai.stats.calibration import calibration_intercept_slope
from npcai.stats.concordance import c_index_binary, harrell_c

FIX = Path(__file__).parent / "fixtures"
REF = json.loads((FIX / "r_reference.json").read_text())
TOL = 1e-6
SINGLE = [("binary_ties", "score1"), ("binary_ties", "score2"), ("binary_unbalanced", "score1"),
          ("binary_unbalanced", "score2"), ("binary_separated", "score1")]


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIX / f"{name}.csv")


@pytest.mark.parametrize("name,col", SINGLE)
def test_auc_variance_and_ci_match_proc(name, col):
    d, ref = data(name), REF[name][col]
    r = auc_ci(d.y, d[col])
    assert r.auc == pytest.approx(ref["auc"], abs=TOL)
    assert r.se ** 2 == pytest.approx(ref["var"], abs=TOL)
    assert r.low == pytest.approx(ref["ci_low"], abs=TOL)
    assert r.high == pytest.approx(ref["ci_high"], abs=TOL)


def test_ci_is_clipped_at_one_like_proc():
    d, ref = data("binary_separated"), REF["binary_separated"]["score1"]
    r = auc_ci(d.y, d.score1)
    assert r.auc + 1.959964 * r.se > 1.0          # the unclipped bound would exceed 1
    assert r.high == ref["ci_high"] == 1.0


@pytest.mark.parametrize("name,col", SINGLE)
def test_roc_points_and_youden_match_proc(name, col):
    d, ref = data(name), REF[name][col]
    roc = roc_curve(d.y, d[col])
    thr = np.array([float(t) for t in ref["roc"]["thresholds"]])   # "-Inf"/"Inf" as strings
    np.testing.assert_allclose(roc.thresholds, thr, atol=TOL)
    np.testing.assert_allclose(roc.sensitivity, ref["roc"]["sensitivities"], atol=TOL)
    np.testing.assert_allclose(roc.specificity, ref["roc"]["specificities"], atol=TOL)
    cut = youden_threshold(d.y, d[col])
    assert cut.threshold == pytest.approx(ref["youden"]["threshold"], abs=TOL)
    assert cut.sensitivity == pytest.approx(ref["youden"]["sensitivity"], abs=TOL)
    assert cut.specificity == pytest.approx(ref["youden"]["specificity"], abs=TOL)


@pytest.mark.parametrize("name", ["binary_ties", "binary_unbalanced"])
def test_paired_delong_matches_roc_test(name):
    d, ref = data(name), REF[name]["paired"]
    t = delong_test(d.y, d.score1, d.score2)
    assert t.statistic == pytest.approx(ref["statistic"], abs=TOL)
    assert t.p_value == pytest.approx(ref["p_value"], abs=TOL)
    assert t.diff_low == pytest.approx(ref["diff_low"], abs=TOL)
    assert t.diff_high == pytest.approx(ref["diff_high"], abs=TOL)


@pytest.mark.parametrize("key,a,ca,b,cb", [
    ("unpaired_ties1_vs_unbalanced1", "binary_ties", "score1", "binary_unbalanced", "score1"),
    ("unpaired_ties2_vs_separated1", "binary_ties", "score2", "binary_separated", "score1"),
])
def test_unpaired_delong_matches_roc_test(key, a, ca, b, cb):
    da, db, ref = data(a), data(b), REF[key]
    t = delong_test_unpaired(da.y, da[ca], db.y, db[cb])
    assert t.statistic == pytest.approx(ref["statistic"], abs=TOL)
    assert t.df == pytest.approx(ref["df"], abs=TOL)
    assert t.p_value == pytest.approx(ref["p_value"], abs=TOL)


@pytest.mark.parametrize("se_method", ["ij", "noether"])
def test_harrell_c_matches_survival_concordance(se_method):
    d, ref = data("survival_censored"), REF["survival_concordance"]
    r = harrell_c(d.time, d.event, d.risk, se_method=se_method)
    assert r.c_index == pytest.approx(ref["c_index"], abs=TOL)
    assert r.concordant == ref["count"]["concordant"]
    assert r.discordant == ref["count"]["discordant"]
    assert r.tied_risk == ref["count"]["tied.x"]
    assert r.se == pytest.approx(ref["std_err"], abs=TOL)


def test_harrell_c_matches_rcorr_cens():
    """rcorr.cens(x, S): a larger x predicts LONGER survival, so its C is 1 - ours for a
    risk score; its S.D. is the SD of Dxy = 2 (C - 0.5), i.e. twice the SD of C; it counts
    every comparable pair twice (i, j and j, i)."""
    d, ref = data("survival_censored"), REF["rcorr_cens"]
    r = harrell_c(d.time, d.event, d.risk, se_method="noether")
    assert 1 - r.c_index == pytest.approx(ref["c_index"], abs=TOL)
    assert 2 * (r.c_index - 0.5) == pytest.approx(-ref["dxy"], abs=TOL)
    assert 2 * r.se == pytest.approx(ref["sd"], abs=TOL)
    assert 2 * r.comparable == ref["relevant"]


def test_binary_c_index_is_auc_and_matches_rcorr_cens():
    d, ref = data("binary_ties"), REF["rcorr_cens_binary"]
    c = c_index_binary(d.y, d.score1)
    assert c.c_index == pytest.approx(ref["c_index"], abs=TOL)
    assert c.c_index == pytest.approx(REF["binary_ties"]["score1"]["auc"], abs=TOL)
    # As a survival problem where every label-1 patient fails first, Noether's SD is Hmisc's.
    t = np.where(d.y == 1, 1.0, 2.0)
    s = harrell_c(t, np.ones(len(d)), d.score1, se_method="noether")
    assert s.c_index == pytest.approx(ref["c_index"], abs=TOL)
    assert 2 * s.se == pytest.approx(ref["sd"], abs=TOL)


@pytest.mark.parametrize("i", range(len(REF["wilson"])))
def test_wilson_matches_prop_test(i):
    ref = REF["wilson"][i]
    lo, hi = wilson_ci(ref["k"], ref["n"])
    assert lo == pytest.approx(ref["low"], abs=TOL)
    assert hi == pytest.approx(ref["high"], abs=TOL)


def test_calibration_matches_glm():
    d, ref = data("binary_unbalanced"), REF["calibration_unbalanced_score1"]
    r = calibration_intercept_slope(d.y, d.score1)
    for key in ("slope", "slope_se", "slope_intercept", "intercept", "intercept_se", "brier"):
        assert getattr(r, key) == pytest.approx(ref[key], abs=TOL), key
