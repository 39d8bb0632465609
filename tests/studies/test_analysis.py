"""Study statistics from run predictions: thresholds come from validation patients only."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from npcai.stats.auc import auc_ci
from npcai.studies.analysis import model_metrics


def _pred(split, labels, probs):
    return pd.DataFrame({"patient_id": [f"{split}{i}" for i in range(len(labels))], "split": split,
                         "label": labels, "prob": probs})


def test_threshold_is_fixed_on_validation_and_applied_to_test():
    val = _pred("val", [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])          # Youden cut between 0.2 and 0.8
    test = _pred("test", [0, 0, 0, 1, 1, 1], [0.3, 0.4, 0.6, 0.7, 0.75, 0.95])
    m = model_metrics(pd.concat([val, test]))
    assert 0.2 <= m["threshold"] < 0.8
    y, p = test["label"].to_numpy(), (test["prob"].to_numpy() > m["threshold"]).astype(int)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (int(((p == 1) & (y == 1)).sum()), int(((p == 1) & (y == 0)).sum()),
                                                     int(((p == 0) & (y == 0)).sum()), int(((p == 0) & (y == 1)).sum()))
    a = auc_ci(y, test["prob"])
    assert m["auc"] == pytest.approx(a.auc) and m["auc_low"] == pytest.approx(a.low)
    assert m["n_test"] == 6 and m["n_pos"] == 3
    assert m["accuracy"] == pytest.approx((m["tp"] + m["tn"]) / 6)


def test_test_labels_never_move_the_threshold():
    val = _pred("val", [0, 1, 0, 1], [0.2, 0.6, 0.3, 0.7])
    t1 = _pred("test", [0, 1, 0, 1], [0.1, 0.9, 0.5, 0.55])
    t2 = t1.assign(label=[1, 0, 1, 0])
    assert model_metrics(pd.concat([val, t1]))["threshold"] == model_metrics(pd.concat([val, t2]))["threshold"]


def test_degenerate_sets_leave_cells_empty_instead_of_failing():
    val = _pred("val", [0, 0], [0.1, 0.2])                           # one class: default threshold 0.5
    test = _pred("test", [0, 1], [0.4, 0.6])                         # too few for DeLong's variance
    m = model_metrics(pd.concat([val, test]))
    assert m["threshold"] == 0.5 and "auc" not in m and m["tp"] == 1
    m = model_metrics(pd.concat([val, test]), default_threshold=None)
    assert np.isnan(m["threshold"]) and "tp" not in m


def _harrell_by_hand(time, event, risk) -> float:
    """Harrell's C counted pair by pair: a pair is usable when the shorter time is an event;
    concordant when that patient has the higher risk (equal risks count one half)."""
    num = den = 0.0
    for i in range(len(time)):
        for j in range(len(time)):
            if time[i] < time[j] and event[i] == 1:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def test_c_index_uses_the_survival_times():
    """The scores separate the binary labels perfectly (AUC 1.0) but not the survival times:
    a C-index computed from the labels would be 1.0; against the times it is 10/14 (14 usable
    pairs, 4 of them discordant: the 0.9-risk patient lived longer than three others)."""
    val = _pred("val", [0, 1, 0, 1], [0.2, 0.6, 0.3, 0.7])
    test = _pred("test", [0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    surv = pd.DataFrame({"time": [50, 12, 5, 20, 30, 10], "event": [0, 1, 1, 1, 0, 1]},
                        index=test["patient_id"])
    m = model_metrics(pd.concat([val, test]), surv)
    assert m["auc"] == pytest.approx(1.0)                   # the labels alone are perfectly ranked
    expected = _harrell_by_hand(surv["time"].to_numpy(), surv["event"].to_numpy(), test["prob"].to_numpy())
    assert expected == pytest.approx(10 / 14)
    assert m["c_index"] == pytest.approx(expected)
    assert m["c_low"] < m["c_index"] < m["c_high"] < 1.0 + 1e-12
    # moving one event time changes the C-index although no label changes
    later = surv.assign(time=surv["time"].where(surv.index != "test3", 60))
    m2 = model_metrics(pd.concat([val, test]), later)
    assert m2["c_index"] != pytest.approx(m["c_index"])
    assert m2["c_index"] == pytest.approx(_harrell_by_hand(later["time"].to_numpy(), later["event"].to_numpy(),
                                                           test["prob"].to_numpy()))

