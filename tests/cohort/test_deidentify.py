"""De-identification (issue 18): allowlist of clinical columns, identifying columns refused,
salted UID hashes, stable pseudonyms on re-ingest, the map never inside an npcai output;
and the small ingest defects (semicolon CSV, ids with spaces, EXPORT/contours)."""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import ingest_helpers as h  # noqa: E402

from npcai.cohort.deidentify import assign_pseudonyms, hash_uid, load_pseudonym_map  # noqa: E402
from npcai.cohort.model import Cohort, pseudonym_map_path  # noqa: E402


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """4 patients H100..H103, one pre-treatment T1c series each, contours in EXPORT/contours."""
    return h.mini_export(tmp_path_factory.mktemp("deid") / "export", n_patients=4, shape=(2, 16, 16), post=False)


def _error_line(r) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert r.code == 2 and len(lines) == 1, r
    return " ".join(r.stderr.split())


def _with_column(mini: Path, tmp_path: Path, name: str, values: list[str]) -> Path:
    df = pd.read_csv(mini / "clinical.csv", dtype=str)
    df[name] = values
    path = tmp_path / "clinical.csv"
    df.to_csv(path, index=False)
    return path


def _pmap(cohort: Path) -> dict[str, str]:
    return load_pseudonym_map(pseudonym_map_path(cohort)).pseudonyms


# ------------------------------------------------------------------ allowlist
def test_columns_outside_the_schema_are_dropped_in_one_warning_unless_kept(cli, mini, tmp_path):
    df = pd.read_csv(mini / "clinical.csv", dtype=str)
    df["ldh"], df["smoker"] = ["245", "180", "300", "210"], ["never", "20 pack-years", "never", "no"]
    table = tmp_path / "clinical.csv"
    df.to_csv(table, index=False)
    r = cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "a")
    assert r.code == 0, r
    text = " ".join(r.stderr.split())
    assert text.count("outside the clinical schema") == 1 and "schema: 'ldh', 'smoker' (" in text
    assert not {"ldh", "smoker"} & set(Cohort.load(tmp_path / "a").clinical().columns)
    r = cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "b", "--keep-columns", "ldh")
    assert r.code == 0, r
    cols = Cohort.load(tmp_path / "b").clinical().columns
    assert "ldh" in cols and "smoker" not in cols
    assert "no column 'ldh2' to keep" in _error_line(
        cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "c", "--keep-columns", "ldh2"))


@pytest.mark.parametrize("name, values", [
    ("姓名", ["张三", "李四", "王五", "赵六"]),
    ("住院号", ["A1", "A2", "A3", "A4"]),
    ("id_card", ["x1", "x2", "x3", "x4"]),
    ("PatientBirthDate", ["x", "y", "z", "w"]),
    ("old_id", ["9", "8", "7", "6"]),
    ("study_uid", ["a", "b", "c", "d"]),
    ("notes", ["fine", "seen with H102 last week", "ok", ""]),           # free text quoting a hospital id
    ("remark", ["tel 138 0013 8000", "", "", ""]),                       # a phone number
    ("comment", ["", "ref 1.2.840.113619.2.55.3.604688", "", ""]),       # a DICOM UID
    ("history", ["", "", "born 1961-07-30", ""]),                        # a date
])
def test_identifying_columns_are_refused_even_when_kept_unless_keep_ids(cli, mini, tmp_path, name, values):
    table = _with_column(mini, tmp_path, name, values)
    line = _error_line(cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "a",
                           "--keep-columns", name))
    assert f"column {name!r} looks identifying" in line and "--keep-ids" in line
    assert not (tmp_path / "a").exists()
    r = cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "b", "--keep-columns", name,
            "--keep-ids")
    assert r.code == 0, r
    assert name in pd.read_csv(tmp_path / "b" / "clinical.csv").columns
    r = cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "c")   # not named: dropped
    assert r.code == 0, r
    assert name not in (tmp_path / "c" / "clinical.csv").read_text()


# ------------------------------------------------------------------ salted hashes, stable pseudonyms
def test_uid_hashes_are_salted_per_cohort_and_the_salt_stays_in_the_map(mini, tmp_path):
    import pydicom

    from npcai.cohort.ingest import ingest

    ingest(mini / "dicom", clinical=mini / "clinical.csv", out=tmp_path / "a")
    ingest(mini / "dicom", clinical=mini / "clinical.csv", out=tmp_path / "b")
    ds = pydicom.dcmread(next((mini / "dicom" / "H100").rglob("*.dcm")))
    a, b = Cohort.load(tmp_path / "a"), Cohort.load(tmp_path / "b")
    ha = a.scan("P0001_pre_T1c").source["series_uid_hash"]
    assert ha != hashlib.sha256(str(ds.SeriesInstanceUID).encode()).hexdigest()     # not re-linkable
    assert ha != b.scan("P0001_pre_T1c").source["series_uid_hash"]                  # a salt per cohort
    salt = load_pseudonym_map(pseudonym_map_path(tmp_path / "a")).salt
    assert len(salt) == 32 and ha == hash_uid(str(ds.SeriesInstanceUID), salt)     # the map holder can
    assert a.scan("P0001_pre_T1c").source["study_uid_hash"] == hash_uid(str(ds.StudyInstanceUID), salt)
    for f in (tmp_path / "a").rglob("*"):
        if f.is_file():
            assert salt.encode() not in f.read_bytes(), f
    # re-ingesting with the map keeps the salt, so the hashes stay comparable
    ingest(mini / "dicom", clinical=mini / "clinical.csv", out=tmp_path / "c",
           pseudonyms=pseudonym_map_path(tmp_path / "a"))
    assert Cohort.load(tmp_path / "c").scan("P0001_pre_T1c").source["series_uid_hash"] == ha


