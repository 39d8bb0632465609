"""The direct DICOM pixel reader gives the voxels, pixel type and geometry SimpleITK's ImageSeriesReader gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from npcai.cohort.dicom_series import SequenceMap, discover_series, read_series, read_series_pixels

sitk = pytest.importorskip("SimpleITK")


def _sitk_series(files: list[Path]):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in files])
    return reader.Execute()


def _assert_same(image, reference) -> None:
    """Same voxels and pixel type, same spacing, origin and direction."""
    assert image.GetPixelID() == reference.GetPixelID(), (image.GetPixelIDTypeAsString(),
                                                          reference.GetPixelIDTypeAsString())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=1e-9)


def test_phantom_series_read_directly_match_image_series_reader(small_export):
    series, _, _ = discover_series(small_export / "dicom")
    assert series
    for s in series:
        assert s.pixel_layout is not None, s.name            # the phantom takes the direct path
        _assert_same(read_series(s), _sitk_series(s.files))


def _write(folder: Path, volume: np.ndarray, *, bits_allocated: int = 16, bits_stored: int = 16, signed: bool = True,
           slope=None, intercept=None, implicit: bool = False, photometric: str = "MONOCHROME2") -> list[Path]:
    """A 3-slice series storing ``volume`` (z, y, x) raw, in the given pixel format."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    stored = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    series_uid, study_uid = generate_uid(), generate_uid()
    paths = []
    for k in range(volume.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientID = "H1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SeriesDescription = "T2 ax"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-10.0, -12.5, 4.0 + 2.5 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.7, 0.9]
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
        ds.PixelRepresentation = int(signed)
        if slope is not None:
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = np.ascontiguousarray(volume[k]).astype(stored).tobytes()
        path = folder / f"{k + 1}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


_FORMATS = [  # bits allocated, bits stored, signed, slope, intercept, implicit VR
    (16, 16, True, None, None, False),
    (16, 16, True, 1, 0, True),
    (16, 12, False, None, None, False),         # the common MR layout; garbage above bit 11 is masked
    (16, 12, True, None, None, False),          # sign bit 11 repeated into the upper bits
    (16, 12, False, 1, -1024, False),           # CT: int16 after rescale
    (16, 16, False, 1, -1024, False),           # uint16 over 16 bits: int32 after rescale
    (16, 16, True, 2, 5, True),
    (16, 12, False, -1, 0, False),
    (8, 8, False, None, None, False),
    (8, 8, True, 1, -1024, False),
    (16, 10, True, 2, 5, True),
    (16, 15, False, 1, -1, False),
    (16, 8, False, None, None, False),          # identity keeps the stored type (uint16, not uint8)
    (32, 32, True, None, None, False),
    (32, 32, False, 1, 0, False),
]


@pytest.mark.parametrize("fmt", _FORMATS, ids=lambda f: "-".join(map(str, f)))
def test_direct_read_matches_image_series_reader(tmp_path, fmt):
    bits_allocated, bits_stored, signed, slope, intercept, implicit = fmt
    rng = np.random.default_rng(bits_stored)
    info = np.iinfo(np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}"))
    volume = rng.integers(info.min, info.max, size=(3, 6, 5), endpoint=True, dtype=np.int64)  # upper bits too
    files = _write(tmp_path / "dicom" / "s", volume, bits_allocated=bits_allocated, bits_stored=bits_stored,
                   signed=signed, slope=slope, intercept=intercept, implicit=implicit)
    series, _, _ = discover_series(tmp_path / "dicom", sequence_map=SequenceMap({"T2": "t2"}))
    (s,) = series
    assert s.pixel_layout is not None
    assert read_series_pixels(s) is not None
    _assert_same(read_series(s), _sitk_series(files))


@pytest.mark.parametrize("kw", [{"photometric": "MONOCHROME1", "signed": False, "bits_stored": 12},
                                {"slope": 0.5, "intercept": 0.25}, {"slope": 1, "intercept": 0.5},
                                {"bits_allocated": 32, "bits_stored": 32, "slope": 1, "intercept": -5},
                                {"bits_allocated": 32, "bits_stored": 24, "signed": True}])
def test_other_layouts_are_read_by_simpleitk(tmp_path, kw):
    """Inverted greyscale, fractional rescales and floating-point results go through ImageSeriesReader."""
    volume = np.arange(3 * 6 * 5).reshape(3, 6, 5)
    files = _write(tmp_path / "dicom" / "s", volume, **kw)
    (s,), _, _ = discover_series(tmp_path / "dicom", sequence_map=SequenceMap({"T2": "t2"}))
    assert s.pixel_layout is None and read_series_pixels(s) is None
    _assert_same(read_series(s), _sitk_series(files))


def test_a_file_changed_after_the_scan_is_read_by_simpleitk(tmp_path):
    """The pixel data element is checked where the scan found it; if it moved, SimpleITK reads the series."""
    volume = np.arange(3 * 6 * 5).reshape(3, 6, 5)
    files = _write(tmp_path / "dicom" / "s", volume)
    (s,), _, _ = discover_series(tmp_path / "dicom", sequence_map=SequenceMap({"T2": "t2"}))
    import pydicom

    ds = pydicom.dcmread(files[1])
    ds.ImageComments = "written after the scan: the pixel data moved"
    ds.save_as(files[1])
    assert read_series_pixels(s) is None
    _assert_same(read_series(s), _sitk_series(files))
