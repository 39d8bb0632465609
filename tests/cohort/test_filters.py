"""Patient filters: every grammar feature works, anything else is refused without running code."""
import numpy as np
import pandas as pd
import pytest

from npcai.cohort.endpoints import filter_patients
from npcai.cohort.filters import FILTER_GRAMMAR, filter_mask, parse_filter
from npcai.errors import NpcaiError


@pytest.fixture
def clin() -> pd.DataFrame:
    return pd.DataFrame(
        {"treatment": ["CCRT", "RT", "IC+CCRT", "CCRT", np.nan],
         "t_stage": [3, 2, 4, 1, 3], "age": [50.5, 61.0, np.nan, 40.0, 70.0], "centre": ["A", "B", "A", "B", "A"]},
        index=pd.Index([f"P{i:04d}" for i in range(1, 6)], name="patient_id"))


def _ids(clin, where):
    return list(clin.index[filter_mask(clin, where)])


@pytest.mark.parametrize("where, expected", [
    ('treatment == "CCRT"', ["P0001", "P0004"]),
    ("treatment != 'CCRT'", ["P0002", "P0003", "P0005"]),        # missing cells differ from any value
    ("t_stage < 3", ["P0002", "P0004"]),
    ("t_stage <= 3", ["P0001", "P0002", "P0004", "P0005"]),
    ("t_stage > 3", ["P0003"]),
    ("t_stage >= 3", ["P0001", "P0003", "P0005"]),
    ("age > -1.5", ["P0001", "P0002", "P0004", "P0005"]),        # NaN age never matches
    ("3 <= t_stage", ["P0001", "P0003", "P0005"]),                # literal on the left
    ("2 <= t_stage < 4", ["P0001", "P0002", "P0005"]),            # chained comparison
    ('treatment in ["CCRT", "IC+CCRT"]', ["P0001", "P0003", "P0004"]),
    ("t_stage not in [1, 2]", ["P0001", "P0003", "P0005"]),
    ('centre == "A" and t_stage >= 3', ["P0001", "P0003", "P0005"]),
    ('centre == "B" or t_stage == 4', ["P0002", "P0003", "P0004"]),
    ('not centre == "A"', ["P0002", "P0004"]),
    ('(treatment == "RT" or t_stage == 4) and centre == "A"', ["P0003"]),
    ('not (treatment == "RT" or t_stage == 4)', ["P0001", "P0004", "P0005"]),
])
def test_each_grammar_feature_selects_the_right_patients(clin, where, expected):
    assert _ids(clin, where) == expected


def test_filter_patients_returns_the_rows_and_refuses_an_empty_result(clin):
    assert filter_patients(clin, 't_stage == 4').index.tolist() == ["P0003"]
    assert filter_patients(clin, None) is clin
    with pytest.raises(NpcaiError, match="no patient matches"):
        filter_patients(clin, "t_stage == 9")


@pytest.mark.parametrize("where", [
    '@pd.io.common.os.system("touch pwned") == 0',         # the exploit of issue 18
    'treatment.str.len() > 3',                             # attribute access and calls
    '__import__("os").system("true") == 0',                # call, dunder
    "__class__ == 1",                                      # dunder name
    "treatment[0] == 'C'",                                 # subscript
    "(lambda: 1)() == 1",                                  # lambda
    "t_stage + 1 > 3",                                     # arithmetic
    "t_stage",                                             # a bare column is no condition
    "t_stage is None",                                     # identity operators
    "[1, 2] == t_stage",                                   # list outside in/not in
    "t_stage in t_stage",                                  # in needs a list of literals
    "t_stage in [age]",                                    # ... of literals only
    "t_stage == 1; import os",                             # statements
    "1 == 1",                                              # no column
    "",
])
def test_anything_outside_the_grammar_is_refused_with_the_grammar(clin, where):
    with pytest.raises(NpcaiError) as info:
        filter_mask(clin, where)
    msg = str(info.value)
    assert "\n" not in msg and FILTER_GRAMMAR in msg and msg.startswith("patient filter")


def test_parse_refuses_before_any_table_is_read():
    with pytest.raises(NpcaiError, match="not valid syntax"):
        parse_filter('@pd.io.common.os.system("touch pwned") == 0')
    assert parse_filter('treatment == "CCRT" and t_stage > 2').columns == ("treatment", "t_stage")


def test_unknown_column_is_named_with_the_available_ones(clin):
    with pytest.raises(NpcaiError, match=r"no column 'stage' in the clinical table; columns are "
                                         r"treatment, t_stage, age, centre"):
        filter_mask(clin, "stage == 3")


def test_ordering_text_against_a_number_says_so(clin):
    with pytest.raises(NpcaiError, match="column 'treatment' holds text"):
        filter_mask(clin, "treatment > 3")
    with pytest.raises(NpcaiError, match="column 't_stage' holds numbers"):
        filter_mask(clin, 't_stage > "3"')


def test_the_patient_id_index_can_be_filtered(clin):
    # clinical.csv is indexed by patient_id: a study selects its matched patients by pseudonym
    assert _ids(clin, 'patient_id in ["P0002", "P0004"] and t_stage >= 2') == ["P0002"]
    assert _ids(clin, 'patient_id != "P0001"') == ["P0002", "P0003", "P0004", "P0005"]
