"""Small hand-made DICOM series, contours and clinical tables for the ingest tests.

Written with pydicom (real tags, real geometry) so the ingest tests do not depend on the
phantom generator for the edge cases they need (gaps, duplicates, corrupt files).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FAKE_NAME = "Doe^Janet"
FAKE_BIRTH = "19580214"


def write_series(folder: Path, volume: np.ndarray, *, patient_id: str, description: str = "T1 post Gd",
                 study_date: str = "20200101", spacing=(0.8, 0.8, 3.0), origin=(-25.0, -25.0, 10.0),
                 series_uid: str | None = None, study_uid: str | None = None, modality: str = "MR",
                 positions: list[float] | None = None, reverse_files: bool = True,
                 frame_uid: str | None = None, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0)) -> list[Path]:
    """Write ``volume`` (z, y, x) int16 as one DICOM series; returns the file paths.

    Slice k lies at ``origin + positions[k] * normal`` (default positions ``k * spacing[2]``).

    Files are numbered in *reverse* slice order by default so ingest must sort by position.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    nz = volume.shape[0]
    zs = positions if positions is not None else [k * spacing[2] for k in range(nz)]
    normal = np.cross(orientation[:3], orientation[3:])
    paths = []
    for k in range(nz):
        meta = FileMetaDataset()
        sop_class = "1.2.840.10008.5.1.4.1.1.4" if modality == "MR" else "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientName = FAKE_NAME
        ds.PatientBirthDate = FAKE_BIRTH
        ds.PatientID = patient_id
        ds.StudyDate = study_date
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin, float) + zs[k] * normal]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.PixelData = np.ascontiguousarray(volume[k].astype(np.int16)).tobytes()
        name = f"{(nz - k) if reverse_files else (k + 1):03d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def blob_volume(shape=(4, 32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    vol = 100 + 10 * z + rng.integers(0, 20, size=shape)
    vol[(y - shape[1] // 2) ** 2 + (x - shape[2] // 2) ** 2 < (shape[1] // 5) ** 2] += 400
    return vol.astype(np.int16)


def blob_mask(shape=(4, 32, 32)) -> np.ndarray:
    z, y, x = np.indices(shape)
    m = np.zeros(shape, np.uint8)
    m[(y - shape[1] // 2) ** 2 + (x - shape[2] // 2) ** 2 < (shape[1] // 5) ** 2] = 1
    m[(y - 6) ** 2 + (x - 6) ** 2 < 9] = 2
    m[0] = 0
    return m


def write_label(path: Path, mask: np.ndarray, spacing, origin) -> Path:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)
    return path


def mini_export(root: Path, n_patients: int = 3, shape=(4, 32, 32), post: bool = True) -> Path:
    """root/dicom/<H..>/..., root/contours/<H..>_<tp>_T1c.nii.gz, root/clinical.csv."""
    spacing, origin = (0.8, 0.8, 3.0), (-25.0, -25.0, 10.0)
    rows = []
    for i in range(n_patients):
        hid = f"H{100 + i}"
        tps = [("pre", "20200101")] + ([("post", "20200601")] if post else [])
        for tp, date in tps:
            write_series(root / "dicom" / hid / tp / "s1", blob_volume(shape, seed=i), patient_id=hid,
                         study_date=date, spacing=spacing, origin=origin)
            write_label(root / "contours" / f"{hid}_{tp}_T1c.nii.gz", blob_mask(shape), spacing, origin)
        rows.append(f"{hid},C{i % 2},{50 + i},M,T{1 + i % 4},N{i % 4},III,CCRT,{10.5 + i},{i % 2},0")
    (root / "clinical.csv").write_text(
        "hospital_id,centre,age,sex,t_stage,n_stage,stage,treatment,pfs_months,pfs_event,distant_metastasis\n"
        + "\n".join(rows) + "\n")
    return root
