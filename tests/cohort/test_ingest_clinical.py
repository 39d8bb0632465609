"""The clinical table: schema, normalisation, bad cells (one line, exit 2, nothing written)."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import ingest_helpers as h  # noqa: E402

from npcai.cohort.clinical_schema import read_clinical, require_columns, validate_clinical  # noqa: E402
from npcai.cohort.model import Cohort, pseudonym_map_path  # noqa: E402
from npcai.errors import NpcaiError  # noqa: E402

HEADER = "hospital_id,centre,age,sex,t_stage,n_stage,stage,treatment,pfs_months,pfs_event,distant_metastasis"
GOOD = ["H100,C0,50,M,T1,N0,III,CCRT,10.5,0,0", "H101,C1,51,F,T2,N1,IVA,IC+CCRT,11.5,1,1",
        "H102,C0,52,M,T3,N2,II,RT,12.5,0,0"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    return h.mini_export(tmp_path_factory.mktemp("clin") / "export", n_patients=3, shape=(2, 16, 16), post=False)


def _run(cli, mini, tmp_path, table: Path, *extra):
    out = tmp_path / "cohort"
    r = cli("ingest", mini / "dicom", "--clinical", table, "--out", out, *extra)
    return r, out


def _bad(cli, mini, tmp_path, rows: list[str], *needles: str):
    table = tmp_path / "clinical.csv"
    table.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    r, out = _run(cli, mini, tmp_path, table)
    assert r.code == 2, r
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not out.exists() and not pseudonym_map_path(out).exists()


def test_non_numeric_time(cli, mini, tmp_path):
    _bad(cli, mini, tmp_path, [GOOD[0], GOOD[1].replace("11.5", "eleven"), GOOD[2]],
         "clinical.csv", "'pfs_months'", "non-numeric value 'eleven'", "H101", "row 3")


def test_negative_time(cli, mini, tmp_path):
    _bad(cli, mini, tmp_path, [GOOD[0], GOOD[1], GOOD[2].replace("12.5", "-3")],
         "'pfs_months'", "negative time '-3'", "H102")


def test_event_outside_0_1(cli, mini, tmp_path):
    _bad(cli, mini, tmp_path, [GOOD[0].replace("10.5,0,0", "10.5,2,0"), GOOD[1], GOOD[2]],
         "'pfs_event'", "value '2' outside {0, 1}", "H100")


def test_duplicate_hospital_ids(cli, mini, tmp_path):
    _bad(cli, mini, tmp_path, [GOOD[0], GOOD[1], GOOD[1].replace("C1", "C0")],
         "duplicate hospital_id 'H101'", "rows 3, 4")


def test_other_bad_cells(cli, mini, tmp_path):
    _bad(cli, mini, tmp_path, [GOOD[0].replace(",50,", ",150,"), GOOD[1], GOOD[2]], "'age'", "outside 0..120")
    _bad(cli, mini, tmp_path, [GOOD[0].replace("T1", "T7"), GOOD[1], GOOD[2]], "'t_stage'", "'T7'")
    _bad(cli, mini, tmp_path, [GOOD[0].replace("CCRT", "surgery"), GOOD[1], GOOD[2]], "'treatment'", "surgery")


def test_multi_sheet_workbook_needs_sheet(cli, mini, tmp_path):
    xlsx = tmp_path / "clinical.xlsx"
    df = pd.read_csv(pd.io.common.StringIO(HEADER + "\n" + "\n".join(GOOD)), dtype=str)
    with pd.ExcelWriter(xlsx) as w:
        pd.DataFrame({"note": ["exported 2024"]}).to_excel(w, sheet_name="README", index=False)
        df.to_excel(w, sheet_name="follow-up", index=False)
    r, out = _run(cli, mini, tmp_path, xlsx)
    assert r.code == 2
    assert "clinical.xlsx: workbook has 2 sheets ('README', 'follow-up'); choose one with --sheet" in r.stderr
    assert not out.exists()
    r, out = _run(cli, mini, tmp_path, xlsx, "--sheet", "follow-up")
    assert r.code == 0, r
    clin = Cohort.load(out).clinical()
    assert list(clin["stage"]) == [3, 4, 2] and list(clin["treatment"]) == ["CCRT", "IC+CCRT", "RT"]


def test_ids_only_table_is_valid_and_require_columns_names_missing(cli, mini, tmp_path):
    table = tmp_path / "ids.csv"
    table.write_text("hospital_id\nH100\nH101\nH102\n")
    r, out = _run(cli, mini, tmp_path, table)
    assert r.code == 0, r
    c = Cohort.load(out)
    assert c.endpoints == [] and list(c.clinical().columns) == []
    with pytest.raises(NpcaiError, match="endpoint pfs-median needs column 'pfs_months'.*also missing: pfs_event"):
        require_columns(c.clinical(), ["pfs_months", "pfs_event"], "endpoint pfs-median")
    require_columns(c.clinical(), ["patient_id"], "a split")      # the index counts as present


def test_schema_normalises_and_types_known_columns():
    raw = pd.DataFrame({"hospital_id": [" H1", "H2"], "sex": ["male", "F"], "stage": ["IVB", "2"],
                        "n_stage": ["N3a", "0"], "os_days": ["100", ""], "os_event": ["1", None],
                        "residual_tumour": ["yes", "0"], "smoker": ["pack-years 20", "never"]}, dtype=object)
    df = validate_clinical(raw, source="t.csv")
    assert list(df["hospital_id"]) == ["H1", "H2"]
    assert list(df["sex"]) == ["M", "F"] and list(df["stage"]) == [4, 2] and list(df["n_stage"]) == [3, 0]
    assert df["os_days"].iloc[0] == 100.0 and pd.isna(df["os_days"].iloc[1]) and pd.isna(df["os_event"].iloc[1])
    assert list(df["residual_tumour"]) == [1, 0] and list(df["smoker"]) == ["pack-years 20", "never"]
    with pytest.raises(NpcaiError, match="t.csv: no 'hospital_id' column"):
        validate_clinical(pd.DataFrame({"id": ["a"]}), source="t.csv")
    with pytest.raises(NpcaiError, match="column 'hospital_id' is empty in row 3"):
        validate_clinical(pd.DataFrame({"hospital_id": ["a", " "]}), source="t.csv")


def test_read_clinical_errors(tmp_path):
    with pytest.raises(NpcaiError, match="clinical table not found"):
        read_clinical(tmp_path / "nope.csv")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(NpcaiError, match="unsupported clinical table type"):
        read_clinical(tmp_path / "t.json")
    shutil.copy(tmp_path / "t.json", tmp_path / "t.csv")
    with pytest.raises(NpcaiError, match="--sheet applies to Excel"):
        read_clinical(tmp_path / "t.csv", sheet="x")


def test_identifying_columns_never_reach_the_cohort(cli, mini, tmp_path):
    table = tmp_path / "clinical.csv"
    table.write_text("hospital_id,Patient Name,DOB,diagnosis_date,last_seen,age,candidate_for_ic\n"
                     "H100,Doe^Janet,1958-02-14,x,01/02/2020,50,1\n"
                     "H101,Roe^Richard,1961-07-30,,3/4/2021,51,0\n"
                     "H102,Poe^Edgar,1949-01-19,2019-05-05,5/6/2021,52,1\n")
    r, out = _run(cli, mini, tmp_path, table, "--keep-columns", "candidate_for_ic")
    assert r.code == 0, r
    assert "dropped 4 column(s) outside the clinical schema: 'Patient Name', 'DOB', 'diagnosis_date', " \
           "'last_seen'" in " ".join(r.stderr.split())
    text = (out / "clinical.csv").read_text() + (out / "cohort.json").read_text()
    text = re.sub(r"\b[0-9a-f]{32,}\b", "<hash>", text)   # salted hashes may contain any digits
    for needle in ("Janet", "Richard", "1958", "1961-07-30", "2019-05-05", "3/4/2021"):
        assert needle not in text
    assert list(Cohort.load(out).clinical().columns) == ["age", "candidate_for_ic"]
    table.write_text("hospital_id,patient_id\nH100,1\n")
    r = cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "other")
    assert r.code == 2 and "column 'patient_id' is reserved" in r.stderr
