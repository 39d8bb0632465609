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


def _save_json(cohort: Path, data: dict) -> None:
    (cohort / "cohort.json").write_text(json.dumps(data, indent=1))


def test_sound_phantom_has_no_warnings(small_cohort):
    assert validate_cohort(small_cohort).warnings == []


def test_identical_pixel_data_under_two_timepoints_is_a_warning(cohort, cli):
    """The issue's real cohort: byte-identical scans under two names (equal sha256 in cohort.json)
    and, caught by comparing voxels, the same array written with another header."""
    data = json.loads((cohort / "cohort.json").read_text())
    by_id = {s["scan_id"]: s for p in data["patients"] for s in p["scans"]}
    pre, post = by_id["P0003_pre_T1c"], by_id["P0003_post_T1c"]
    shutil.copy(cohort / pre["image"], cohort / post["image"])          # byte-identical
    post.update(size=pre["size"], spacing=pre["spacing"], origin=pre["origin"], direction=pre["direction"],
                image_sha256=pre["image_sha256"])
    img = sitk.ReadImage(str(cohort / by_id["P0005_pre_T1c"]["image"]))  # same voxels, other file bytes
    img.SetMetaData("ITK_FileNotes", "second export")                  # (the NIfTI header's descrip)
    target = by_id["P0005_post_T1c"]
    sitk.WriteImage(img, str(cohort / target["image"]), useCompression=True)
    from npcai.fsutil import file_sha256

    target.update(size=list(img.GetSize()), spacing=list(img.GetSpacing()), origin=list(img.GetOrigin()),
                  direction=list(img.GetDirection()), image_sha256=file_sha256(cohort / target["image"]))
    _save_json(cohort, data)
    result = validate_cohort(cohort)
    assert result.ok, result.problems                                    # files are consistent: a warning
    (line,) = [w for w in result.warnings if w.startswith("identical pixel data")]
    assert "for 2 of 16 patient(s): P0003 (pre T1c = post T1c), P0005 (pre T1c = post T1c)" in line
    assert "drop or fix the duplicate" in line
    # without re-hashing, the equal SHA-256 in cohort.json is still caught (the array copy is not)
    fast = validate_cohort(cohort, check_hashes=False)
    assert any("for 1 of 16 patient(s): P0003 (pre T1c = post T1c)" in w for w in fast.warnings), fast.warnings
    r = cli("validate", cohort)
    assert r.code == 0, r
    assert "warning: identical pixel data" in r.stderr.replace("\n", " ")
    assert "check the 1 warning(s)" in r.stdout and "cohort is sound" not in r.stdout


def test_same_scan_under_two_patients_is_a_warning(cohort):
    data = json.loads((cohort / "cohort.json").read_text())
    a, b = data["patients"][0]["scans"][0], data["patients"][1]["scans"][0]
    b["image_sha256"] = a["image_sha256"]
    _save_json(cohort, data)
    warnings = validate_cohort(cohort, check_hashes=False).warnings
    assert any(w.startswith("identical pixel data under two patients") and f"{a['scan_id']} = {b['scan_id']}" in w
               for w in warnings), warnings


def test_missing_sequences_and_masks_are_counted(cohort):
    data = json.loads((cohort / "cohort.json").read_text())
    for p in data["patients"][:3]:                                       # P0001-P0003 lose their post scan
        p["scans"] = [s for s in p["scans"] if s["timepoint"] != "post"]
    for p in data["patients"][3:5]:                                      # P0004-P0005 lose their pre mask
        for s in p["scans"]:
            if s["timepoint"] == "pre":
                s["mask"], s["mask_stats"] = None, {}
    _save_json(cohort, data)
    warnings = validate_cohort(cohort, check_hashes=False).warnings
    assert ("sequence T1c (post-treatment) is missing for 3 of 16 patients: P0001, P0002, P0003; "
            "runs using T1c (post) will leave them out") in warnings
    assert any(w.startswith("2 of 16 pre-treatment T1c scans have no manual mask: P0004_pre_T1c, P0005_pre_T1c")
               for w in warnings), warnings


def test_assumed_default_and_missing_spacing(cohort):
    data = json.loads((cohort / "cohort.json").read_text())
    scans = [s for p in data["patients"] for s in p["scans"]]
    scans[0]["source"]["spacing_assumed"] = True
    for s in scans[1:3]:                                                 # NIfTI files read without spacing
        s["source"] = {"kind": "volume", "format": "nifti"}
        img = sitk.ReadImage(str(cohort / s["image"]))
        img.SetSpacing((1.0, 1.0, 1.0))
        sitk.WriteImage(img, str(cohort / s["image"]), useCompression=True)
        s["spacing"] = [1.0, 1.0, 1.0]
    scans[3]["spacing"] = [0.0, 0.5, 3.0]
    _save_json(cohort, data)
    result = validate_cohort(cohort, check_hashes=False)
    text = "\n".join(result.warnings)
    assert f"spacing assumed at ingest (not in the files) for 1 scan(s): {scans[0]['scan_id']}" in text
    assert (f"spacing exactly 1 x 1 x 1 mm for 2 scan(s) read from NIfTI/NRRD files: {scans[1]['scan_id']}, "
            f"{scans[2]['scan_id']}") in text
    assert [p for p in result.problems if "spacing" in p] == [
        f"{scans[3]['scan_id']}: spacing [0.0, 0.5, 3.0] in cohort.json is missing or not positive; "
        "re-export the series with its pixel spacing and re-run `npcai ingest`"]
