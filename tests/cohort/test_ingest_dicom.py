"""Ingest of DICOM series: ordering, geometry, timepoints, sequences and bad series."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import ingest_helpers as h  # noqa: E402

from npcai.cohort.dicom_series import SequenceMap  # noqa: E402
from npcai.cohort.ingest import ingest  # noqa: E402
from npcai.cohort.model import Cohort, pseudonym_map_path  # noqa: E402


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    return h.mini_export(tmp_path_factory.mktemp("mini") / "export")


def _copy(mini: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "export"
    shutil.copytree(mini, dst)
    return dst


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not pseudonym_map_path(out).exists()
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def test_mini_export_ingests_in_slice_order_with_pseudonyms(mini, tmp_path):
    out = tmp_path / "cohort"
    report = ingest(mini / "dicom", clinical=mini / "clinical.csv", out=out, contours=mini / "contours")
    assert (report["patients"], report["scans"], report["masks"]) == (3, 6, 6)
    assert report["scans_per_group"] == {"pre T1c": 3, "post T1c": 3}
    c = Cohort.load(out)
    assert c.patient_ids == ["P0001", "P0002", "P0003"]
    scan = c.scan("P0002_post_T1c")
    # files were numbered in reverse order: the volume must still come out in z order
    np.testing.assert_array_equal(c.read_array(scan), h.blob_volume(seed=1))
    assert scan.spacing == pytest.approx([0.8, 0.8, 3.0])
    assert scan.origin == pytest.approx([-25.0, -25.0, 10.0])
    np.testing.assert_array_equal(c.read_mask(scan), h.blob_mask())
    m = h.blob_mask()
    assert scan.mask_stats["slices_tumour"] == int((m == 1).any(axis=(1, 2)).sum())
    assert scan.mask_stats["volume_nodes_ml"] == pytest.approx((m == 2).sum() * 0.8 * 0.8 * 3.0 / 1000, abs=1e-4)
    assert len(scan.source["series_uid_hash"]) == 64
    clin = c.clinical()
    assert "hospital_id" not in clin.reset_index().columns
    assert clin.loc["P0003", "t_stage"] == 3 and clin.loc["P0001", "pfs_months"] == 10.5
    assert c.endpoints == [col for col in clin.columns]
    pmap = pd.read_csv(pseudonym_map_path(out), dtype=str)
    assert dict(zip(pmap.patient_id, pmap.hospital_id)) == {"P0001": "H100", "P0002": "H101", "P0003": "H102"}
    assert "phantom_truth" not in c.source


def test_keep_ids_keeps_hospital_id_column(mini, tmp_path, cli):
    out = tmp_path / "cohort"
    r = cli("ingest", mini / "dicom", "--clinical", mini / "clinical.csv", "--out", out, "--keep-ids")
    assert r.code == 0, r
    clin = pd.read_csv(out / "clinical.csv", dtype=str)
    assert list(clin["hospital_id"]) == ["H100", "H101", "H102"]
    assert Cohort.load(out).scans()[0].mask is None       # no --contours given
    r = cli("validate", out)
    assert r.code == 0, r


def test_sequence_map_yaml_and_unrecognised_series(tmp_path, cli):
    exp = tmp_path / "export"
    h.write_series(exp / "dicom" / "H1" / "a", h.blob_volume(), patient_id="H1", description="AX FLAIR")
    h.write_series(exp / "dicom" / "H1" / "b", h.blob_volume(), patient_id="H1", description="localizer")
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    out = tmp_path / "cohort"
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out)
    assert r.code == 2 and "no MR/CT series with a recognised sequence" in r.stderr
    (tmp_path / "seq.yaml").write_text("T2: 'flair|t2'\nT1: 't1'\n")
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out,
            "--sequence-map", tmp_path / "seq.yaml")
    assert r.code == 0, r
    assert [s.scan_id for s in Cohort.load(out).scans()] == ["P0001_pre_T2"]
    assert "localizer" in r.stderr and "--sequence-map" in r.stderr


def test_default_sequence_map_order():
    m = SequenceMap()
    assert m.classify("T1 SE AX post-contrast") == "T1c"
    assert m.classify("t1_tse_tra") == "T1"
    assert m.classify("T2 FS") == "T2"
    assert m.classify("DWI b1000") is None


def test_two_series_one_sequence_and_timepoint_is_refused(mini, tmp_path, cli):
    exp = _copy(mini, tmp_path)
    h.write_series(exp / "dicom" / "H101" / "pre" / "repeat", h.blob_volume(), patient_id="H101",
                   description="T1C repeat", study_date="20200101")
    out = tmp_path / "cohort"
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out)
    assert r.code == 2
    err = r.stderr.strip().splitlines()[-1]
    assert "H101" in err and "H101/pre/repeat" in err and "H101/pre/s1" in err and "pre T1c" in err
    _nothing_written(out)


def test_missing_slice_is_refused(tmp_path, cli):
    exp = tmp_path / "export"
    h.write_series(exp / "dicom" / "H1" / "s", h.blob_volume((5, 16, 16)), patient_id="H1")
    (exp / "dicom" / "H1" / "s" / "003.dcm").unlink()        # a middle slice
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    out = tmp_path / "cohort"
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out)
    assert r.code == 2
    assert "missing slice(s)" in r.stderr and "series H1/s" in r.stderr
    _nothing_written(out)


def test_duplicate_slice_positions_are_refused(tmp_path, cli):
    exp = tmp_path / "export"
    h.write_series(exp / "dicom" / "H1" / "s", h.blob_volume((3, 16, 16)), patient_id="H1",
                   positions=[0.0, 3.0, 3.0])
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", tmp_path / "cohort")
    assert r.code == 2 and "duplicate slice position 13.00 mm" in r.stderr


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])


def test_truncated_end_slice_is_skipped_with_warning(tmp_path, cli):
    exp = tmp_path / "export"
    files = h.write_series(exp / "dicom" / "H1" / "s", h.blob_volume((5, 16, 16)), patient_id="H1")
    _truncate(files[-1])                                        # the top slice
    (exp / "dicom" / "H1" / "s" / "zz_garbage.dcm").write_bytes(b"not a dicom file at all" * 10)
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    out = tmp_path / "cohort"
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out)
    assert r.code == 0, r
    assert "unreadable" in r.stderr and files[-1].name in r.stderr
    scan = Cohort.load(out).scans()[0]
    assert scan.size[2] == 4 and scan.source["skipped_files"] == 2
    np.testing.assert_array_equal(Cohort.load(out).read_array(scan), h.blob_volume((5, 16, 16))[:4])


def test_truncated_middle_slice_is_an_error(tmp_path, cli):
    exp = tmp_path / "export"
    files = h.write_series(exp / "dicom" / "H1" / "s", h.blob_volume((5, 16, 16)), patient_id="H1")
    _truncate(files[2])
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    out = tmp_path / "cohort"
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", out)
    assert r.code == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "missing slice(s)" in line and "unreadable" in line and files[2].name in line
    _nothing_written(out)


def test_timepoints_follow_study_dates(tmp_path):
    exp = tmp_path / "export"
    # the later study is written first, under a misleading folder name
    h.write_series(exp / "dicom" / "H1" / "a_first", h.blob_volume(seed=5), patient_id="H1", study_date="20210301")
    h.write_series(exp / "dicom" / "H1" / "b_second", h.blob_volume(seed=6), patient_id="H1", study_date="20201224",
                   description="T2 TSE")
    h.write_series(exp / "dicom" / "H1" / "c_third", h.blob_volume(seed=7), patient_id="H1", study_date="20201224")
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    ingest(exp / "dicom", clinical=exp / "clinical.csv", out=tmp_path / "c")
    c = Cohort.load(tmp_path / "c")
    assert sorted(s.scan_id for s in c.scans()) == ["P0001_post_T1c", "P0001_pre_T1c", "P0001_pre_T2"]
    np.testing.assert_array_equal(c.read_array(c.scan("P0001_post_T1c")), h.blob_volume(seed=5))


def test_images_without_clinical_rows_are_excluded_and_listed(mini, tmp_path, caplog):
    exp = _copy(mini, tmp_path)
    (exp / "clinical.csv").write_text("hospital_id,age\nH100,50\nH102,61\nH999,70\n")
    report = ingest(exp / "dicom", clinical=exp / "clinical.csv", out=tmp_path / "c", contours=exp / "contours")
    assert report["images_without_clinical"] == ["H101"]
    assert report["clinical_without_images"] == ["H999"]
    assert "H101" in caplog.text and "H999" in caplog.text
    c = Cohort.load(tmp_path / "c")
    assert c.patient_ids == ["P0001", "P0002"]
    assert list(c.clinical()["age"]) == [50.0, 61.0]


@pytest.mark.parametrize("orientation", [
    (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),                      # sagittal
    (1.0, 0.0, 0.0, 0.0, -1.0, 0.0),                      # axial, normal pointing feet-ward
    (0.866025, 0.5, 0.0, -0.5, 0.866025, 0.0),            # axial rotated 30 degrees in plane
])
def test_non_axial_geometry_maps_voxels_to_dicom_positions(tmp_path, orientation):
    exp = tmp_path / "export"
    vol = h.blob_volume((3, 12, 10))
    files = h.write_series(exp / "dicom" / "H1" / "s", vol, patient_id="H1", orientation=orientation,
                           spacing=(0.7, 0.9, 4.0), origin=(5.0, -7.0, 30.0))
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    ingest(exp / "dicom", clinical=exp / "clinical.csv", out=tmp_path / "c")
    c = Cohort.load(tmp_path / "c")
    scan = c.scans()[0]
    image = c.read_image(scan)
    import pydicom

    for f in files:
        ds = pydicom.dcmread(f)
        k = int(ds.InstanceNumber) - 1                     # the k-th slice of the written volume
        normal = np.cross(orientation[:3], orientation[3:])
        order = np.argsort([float(np.dot(normal, pydicom.dcmread(g).ImagePositionPatient)) for g in files])
        z = int(np.where(order == k)[0][0])
        # voxel (col 0, row 0, slice z) sits at the slice's ImagePositionPatient
        assert image.TransformIndexToPhysicalPoint((0, 0, z)) == pytest.approx([float(v) for v in ds.ImagePositionPatient],
                                                                                abs=1e-3)
        # one column step moves along the row direction cosine by the column spacing
        step = np.subtract(image.TransformIndexToPhysicalPoint((1, 0, z)), image.TransformIndexToPhysicalPoint((0, 0, z)))
        assert step == pytest.approx(np.asarray(orientation[:3]) * float(ds.PixelSpacing[1]), abs=1e-4)
        np.testing.assert_array_equal(c.read_array(scan)[z], vol[k])
