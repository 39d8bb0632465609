"""Study 001's Table 2, recomputed from its confusion matrices (issue 6, point 7).

Seed: /work/shared/seeds/001_52030869884d3e30.txt, section 3.2 and Table 2 (test cohort,
43 patients: 23 high risk, 20 low risk). Rows are the truth, columns the prediction.
"""
from __future__ import annotations

import re

import pytest

from npcai.stats.binary import ConfusionMatrix, metrics_from_confusion

from shared_data import SHARED, require_shared

SEED = SHARED / "seeds" / "001_52030869884d3e30.txt"

# Table 2: (TP, FN) in the "High risk (true)" row, (FP, TN) in the "Low risk (true)" row.
TABLE2 = {
    "ensemble": ConfusionMatrix(tp=18, fn=5, fp=2, tn=18),
    "pre": ConfusionMatrix(tp=17, fn=6, fp=5, tn=15),
    "post": ConfusionMatrix(tp=17, fn=6, fp=2, tn=18),
    "tnm": ConfusionMatrix(tp=16, fn=7, fp=5, tn=15),
}
# What the paper prints in section 3.2 (percent and the fraction it shows).
PRINTED = {
    "pre": {"ppv": (73.9, 17, 23), "npv": (75.0, 15, 20), "accuracy": (74.4, 32, 43)},
    "post": {"ppv": (73.9, 17, 23), "npv": (90.0, 2, 20), "accuracy": (81.4, 35, 43)},
    "ensemble": {"ppv": (78.2, 18, 23), "npv": (90.0, 2, 20), "accuracy": (83.7, 36, 43)},
    "tnm": {"ppv": (69.6, 16, 23), "npv": (75.0, 15, 20), "accuracy": (72.1, 31, 43)},
}


def test_table2_transcribed_from_the_seed():
    text = require_shared(SEED, "seed paper 001").read_text()
    rows = {m.group(1): [int(v) for v in m.group(2).split()] for m in
            re.finditer(r"^(High risk\(true\)|Low risk\(true\))\s+([\d\s]+)$", text, re.M)}
    high, low = rows["High risk(true)"], rows["Low risk(true)"]
    for k, name in enumerate(["ensemble", "pre", "post", "tnm"]):   # column order in Table 2
        cm = TABLE2[name]
        assert (high[2 * k], high[2 * k + 1]) == (cm.tp, cm.fn), name
        assert (low[2 * k], low[2 * k + 1]) == (cm.fp, cm.tn), name


@pytest.mark.parametrize("name", list(TABLE2))
def test_accuracy_follows_from_the_matrices(name):
    m = metrics_from_confusion(TABLE2[name])
    pct, k, n = PRINTED[name]["accuracy"]
    assert (m.accuracy.k, m.accuracy.n) == (k, n)
    assert round(100 * m.accuracy.value, 1) == pct


@pytest.mark.parametrize("name", list(TABLE2))
def test_printed_ppv_npv_are_not_ppv_npv(name):
    """Expected discrepancies, recorded: the paper's "PPV" is the sensitivity TP/(TP+FN) and
    its "NPV" the specificity TN/(TN+FP); true PPV/NPV differ for every model."""
    m = metrics_from_confusion(TABLE2[name])
    pct_ppv, k_ppv, n_ppv = PRINTED[name]["ppv"]
    # the printed "PPV" fraction is the sensitivity fraction
    assert (k_ppv, n_ppv) == (m.sensitivity.k, m.sensitivity.n)
    assert (m.ppv.k, m.ppv.n) != (k_ppv, n_ppv)
    # the printed "NPV" denominator is the number of low-risk patients (specificity's)
    pct_npv, k_npv, n_npv = PRINTED[name]["npv"]
    assert n_npv == m.specificity.n and n_npv != m.npv.n
    assert round(100 * m.specificity.value, 1) == pct_npv


def test_printed_typos_in_table2_text():
    """Further discrepancies: "90.0% (2/20)" for the post-model and ensemble shows the false
    positives (2) as numerator although 90.0% is 18/20; and 18/23 = 78.26% is printed 78.2%."""
    for name in ("post", "ensemble"):
        m = metrics_from_confusion(TABLE2[name])
        pct, k, n = PRINTED[name]["npv"]
        assert k == m.confusion.fp and round(100 * m.specificity.value, 1) == pct
        assert round(100 * k / n, 1) != pct
    assert round(100 * 18 / 23, 1) == 78.3 != PRINTED["ensemble"]["ppv"][0]


def test_true_ppv_npv_of_table2():
    """What the paper should have printed (PPV = TP/(TP+FP), NPV = TN/(TN+FN))."""
    expect = {"pre": ((17, 22), (15, 21)), "post": ((17, 19), (18, 24)),
              "ensemble": ((18, 20), (18, 23)), "tnm": ((16, 21), (15, 22))}
    for name, ((kp, np_), (kn, nn)) in expect.items():
        m = metrics_from_confusion(TABLE2[name])
        assert (m.ppv.k, m.ppv.n, m.npv.k, m.npv.n) == (kp, np_, kn, nn), name
    assert round(100 * metrics_from_confusion(TABLE2["ensemble"]).ppv.value, 1) == 90.0
