"""RTSTRUCT contours: a phantom patient round-trips through rt-utils, and pydicom's real RTSTRUCT."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from npcai.cohort.deidentify import load_pseudonym_map
from npcai.cohort.ingest import ingest
from npcai.cohort.model import Cohort
from npcai.cohort.rtstruct import load_roi_map, rasterise_rtstruct, roi_label, roi_names


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def rt_export(tmp_path_factory) -> tuple[Path, np.ndarray, str]:
    """Phantom patients (128 px) with an RTSTRUCT built by rt-utils from each NIfTI contour."""
    from rt_utils import RTStructBuilder

    from npcai.cohort.phantom import generate_phantom

    src = tmp_path_factory.mktemp("rt") / "phantom"
    generate_phantom(src, patients=2, size=128, slices=4, seed=3, sequences=("T1c",), post=False)
    exp = src.parent / "export"
    shutil.copytree(src / "dicom", exp / "dicom")
    shutil.copy(src / "clinical.csv", exp / "clinical.csv")
    first = None
    for series_dir in sorted({p.parent for p in (exp / "dicom").rglob("*.dcm")}):
        hid = pydicom.dcmread(next(series_dir.glob("*.dcm")), stop_before_pixels=True).PatientID
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(src / "contours" / f"{hid}_pre_T1c.nii.gz")))
        rt = RTStructBuilder.create_new(dicom_series_path=str(series_dir))
        # rt-utils masks are (rows, cols, slices) in ascending slice position = our (z, y, x) transposed
        rt.add_roi(mask=np.transpose(label == 1, (1, 2, 0)), name="GTVnx")
        if (label == 2).any():
            rt.add_roi(mask=np.transpose(label == 2, (1, 2, 0)), name="GTVnd")
        rt.add_roi(mask=np.transpose(label > 0, (1, 2, 0)), name="BODY-ish")
        rt_dir = exp / "dicom" / hid / "RTSTRUCT"
        rt_dir.mkdir()
        rt.save(str(rt_dir / "RS.dcm"))
        if first is None:
            first = (label, hid)
    return exp, first[0], first[1]


def test_rtstruct_roundtrip_matches_nifti_contour(rt_export, tmp_path):
    exp, label, hid = rt_export
    out = tmp_path / "cohort"
    report = ingest(exp / "dicom", clinical=exp / "clinical.csv", out=out)
    assert report["masks"] == report["scans"] == 2
    c = Cohort.load(out)
    pmap = load_pseudonym_map(out.parent / "cohort.pseudonyms.csv").pseudonyms
    scan = c.scan(f"{pmap[hid]}_pre_T1c")
    assert scan.source["contour"]["kind"] == "rtstruct"
    mask = c.read_mask(scan)
    for value in (1, 2):
        if (label == value).any():
            d = _dice(mask == value, label == value)
            assert d > 0.95, (value, d)
    assert scan.mask_stats["slices_tumour"] == int((label == 1).any(axis=(1, 2)).sum())


def test_custom_roi_map(rt_export, tmp_path):
    exp, label, hid = rt_export
    (tmp_path / "roi.yaml").write_text("1: [body-ISH]\n")
    ingest(exp / "dicom", clinical=exp / "clinical.csv", out=tmp_path / "c", roi_map=tmp_path / "roi.yaml")
    c = Cohort.load(tmp_path / "c")
    pmap = load_pseudonym_map(tmp_path / "c.pseudonyms.csv").pseudonyms
    mask = c.read_mask(c.scan(f"{pmap[hid]}_pre_T1c"))
    assert set(np.unique(mask)) == {0, 1}
    assert _dice(mask == 1, label > 0) > 0.95


def test_rtstruct_without_matching_roi_names_the_rois(rt_export, tmp_path, cli):
    exp, _, _ = rt_export
    (tmp_path / "roi.yaml").write_text("2: [PTV70]\n")
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--out", tmp_path / "c",
            "--roi-map", tmp_path / "roi.yaml")
    assert r.code == 2
    assert "no ROI matches the ROI map" in r.stderr and "'GTVnx'" in r.stderr and "RS.dcm" in r.stderr
    assert not (tmp_path / "c").exists()


def test_real_pydicom_rtstruct_is_read_and_rasterised():
    """pydicom's bundled rtstruct.dcm: a 400 x 300 mm 'patient' rectangle on three planes."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtstruct.dcm")
    assert roi_names(path) == {1: "patient", 2: "Isocenter 1", 3: "Isocenter 2"}
    with pytest.raises(Exception, match="no ROI matches"):
        rasterise_rtstruct(path, sitk.Image(8, 8, 3, sitk.sitkUInt8))
    # a 5 mm grid covering the contours (x, y in -250..250, z = -200, -190, -180)
    grid = sitk.Image(101, 101, 3, sitk.sitkInt16)
    grid.SetSpacing((5.0, 5.0, 10.0))
    grid.SetOrigin((-250.0, -250.0, -200.0))
    mask = sitk.GetArrayFromImage(rasterise_rtstruct(path, grid, {"patient": 1}))
    area_mm2 = (mask == 1).sum(axis=(1, 2)) * 25.0
    # filled polygon plus its outline: between the exact area and one pixel ring more
    assert np.all(area_mm2 >= 400 * 300) and np.all(area_mm2 <= 405 * 305 + 25 * 4), area_mm2


def test_roi_map_parsing(tmp_path):
    assert roi_label("gtv-t", load_roi_map(None)) == 1 and roi_label("GTV_N", load_roi_map(None)) == 2
    assert roi_label("PTV", load_roi_map(None)) is None
    (tmp_path / "m.yaml").write_text("GTV1: 1\nLN: 2\n")
    assert load_roi_map(tmp_path / "m.yaml") == {"GTV1": 1, "LN": 2}
    (tmp_path / "bad.yaml").write_text("3: [x]\n")
    with pytest.raises(Exception, match="not 1 \\(tumour\\) or 2"):
        load_roi_map(tmp_path / "bad.yaml")