def test_reingest_with_the_map_keeps_every_pseudonym_and_appends_new_patients(cli, mini, tmp_path):
    r = cli("ingest", mini / "dicom", "--clinical", mini / "clinical.csv", "--out", tmp_path / "v1")
    assert r.code == 0, r
    first = _pmap(tmp_path / "v1")
    assert first == {"H100": "P0001", "H101": "P0002", "H102": "P0003", "H103": "P0004"}
    df = pd.read_csv(mini / "clinical.csv", dtype=str)
    df[df["hospital_id"] != "H101"].to_csv(tmp_path / "fewer.csv", index=False)    # one patient removed
    r = cli("ingest", mini / "dicom", "--clinical", tmp_path / "fewer.csv", "--out", tmp_path / "v2",
            "--pseudonyms", pseudonym_map_path(tmp_path / "v1"))
    assert r.code == 0, r
    ids = Cohort.load(tmp_path / "v2").patient_ids
    assert ids == ["P0001", "P0003", "P0004"]                 # nobody renamed
    second = _pmap(tmp_path / "v2")
    assert second == first                                    # the map keeps the removed patient's row
    # a new patient gets the next number, never a number used before
    exp = tmp_path / "exp"
    shutil.copytree(mini, exp)
    h.write_series(exp / "dicom" / "H099" / "pre" / "s1", h.blob_volume((2, 16, 16)), patient_id="H099")
    df2 = pd.concat([df, df.iloc[[0]].assign(hospital_id="H099")])
    df2.to_csv(exp / "clinical.csv", index=False)
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", tmp_path / "v3",
            "--pseudonyms", pseudonym_map_path(tmp_path / "v2"))
    assert r.code == 0, r
    third = _pmap(tmp_path / "v3")
    assert third == {**first, "H099": "P0005"}
    # without the map, ranks would have renamed every patient after H099 (the defect)
    assert assign_pseudonyms(["H099", *first])["H100"] == "P0002"


def test_the_map_lies_beside_the_outermost_npcai_output(tmp_path):
    assert pseudonym_map_path(tmp_path / "cohort") == tmp_path.resolve() / "cohort.pseudonyms.csv"
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.yaml").write_text("name: x\n")
    assert pseudonym_map_path(study / "cohort") == tmp_path.resolve() / "study.cohort.pseudonyms.csv"


# ------------------------------------------------------------------ smaller ingest defects
def test_semicolon_separated_csv_gets_a_separator_hint(cli, mini, tmp_path):
    table = tmp_path / "clinical.csv"
    table.write_text((mini / "clinical.csv").read_text().replace(",", ";"))
    line = _error_line(cli("ingest", mini / "dicom", "--clinical", table, "--out", tmp_path / "a"))
    assert "separated by semicolons, not commas" in line


def test_hospital_ids_with_surrounding_spaces_are_trimmed_and_matched(cli, mini, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(mini, exp)
    shutil.rmtree(exp / "dicom" / "H103")
    h.write_series(exp / "dicom" / "H103" / "pre" / "s1", h.blob_volume((2, 16, 16)), patient_id=" H103 ")
    text = (mini / "clinical.csv").read_text().splitlines()
    rows = [text[0], *(f'" {ln.split(",", 1)[0]} ",{ln.split(",", 1)[1]}' if i % 2 else f" {ln}"
                       for i, ln in enumerate(text[1:]))]
    (exp / "clinical.csv").write_text("\n".join(rows) + "\n")
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", tmp_path / "c", "--keep-ids")
    assert r.code == 0, r
    assert Cohort.load(tmp_path / "c").patient_ids == ["P0001", "P0002", "P0003", "P0004"]
    assert list(pd.read_csv(tmp_path / "c" / "clinical.csv")["hospital_id"]) == ["H100", "H101", "H102", "H103"]


def test_ingest_export_uses_its_contours_folder_and_says_so(cli, mini, tmp_path):
    r = cli("ingest", mini, "--clinical", mini / "clinical.csv", "--out", tmp_path / "c")
    assert r.code == 0, r
    assert "contours" in r.stdout and "found in the export" in r.stdout
    assert all(s.mask for s in Cohort.load(tmp_path / "c").scans())
