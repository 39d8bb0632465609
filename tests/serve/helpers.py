"""Building upload zips from a phantom export for the serve tests and benchmark."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

CLINICAL = {"age": 52, "t_stage": 3, "n_stage": 1, "treatment": "CCRT"}


def patient_files(export: Path, hospital_id: str) -> list[Path]:
    """Every DICOM file of one phantom patient (pre and post studies)."""
    return sorted((Path(export) / "dicom" / hospital_id).rglob("*.dcm"))


def patient_zip(export: Path, hospital_id: str, *, contour_inside: bool = False, extra: dict | None = None) -> bytes:
    """A zip of one patient's DICOM folder as a hospital would send it (folders named by hospital id)."""
    export = Path(export)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in patient_files(export, hospital_id):
            zf.write(p, p.relative_to(export / "dicom"))
        if contour_inside:
            c = export / "contours" / f"{hospital_id}_pre_T1c.nii.gz"
            zf.write(c, f"{hospital_id}/contours/{c.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def contour_bytes(export: Path, hospital_id: str) -> bytes:
    return (Path(export) / "contours" / f"{hospital_id}_pre_T1c.nii.gz").read_bytes()


def identifiers(export: Path, hospital_id: str) -> list[str]:
    """The phantom patient's DICOM identifiers, as they would appear in text."""
    import pydicom

    ds = pydicom.dcmread(patient_files(export, hospital_id)[0], stop_before_pixels=True)
    name = str(ds.PatientName)
    out = {str(ds.PatientID), name, str(ds.PatientBirthDate)}
    out |= {part for part in name.replace("^", " ").split() if len(part) >= 4}
    return sorted(v for v in out if v)


def post(client, patient: dict, *, clinical=None, zip_bytes=None, contour=True, query: str = ""):
    files = {"images": ("patient.zip", patient["zip"] if zip_bytes is None else zip_bytes, "application/zip")}
    if contour:
        files["contour"] = ("contour.nii.gz", patient["contour"] if contour is True else contour)
    return client.post(f"/api/predict{query}", files=files,
                       data={"clinical": json.dumps(CLINICAL if clinical is None else clinical)})
