"""Write a phantom volume as a DICOM MR series and its contour as an ITK-SNAP-style NIfTI.

Files are MR Image Storage, explicit VR little endian, uint16 pixels, with real geometry
(PixelSpacing, SliceThickness, SpacingBetweenSlices, ImagePositionPatient,
ImageOrientationPatient) so SimpleITK's ImageSeriesReader rebuilds the intended grid.
UIDs are derived from the seed (``pydicom.uid.generate_uid`` with entropy sources), so the
same seed writes byte-identical files; no current date or time appears anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SeriesInfo", "uid", "write_series", "write_contour"]

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1234.1"   # fixed, so files are reproducible


def uid(*parts: object) -> str:
    """A deterministic DICOM UID from ``parts`` (e.g. seed, hospital id, role)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


@dataclass
class SeriesInfo:
    """Everything a series needs besides its pixels."""

    hospital_id: str
    patient_name: str
    birth_date: str              # YYYYMMDD
    sex: str
    age: int
    study_uid: str
    study_date: str              # YYYYMMDD
    study_id: str
    accession: str
    series_uid: str
    frame_uid: str
    series_number: int
    sequence: str                # T1c | T1 | T2
    description: str             # e.g. "AX T1 C+"
    manufacturer: str
    model: str
    tesla: float
    institution: str
    pixel_mm: float
    slice_mm: float
    origin: tuple[float, float, float]
    uid_seed: str


_SEQ_PARAMS = {"T1c": dict(tr=550.0, te=10.0, seq="SE", contrast="GADOLINIUM"),
               "T1": dict(tr=550.0, te=10.0, seq="SE", contrast=None),
               "T2": dict(tr=4000.0, te=90.0, seq="SE", contrast=None)}


def write_series(volume: np.ndarray, info: SeriesInfo, folder: Path) -> list[Path]:
    """Write ``volume`` (z, y, x; non-negative) as one file per slice ``<n>.dcm`` in ``folder``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(np.round(volume), 0, 4095).astype(np.uint16)
    z_count, rows, cols = pixels.shape
    params = _SEQ_PARAMS[info.sequence]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "NPCAI_PHANTOM"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = ""
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = info.study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "093000"
    ds.AccessionNumber = info.accession
    ds.Modality = "MR"
    ds.Manufacturer = info.manufacturer
    ds.InstitutionName = info.institution
    ds.ReferringPhysicianName = "REFERRER^PHANTOM"
    ds.StudyDescription = "MRI NASOPHARYNX"
    ds.SeriesDescription = info.description
    ds.ManufacturerModelName = info.model
    ds.PatientName = info.patient_name
    ds.PatientID = info.hospital_id
    ds.PatientBirthDate = info.birth_date
    ds.PatientSex = info.sex
    ds.PatientAge = f"{info.age:03d}Y"
    ds.BodyPartExamined = "HEADNECK"
    ds.ScanningSequence = params["seq"]
    ds.SequenceVariant = "NONE"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = f"{info.slice_mm:.2f}"
    ds.SpacingBetweenSlices = f"{info.slice_mm:.2f}"
    ds.RepetitionTime = f"{params['tr']:.1f}"
    ds.EchoTime = f"{params['te']:.1f}"
    ds.MagneticFieldStrength = f"{info.tesla:.1f}"
    if params["contrast"]:
        ds.ContrastBolusAgent = params["contrast"]
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    ds.StudyID = info.study_id
    ds.SeriesNumber = info.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = info.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = "0"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [f"{info.pixel_mm:.6f}", f"{info.pixel_mm:.6f}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 600
    ds.WindowWidth = 1200
    paths = []
    for k in range(z_count):          # only the per-slice tags change
        sop_uid = uid(info.uid_seed, info.series_uid, "sop", k)
        meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        z = round(info.origin[2] + k * info.slice_mm, 6)
        ds.ImagePositionPatient = [f"{info.origin[0]:.6f}", f"{info.origin[1]:.6f}", f"{z:.6f}"]
        ds.SliceLocation = f"{z:.6f}"
        ds.PixelData = pixels[k].tobytes()
        path = folder / f"{k + 1}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_contour(labels: np.ndarray, *, pixel_mm: float, slice_mm: float,
                  origin: tuple[float, float, float], path: Path) -> None:
    """Write a uint8 label map (z, y, x) on the series grid as NIfTI (identity direction)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(labels.astype(np.uint8))
    img.SetSpacing((pixel_mm, pixel_mm, slice_mm))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), useCompression=True)
