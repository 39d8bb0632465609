"""``npcai validate``: a sound cohort passes with a summary; damaged copies fail with reasons."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import SimpleITK as sitk

from npcai.cohort.model import Cohort
from npcai.cohort.validate import cohort_summary, validate_cohort


@pytest.fixture
def cohort(small_cohort, tmp_path) -> Path:
    dst = tmp_path / "cohort"
    shutil.copytree(small_cohort, dst)
    return dst


def test_sound_cohort_summary(small_cohort):
    result = validate_cohort(small_cohort)
    assert result.ok, result.problems
    s = result.summary
    c = Cohort.load(small_cohort)
    assert s.patients == 16
    assert s.scans.loc["T1c"].to_dict() == {"pre": 16, "post": 16}
    pre = s.masks.set_index("timepoint").loc["pre"]
    assert pre.slices_tumour == sum(x.mask_stats["slices_tumour"] for x in c.scans(timepoint="pre"))
    assert pre.slices == 16 * 4
    clin = c.clinical()
    pfs = s.endpoints.set_index("endpoint").loc["pfs"]
    assert pfs.kind == "survival" and pfs.n == 16
    assert pfs.events_or_positive == int(clin.pfs_event.sum())
    assert pfs.censored_or_negative == 16 - int(clin.pfs_event.sum())
    res = s.endpoints.set_index("endpoint").loc["residual_tumour"]
    assert res.kind == "binary" and res.events_or_positive == int(clin.residual_tumour.sum())
    assert cohort_summary(small_cohort, recount_masks=True).masks.equals(s.masks)
    assert json.dumps(s.to_dict(), default=float)


def test_damaged_cohort_lists_every_problem(cohort, cli):
    c = Cohort.load(cohort)
    scans = c.scans()
    (cohort / scans[0].mask).unlink()
    # a mask on another grid
    bad = sitk.Image(10, 10, 2, sitk.sitkUInt8)
    sitk.WriteImage(bad, str(cohort / scans[1].mask))
    # an image replaced by another (header still matches, content differs)
    img = sitk.ReadImage(str(cohort / scans[2].image))
    sitk.WriteImage(img + 1, str(cohort / scans[2].image), useCompression=True)
    clin = pd.read_csv(cohort / "clinical.csv", dtype=str)
    clin.loc[0, "pfs_event"] = "5"
    clin.iloc[1:].assign(hospital_id="X").to_csv(cohort / "clinical.csv", index=False)
    r = cli("validate", cohort)
    assert r.code == 2, r
    err = r.stderr
    assert f"{scans[0].scan_id}: mask {scans[0].mask} is missing" in err
    assert f"{scans[1].scan_id}: mask" in err and "not on its image's grid" in err
    assert f"{scans[2].scan_id}: image" in err and "SHA-256 differs" in err
    assert "clinical.csv: no row for cohort patient(s) P0001" in err
    assert "hospital_id column" in err
    assert "error: " in err and "problem(s) listed above" in err
    assert "16 patients" in r.stdout                      # the summary is still shown


def test_bad_mask_labels_and_bad_clinical_values(cohort):
    c = Cohort.load(cohort)
    s = c.scans()[0]
    m = sitk.ReadImage(str(cohort / s.mask))
    arr = sitk.GetArrayFromImage(m)
    arr[0, 0, 0] = 9
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(m)
    sitk.WriteImage(out, str(cohort / s.mask))
    clin = pd.read_csv(cohort / "clinical.csv", dtype=str)
    clin.loc[3, "pfs_months"] = "-1"
    clin.to_csv(cohort / "clinical.csv", index=False)
    result = validate_cohort(cohort, check_hashes=False)
    assert not result.ok
    text = "\n".join(result.problems)
    assert f"{s.scan_id}: mask {s.mask} has labels [9]" in text
    assert "'pfs_months' has negative time '-1' for patient_id P0004" in text


def test_not_a_cohort(tmp_path, cli):
    r = cli("validate", tmp_path)
    assert r.code == 2 and "not an npcai cohort" in r.stderr
