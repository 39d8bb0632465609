"""Survival endpoints and the deep model's targets: exclusions counted, bad input in one line."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from npcai.cohort.endpoints import survival_target
from npcai.errors import NpcaiError
from npcai.survival.deep.data import check_trainable, survival_targets, target_array, treatment_indicator


def _clinical(**over) -> pd.DataFrame:
    d = {"treatment": ["CCRT", "IC+CCRT", "CCRT", "IC+CCRT", "CCRT", None],
         "dfs_months": [10.0, 20.0, None, 40.0, 5.5, 12.0], "dfs_event": [1, 0, 1, 0, 1, 1],
         "os_months": [30.0, 20.0, 25.0, 40.0, 50.0, 12.0], "os_event": [0, 0, 1, 0, 0, 1],
         "pfs_months": [10.0, 20.0, 30.0, 40.0, 5.5, 12.0], "pfs_event": [1, 0, 1, 0, 1, None]}
    d.update(over)
    return pd.DataFrame(d, index=pd.Index([f"P{i}" for i in range(1, 7)], name="patient_id"))


@pytest.mark.parametrize("name,tcol", [("dfs", "dfs_months"), ("os", "os_months"), ("pfs", "pfs_months"),
                                       ("pfs-median", "pfs_months"), ("os_months,os_event", "os_months")])
def test_named_endpoints_and_column_pairs(name, tcol):
    clin = _clinical()
    st = survival_target(clin, name)
    assert st.time_column == tcol
    ok = clin[tcol].notna() & clin[tcol.replace("months", "event")].notna()
    assert list(st.time.index) == list(clin.index[ok])
    assert st.time.dtype == float and set(st.event.unique()) <= {0, 1}
    assert len(st.excluded) == int((~ok).sum())
    assert st.frame().columns.tolist() == ["time", "event"]


def test_patients_without_follow_up_are_excluded_and_counted():
    st = survival_target(_clinical(), "dfs")
    assert st.excluded_counts() == {"missing dfs_months or dfs_event": 1}
    assert st.n_events == 3 and "P3" not in st.time.index


def test_bad_survival_columns():
    with pytest.raises(NpcaiError, match="column 'dmfs_months' missing"):
        survival_target(_clinical(), "dmfs")
    with pytest.raises(NpcaiError, match="not a named survival endpoint"):
        survival_target(_clinical(), "relapse")
    with pytest.raises(NpcaiError, match=r"'dfs_months' is negative \(-1\) for patient P1"):
        survival_target(_clinical(dfs_months=[-1.0, 2, 3, 4, 5, 6]), "dfs")
    with pytest.raises(NpcaiError, match="'dfs_event' has value '2' for patient P2"):
        survival_target(_clinical(dfs_event=[1, 2, 0, 0, 1, 1]), "dfs")
    with pytest.raises(NpcaiError, match="'dfs_months' has value 'soon' for patient P1"):
        survival_target(_clinical(dfs_months=["soon", 2, 3, 4, 5, 6]), "dfs")


def test_targets_join_treatment_and_count_exclusions():
    t = survival_targets(_clinical(), "dfs")
    assert t.table.to_dict("index")["P2"] == {"time": 20.0, "event": 0, "treatment": 1}
    assert t.excluded_counts() == {"missing dfs_months or dfs_event": 1, "missing treatment": 1}
    arr = target_array(t.table, ["P5", "P1"])
    assert arr.dtype == np.float32 and arr.tolist() == [[5.5, 1, 0], [10.0, 1, 0]]
    check_trainable(t)


def test_bad_input_one_clear_line_each():
    with pytest.raises(NpcaiError, match="no 'treatment' column; the predictive head compares two treatments"):
        treatment_indicator(_clinical().drop(columns="treatment"))
    with pytest.raises(NpcaiError, match=r"more than two treatments: RT \(2\)"):
        survival_targets(_clinical(treatment=["CCRT", "RT", "RT", "IC+CCRT", "CCRT", "CCRT"]), "dfs")
    one_arm = survival_targets(_clinical(treatment=["CCRT"] * 6), "dfs")
    with pytest.raises(NpcaiError, match="training cohort: all 5 patients received CCRT"):
        check_trainable(one_arm)
    check_trainable(one_arm, predictive=False)  # the prognostic head alone is fine
    no_events = survival_targets(_clinical(dfs_event=[0] * 6), "dfs")
    with pytest.raises(NpcaiError, match="training cohort: none of the 4 patients had an event"):
        check_trainable(no_events)
    with pytest.raises(NpcaiError) as info:
        check_trainable(no_events, "validation cohort")
    assert "\n" not in str(info.value) and str(info.value).startswith("validation cohort: none")
