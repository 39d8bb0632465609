"""Real DICOM files shipped in pydicom's wheel (pydicom.data test files, no network needed)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from npcai.cohort.model import Cohort

DATA = Path(get_testdata_file("MR_small.dcm")).parent


def _export(tmp_path: Path, pairs: list[tuple[Path, str]], ids: list[str]) -> Path:
    exp = tmp_path / "export"
    for src, rel in pairs:
        dst = exp / "dicom" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    (exp / "clinical.csv").write_text("hospital_id\n" + "\n".join(ids) + "\n")
    return exp


def test_real_ct_series_is_ordered_and_rescaled(tmp_path, cli):
    """A real 5-slice CT series (files in descending z) becomes one CT volume in ascending z."""
    files = sorted((DATA / "dicomdirtests" / "98892001" / "CT5N").iterdir())
    exp = _export(tmp_path, [(f, f"pat/ct/{f.name}") for f in files], ["98890234"])
    out = tmp_path / "cohort"
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out)
    assert r.code == 0, r
    c = Cohort.load(out)
    assert c.modality == "CT"
    scan = c.scan("P0001_pre_CT")
    dss = sorted((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    expected = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
    np.testing.assert_array_equal(c.read_array(scan), expected)
    assert scan.spacing == pytest.approx([0.488281, 0.488281, 2.5])
    assert scan.origin == pytest.approx([float(v) for v in dss[0].ImagePositionPatient])
    assert scan.size == [16, 16, 5]


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_real_mr_single_slice_with_sequence_map(tmp_path, cli, name):
    """MR_small in six transfer syntaxes; it has no SeriesDescription, so a sequence map matching
    anything ingests it as T1. Every encoding must give MR_small's pixels."""
    exp = _export(tmp_path, [(DATA / name, "p/mr/1.dcm")], ["4MR1"])
    (tmp_path / "seq.yaml").write_text("T1: '.*'\n")
    out = tmp_path / "cohort"
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out,
            "--sequence-map", tmp_path / "seq.yaml")
    assert r.code == 0, r
    c = Cohort.load(out)
    scan = c.scan("P0001_pre_T1")
    np.testing.assert_array_equal(c.read_array(scan)[0], pydicom.dcmread(DATA / "MR_small.dcm").pixel_array)
    assert scan.spacing == pytest.approx([0.3125, 0.3125, 0.8])          # z from SliceThickness
    text = (out / "cohort.json").read_text() + (out / "clinical.csv").read_text()
    assert "CompressedSamples" not in text and "4MR1" not in text


def test_real_truncated_file_beside_its_sound_series_is_skipped(tmp_path, cli):
    exp = _export(tmp_path, [(DATA / "MR_small.dcm", "p/mr/1.dcm"), (DATA / "MR_truncated.dcm", "p/mr/2.dcm")],
                  ["4MR1"])
    (tmp_path / "seq.yaml").write_text("T1: '.*'\n")
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", tmp_path / "c",
            "--sequence-map", tmp_path / "seq.yaml")
    assert r.code == 0, r
    assert "p/mr/2.dcm" in r.stderr and "unreadable" in r.stderr
    assert Cohort.load(tmp_path / "c").scans()[0].size[2] == 1


def test_real_truncated_file_alone_is_an_error(tmp_path, cli):
    exp = _export(tmp_path, [(DATA / "MR_truncated.dcm", "p/mr/1.dcm")], ["4MR1"])
    (tmp_path / "seq.yaml").write_text("T1: '.*'\n")
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", tmp_path / "c",
            "--sequence-map", tmp_path / "seq.yaml")
    assert r.code == 2
    assert "p/mr: every file of this series is unreadable or truncated" in r.stderr
    assert not (tmp_path / "c").exists()


def test_real_mr_series_with_mixed_orientations_is_refused(tmp_path, cli):
    """pydicom's MR700 series: projections at several orientations in one SeriesInstanceUID."""
    files = sorted((DATA / "dicomdirtests" / "98892003" / "MR700").iterdir())
    exp = _export(tmp_path, [(f, f"pat/angio/{f.name}") for f in files],
                  [str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientID)])
    (tmp_path / "seq.yaml").write_text("T1: 'angio'\n")
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", tmp_path / "c",
            "--sequence-map", tmp_path / "seq.yaml")
    assert r.code == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "series pat/angio" in line and "mixed slice orientations" in line
    assert str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientName) not in line
