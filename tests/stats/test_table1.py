"""Table 1 describes every clinical column (median [IQR] with rank tests, n (%) with chi-square or
Fisher), lists the ones it leaves out and why; its tests and quartiles match R
(fixtures/table1/make_table1_reference.R)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from npcai.errors import NpcaiError
from npcai.stats import table1  # the function: import it before the submodule of the same name
from npcai.stats.table1 import table1_variables

FIX = Path(__file__).parent / "fixtures" / "table1"
REF = json.loads((FIX / "table1_reference.json").read_text())


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(FIX / "table1_data.csv")


def _first(t: pd.DataFrame, var: str) -> pd.Series:
    return t[t.variable == var].iloc[0]


def _iqr_cell(q, decimals) -> str:
    return f"{q[1]:.{decimals}f} [{q[0]:.{decimals}f}–{q[2]:.{decimals}f}]"


def test_two_groups_match_r(data):
    by = data["label"].map({0: "label 0", 1: "label 1"})
    t = table1(data.drop(columns=["label", "split"]), by)
    ref = REF["by_label"]
    for var in ("age", "ebv_dna", "bmi"):
        row = _first(t, var)
        assert row["level"] == "median [IQR]" and row["test_used"] == "Wilcoxon rank-sum"
        assert row["p_value"] == pytest.approx(ref[var]["p_wilcoxon"], rel=1e-9), var
    assert ref["bmi"]["exact"] and not ref["age"]["exact"]           # both branches of R's rule are covered
    assert _first(t, "age")["label 0"] == _iqr_cell(ref["age"]["q_0"], 1)
    assert _first(t, "ebv_dna")["label 1"] == _iqr_cell(ref["ebv_dna"]["q_1"], 0)
    assert _first(t, "bmi")["label 1"] == _iqr_cell(ref["bmi"]["q_1"], 1)
    sex = _first(t, "sex")
    assert ref["sex"]["min_expected"] < 5 and sex["test_used"] == "Fisher"
    assert sex["p_value"] == pytest.approx(ref["sex"]["p"], rel=1e-9)
    stage = _first(t, "t_stage")
    assert stage["test_used"] == "chi-square" and stage["p_value"] == pytest.approx(ref["t_stage"]["p"], rel=1e-9)
    assert list(t[t.variable == "t_stage"]["level"]) == ["T1", "T2", "T3", "T4", "missing"]
    # the seeds' layout: mean ± SD with Student's t-test
    mean = table1(data.drop(columns=["label", "split"]), by, continuous="mean")
    age = _first(mean, "age")
    assert (age["level"], age["test_used"]) == ("mean ± SD", "t-test")
    assert age["p_value"] == pytest.approx(ref["age"]["p_t"], rel=1e-9)


def test_three_groups_match_r(data):
    t = table1(data.drop(columns=["label"]), "split")
    assert list(t.columns) == ["variable", "level", "train", "val", "test", "p_value", "test_used"]
    ref = REF["by_split"]
    for var in ("age", "ebv_dna", "bmi"):
        row = _first(t, var)
        assert row["test_used"] == "Kruskal-Wallis"
        assert row["p_value"] == pytest.approx(ref[var]["p_kruskal"], rel=1e-9), var
    assert _first(t, "age")["test"] == _iqr_cell(ref["age"]["q_test"], 1)
    for var in ("sex", "t_stage"):
        assert _first(t, var)["p_value"] == pytest.approx(ref[var]["p"], rel=1e-9), var
    mean = table1(data.drop(columns=["label"]), "split", continuous="mean")
    assert _first(mean, "bmi")["p_value"] == pytest.approx(ref["bmi"]["p_anova"], rel=1e-9)


def test_every_column_is_described_or_listed_with_its_reason():
    rng = np.random.default_rng(0)
    n = 24
    clin = pd.DataFrame({
        "hospital_id": [f"H{i}" for i in range(n)],
        "pfs_months": rng.uniform(1, 60, n).round(1), "pfs_event": rng.integers(0, 2, n),
        "hpv_status": rng.choice(["positive", "negative"], n),
        "smoking_pack_years": rng.gamma(2, 10, n).round(1),
        "comments": [f"note {i}" for i in range(n)],
        "empty": np.nan,
        "grade": rng.choice(["WHO I", "WHO II", "WHO III"], n),
        "age": rng.integers(30, 70, n),
        "sex": rng.choice(["M", "F"], n),
        "mortality": rng.integers(0, 2, n),
        "bmi": rng.normal(23, 3, n).round(1),
        "centre": rng.choice(["A", "B"], n),
    })
    by = pd.Series(["train", "test"] * (n // 2))
    variables, dropped = table1_variables(clin)
    # baseline first, then the other columns in table order, outcomes last
    assert variables == ["age", "sex", "centre", "hpv_status", "smoking_pack_years", "grade", "mortality", "bmi",
                         "pfs_months", "pfs_event"]
    assert dropped == {"hospital_id": "identifier", "comments": "free text (24 distinct values)",
                       "empty": "every value missing"}
    t = table1(clin, by)
    assert list(dict.fromkeys(t["variable"])) == ["Patients", *variables, *dropped]
    assert _first(t, "smoking_pack_years")["level"] == "median [IQR]"
    assert list(t[t.variable == "grade"]["level"]) == ["WHO I", "WHO II", "WHO III"]
    assert list(t[t.variable == "mortality"]["level"]) == ["0", "1"]       # a 0/1 column is categorical
    assert _first(t, "comments")["level"] == "not described: free text (24 distinct values)"
    assert t.attrs["dropped"] == dropped
    # an explicit list describes those columns only
    t = table1(clin, by, variables=["bmi", "empty"])
    assert list(t["variable"]) == ["Patients", "bmi", "empty"]
    with pytest.raises(NpcaiError, match="no clinical column can be described.*every value missing"):
        table1(clin[["empty", "comments"]], by)
    with pytest.raises(NpcaiError, match="continuous='sd'"):
        table1(clin, by, continuous="sd")


def test_constant_and_tiny_groups_say_why_there_is_no_p():
    clin = pd.DataFrame({"age": [50, 50, 50, 50], "ebv_dna": [1.0, 2.0, 3.0, np.nan], "sex": ["M"] * 4})
    t = table1(clin, pd.Series(["a", "a", "b", "b"]))
    assert _first(t, "age")["test_used"] == "Wilcoxon rank-sum not computable (no variation)"
    assert _first(t, "ebv_dna")["test_used"] == "too few values"
    assert _first(t, "sex")["test_used"] == "single level"
    assert _first(t, "ebv_dna")["b"] == "3.0 [3.0–3.0]"


def test_cli_table1_on_a_cohort_with_extra_columns(cli, small_cohort, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort, ignore=shutil.ignore_patterns("roi"))
    clin = pd.read_csv(cohort / "clinical.csv", dtype={"patient_id": str})
    clin["hpv_status"] = ["positive", "negative"] * (len(clin) // 2)
    clin["notes"] = [f"free text {i}" for i in range(len(clin))]
    clin.to_csv(cohort / "clinical.csv", index=False)
    out = tmp_path / "t1.csv"
    r = cli("table1", cohort, "--by", "centre", "--out", out)
    assert r.code == 0, r
    t = pd.read_csv(out)
    shown = set(t["variable"])
    assert {"age", "sex", "t_stage", "ebv_dna", "treatment", "physician_choice", "hpv_status", "pfs_months",
            "pfs_event", "residual_tumour", "notes"} <= shown
    assert set(clin.columns) - {"patient_id", "centre"} <= shown              # every column, none silently
    assert _first(t, "notes")["level"].startswith("not described: free text")
    assert _first(t, "ebv_dna")["level"] == "median [IQR]"
