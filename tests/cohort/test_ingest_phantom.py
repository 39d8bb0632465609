"""The phantom export ingests, validates, and leaves no identifier inside the cohort."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from npcai.cohort.model import Cohort, pseudonym_map_path


def _identifiers(export: Path) -> set[str]:
    """Every fake name, birth date, hospital id and study date the phantom export holds."""
    found: set[str] = set()
    for f in (export / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        name = str(ds.PatientName)
        found |= {name, ds.PatientID, ds.PatientBirthDate, ds.StudyDate}
        found |= {part for part in name.replace("^", " ").split() if len(part) >= 4}
        if ds.PatientBirthDate:
            d = ds.PatientBirthDate
            found.add(f"{d[:4]}-{d[4:6]}-{d[6:]}")
    found |= set(pd.read_csv(export / "clinical.csv", dtype=str)["hospital_id"])
    return {s for s in found if s}


def test_no_identifier_reaches_the_cohort(small_export, small_cohort):
    needles = _identifiers(small_export)
    assert len(needles) > 3 * 16          # names, ids, birth dates of 16 patients at least
    blobs = []
    for f in small_cohort.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            if f.name.endswith(".gz"):
                data = gzip.decompress(data)
            blobs.append((f, data))
    assert any(f.name == "cohort.json" for f, _ in blobs) and len(blobs) >= 2 + 2 * 32
    for f, data in blobs:
        text = data.decode("latin-1").lower()
        for needle in needles:
            assert needle.lower() not in text, f"{needle!r} found in {f.relative_to(small_cohort)}"
    # the mapping lives beside the cohort, and maps every pseudonym back
    pmap = pd.read_csv(pseudonym_map_path(small_cohort), dtype=str)
    assert sorted(pmap.patient_id) == Cohort.load(small_cohort).patient_ids
    assert set(pmap.hospital_id) == set(pd.read_csv(small_export / "clinical.csv", dtype=str).hospital_id)


def test_phantom_cohort_content(small_export, small_cohort):
    c = Cohort.load(small_cohort)
    assert len(c.patients) == 16 and c.modality == "MR"
    assert len(c.scans(timepoint="pre", sequence="T1c")) == 16 and len(c.scans(timepoint="post")) == 16
    assert c.source["phantom_truth"] == str((small_export / "truth").resolve())
    assert "pfs_months" in c.endpoints and "hospital_id" not in c.endpoints
    assert all(s.mask and s.mask_stats["slices_tumour"] >= 1 for s in c.scans(timepoint="pre"))
    # pseudonyms follow sorted hospital ids
    pmap = pd.read_csv(pseudonym_map_path(small_cohort), dtype=str).sort_values("patient_id")
    assert list(pmap.hospital_id) == sorted(pmap.hospital_id)
    # voxels equal pydicom's decoded slices, ordered along the normal
    hid = pmap.hospital_id.iloc[0]
    all_files = [pydicom.dcmread(f) for f in (small_export / "dicom" / hid).rglob("*.dcm")]
    first_date = min(d.StudyDate for d in all_files)
    dss = sorted((d for d in all_files if d.StudyDate == first_date),
                 key=lambda d: float(d.ImagePositionPatient[2]))
    expected = np.stack([d.pixel_array * float(d.get("RescaleSlope", 1) or 1) + float(d.get("RescaleIntercept", 0) or 0)
                         for d in dss])
    scan = c.scan("P0001_pre_T1c")
    np.testing.assert_allclose(c.read_array(scan), expected)
    assert scan.spacing[2] == float(dss[1].ImagePositionPatient[2]) - float(dss[0].ImagePositionPatient[2])
    truth_mask = c.read_mask(scan)
    import SimpleITK as sitk

    contour = sitk.GetArrayFromImage(sitk.ReadImage(str(small_export / "contours" / f"{hid}_pre_T1c.nii.gz")))
    np.testing.assert_array_equal(truth_mask, contour)


def test_cli_ingest_then_validate_phantom(small_export, tmp_path, cli):
    out = tmp_path / "cohort"
    r = cli("ingest", small_export / "dicom", "--clinical", small_export / "clinical.csv",
            "--contours", small_export / "contours", "--out", out)
    assert r.code == 0, r
    assert "patients 16, scans 32" in r.stdout
    r = cli("validate", out)
    assert r.code == 0, r
    assert "cohort is sound" in r.stdout and "pfs" in r.stdout and "T1c" in r.stdout
    data = json.loads((out / "cohort.json").read_text())
    assert data["patients"][0]["scans"][0]["scan_id"] == "P0001_pre_T1c"


def test_ingest_records_each_scans_scanner_facts(small_cohort):
    # the phantom's centre i scans on CENTRE_SCANNER[i]: vendor, model and field strength reach cohort.json
    from npcai.cohort.phantom.anatomy import CENTRE_SCANNER
    from npcai.cohort.phantom.clinical import CENTRE_NAMES

    cohort = Cohort.load(small_cohort)
    seen = set()
    for p in cohort.patients:
        want = CENTRE_SCANNER[CENTRE_NAMES.index(p.centre)]
        for s in p.scans:
            assert s.source["scanner"] == {"manufacturer": want["manufacturer"], "model": want["model"],
                                           "field_strength_t": want["tesla"]}
            seen.add(want["manufacturer"])
    assert len(seen) >= 2


def test_scanner_facts_read_tesla_and_old_gauss_values():
    from pydicom.dataset import Dataset

    from npcai.cohort.dicom_series import scanner_facts

    ds = Dataset()
    ds.Manufacturer, ds.MagneticFieldStrength = "Philips Medical Systems", "15000"
    assert scanner_facts(ds) == {"manufacturer": "Philips Medical Systems", "field_strength_t": 1.5}
    assert scanner_facts(Dataset()) == {}
