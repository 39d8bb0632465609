"""Contour label maps: grids, physical space, empty contours, NRRD, naming."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
import ingest_helpers as h  # noqa: E402

from npcai.cohort.contours import align_label_map, parse_volume_name  # noqa: E402
from npcai.cohort.model import Cohort, pseudonym_map_path  # noqa: E402
from npcai.errors import NpcaiError  # noqa: E402

SPACING, ORIGIN = (0.8, 0.8, 3.0), (-25.0, -25.0, 10.0)


@pytest.fixture
def export(tmp_path) -> Path:
    return h.mini_export(tmp_path / "export", n_patients=2, post=False)


def _ingest(cli, exp: Path, out: Path, *extra):
    return cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--contours", exp / "contours",
               "--out", out, *extra)


def _assert_nothing_written(out: Path):
    assert not out.exists() and not pseudonym_map_path(out).exists()
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def test_contour_on_another_grid_same_extent_is_resampled(export, tmp_path, cli):
    # the same 25.6 x 25.6 mm extent at half the in-plane resolution
    coarse = h.blob_mask((4, 16, 16))
    origin = (ORIGIN[0] + 0.4, ORIGIN[1] + 0.4, ORIGIN[2])      # voxel centres of a 1.6 mm grid
    h.write_label(export / "contours" / "H100_pre_T1c.nii.gz", coarse, (1.6, 1.6, 3.0), origin)
    r = _ingest(cli, export, tmp_path / "c")
    assert r.code == 0, r
    c = Cohort.load(tmp_path / "c")
    scan = c.scan("P0001_pre_T1c")
    assert scan.source["contour"]["resampled"] is True
    mask = c.read_mask(scan)
    assert mask.shape == (4, 32, 32)
    np.testing.assert_array_equal(mask, np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2))


def test_contour_on_the_wrong_grid_is_refused(export, tmp_path, cli):
    # drawn on another scan: same matrix, but shifted 20 mm and half the field of view
    h.write_label(export / "contours" / "H101_pre_T1c.nii.gz", h.blob_mask(), (0.4, 0.4, 3.0),
                  (ORIGIN[0] + 20, ORIGIN[1], ORIGIN[2]))
    out = tmp_path / "c"
    r = _ingest(cli, export, out)
    assert r.code == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "H101_pre_T1c.nii.gz" in line and "another physical space" in line
    _assert_nothing_written(out)


def test_empty_contour_is_refused(export, tmp_path, cli):
    h.write_label(export / "contours" / "H100_pre_T1c.nii.gz", np.zeros((4, 32, 32), np.uint8), SPACING, ORIGIN)
    out = tmp_path / "c"
    r = _ingest(cli, export, out)
    assert r.code == 2
    assert "H100_pre_T1c.nii.gz: empty contour" in r.stderr
    _assert_nothing_written(out)


def test_unknown_label_values_are_refused(export, tmp_path, cli):
    m = h.blob_mask()
    m[m == 2] = 7
    h.write_label(export / "contours" / "H100_pre_T1c.nii.gz", m, SPACING, ORIGIN)
    r = _ingest(cli, export, tmp_path / "c")
    assert r.code == 2 and "label values [7]" in r.stderr


def test_nrrd_contour_without_timepoint_and_unmatched_files(export, tmp_path, cli):
    (export / "contours" / "H100_pre_T1c.nii.gz").unlink()
    h.write_label(export / "contours" / "H100_T1c.nrrd", h.blob_mask(), SPACING, ORIGIN)
    h.write_label(export / "contours" / "H555_pre_T1c.nii.gz", h.blob_mask(), SPACING, ORIGIN)
    (export / "contours" / "notes_about_contours.nii.gz").write_bytes(b"")
    r = _ingest(cli, export, tmp_path / "c")
    assert r.code == 0, r
    assert "H555_pre_T1c.nii.gz" in r.stderr and "notes_about_contours.nii.gz" in r.stderr
    c = Cohort.load(tmp_path / "c")
    assert c.scan("P0001_pre_T1c").source["contour"]["kind"] == "label_map"
    np.testing.assert_array_equal(c.read_mask(c.scan("P0001_pre_T1c")), h.blob_mask())


def test_time_pointed_contour_name_wins_over_the_implied_pre(export, tmp_path, cli):
    """H100_T1c (timepoint implied: pre) and H100_pre_T1c claim one scan: the explicitly
    time-pointed file is used, and one info line says which file was used and which ignored."""
    other = h.blob_mask()
    other[1:] = 0
    other[1, 10:20, 10:20] = 1                                  # a different contour in the implied-pre file
    h.write_label(export / "contours" / "H100_T1c.nii.gz", other, SPACING, ORIGIN)
    r = _ingest(cli, export, tmp_path / "c")
    assert r.code == 0, r
    text = " ".join(r.stderr.split())                          # the console wraps long lines
    assert text.count("explicitly time-pointed name wins") == 1
    assert "using H100_pre_T1c.nii.gz, ignoring H100_T1c.nii.gz" in text
    c = Cohort.load(tmp_path / "c")
    np.testing.assert_array_equal(c.read_mask(c.scan("P0001_pre_T1c")), h.blob_mask())
    assert "H100" not in (tmp_path / "c" / "cohort.json").read_text()


def test_two_contours_with_the_same_name_pattern_are_still_refused(export, tmp_path, cli):
    h.write_label(export / "contours" / "H100_pre_T1c.nrrd", h.blob_mask(), SPACING, ORIGIN)
    r = _ingest(cli, export, tmp_path / "c")
    assert r.code == 2 and "both claim H100 pre T1c" in r.stderr
    _assert_nothing_written(tmp_path / "c")


def test_parse_volume_name():
    assert parse_volume_name("H_01_post_T2.nrrd") == ("H_01", "post", "T2")
    assert parse_volume_name("abc_t1c.nii") == ("abc", "pre", "T1c")
    assert parse_volume_name("abc_DWI.nii.gz") is None
    assert parse_volume_name("abc_T1c.png") is None


def test_align_label_map_copies_exact_image_geometry():
    img = sitk.Image(10, 10, 2, sitk.sitkInt16)
    img.SetSpacing((0.5, 0.5, 4.0))
    lab = sitk.Image(10, 10, 2, sitk.sitkUInt8)
    lab.SetSpacing((0.5 + 1e-6, 0.5, 4.0))
    lab[5, 5, 1] = 1
    out = align_label_map(lab, img, "x")
    assert out.GetSpacing() == img.GetSpacing() and sitk.GetArrayFromImage(out)[1, 5, 5] == 1
    far = sitk.Image(10, 10, 2, sitk.sitkUInt8)
    far.SetOrigin((0.0, 0.0, 50.0))
    with pytest.raises(NpcaiError, match="another physical space"):
        align_label_map(far, img, "far.nii.gz")


def test_images_mode_with_volumes_and_contours(tmp_path, cli):
    imgs, cons = tmp_path / "images", tmp_path / "contours"
    for hid in ("A1", "A2"):
        vol = sitk.GetImageFromArray(h.blob_volume().astype(np.float32))
        vol.SetSpacing(SPACING)
        vol.SetOrigin(ORIGIN)
        imgs.mkdir(exist_ok=True)
        sitk.WriteImage(vol, str(imgs / f"{hid}_T2.nii.gz"))
        h.write_label(cons / f"{hid}_T2.nii.gz", h.blob_mask(), SPACING, ORIGIN)
    shutil.copy(imgs / "A1_T2.nii.gz", imgs / "A1_post_T2.nii.gz")
    (tmp_path / "ids.csv").write_text("hospital_id\nA1\nA2\n")
    out = tmp_path / "c"
    r = cli("ingest", "--images", imgs, "--contours", cons, "--clinical", tmp_path / "ids.csv", "--out", out)
    assert r.code == 0, r
    c = Cohort.load(out)
    assert sorted(s.scan_id for s in c.scans()) == ["P0001_post_T2", "P0001_pre_T2", "P0002_pre_T2"]
    assert c.modality == "MR" and c.endpoints == []
    assert c.scan("P0001_post_T2").mask is None and c.scan("P0002_pre_T2").mask is not None
    assert "1 scan(s) have no contour: P0001_post_T2" in r.stderr
