"""The fast header reader gives exactly what pydicom's ``dcmread(stop_before_pixels=True)`` gives
(elements, values, the pixel data offset and every read the header scan makes), or leaves the
file to pydicom; the header scan's results never depend on which of the two read a file."""
from __future__ import annotations

import os
import pickle
import random
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

sys.path.insert(0, str(Path(__file__).parent))
import test_dicom_series as series_tests  # noqa: E402  (the pixel formats the direct reader handles)

from npcai.cohort import dicom_header  # noqa: E402
from npcai.cohort import dicom_series as ds_mod  # noqa: E402
from npcai.cohort.dicom_header import HeaderDataset, header_dataset, read_image_header  # noqa: E402

# every keyword the header path reads (present or absent in the test files), and some it does not
_KEYWORDS = [
    "Modality", "SeriesInstanceUID", "SOPClassUID", "StudyInstanceUID", "PatientID", "StudyDate",
    "SeriesDescription", "ProtocolName", "FrameOfReferenceUID", "SpacingBetweenSlices", "SliceThickness",
    "MagneticFieldStrength", "Manufacturer", "ManufacturerModelName", "InstanceNumber", "NumberOfFrames", "Rows",
    "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "PixelData",
    "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "ImageType", "WindowCenter", "WindowWidth",
    "ReferencedFrameNumber", "ReferencedImageSequence", "RequestAttributesSequence", "SpecificCharacterSet",
    "SeriesNumber", "PatientName", "ImageComments", "NotAKeyword", "00100020", "0x00280010",
]


def _outcome(fn, *args):
    """``("ok", fn(*args))`` or ``("raises", exception type, message)``."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("raises", type(exc).__name__, str(exc))


def _pydicom(path: Path):
    with open(path, "rb") as fh:
        ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
        return ds, fh.tell()


def _fast(path: Path):
    with open(path, "rb") as fh:
        return read_image_header(fh, os.fstat(fh.fileno()).st_size)


def _reads(ds, path: Path, offset: int) -> list:
    """Every read the header scan makes of ``ds``, as comparable values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # 'NotAKeyword' in ds
        return _reads_quietly(ds, path, offset)


def _reads_quietly(ds, path: Path, offset: int) -> list:
    out = []
    for kw in _KEYWORDS:
        out.append((kw, kw in ds, _outcome(ds.get, kw, "default"), _outcome(ds_mod._code, ds, kw),
                    _outcome(ds_mod._str, ds, kw), _outcome(ds_mod._float, ds, kw), _outcome(ds_mod._us, ds, kw, 7),
                    _outcome(ds_mod._integer, ds, kw, 3), _outcome(ds_mod._decimals, ds, kw)))
        out.append(type(ds.get(kw)).__name__)
    out += [_outcome(ds_mod._expected_pixel_bytes, ds), _outcome(ds_mod._pixel_layout, ds),
            _outcome(ds_mod.scanner_facts, ds), _outcome(lambda: str(ds.file_meta.TransferSyntaxUID)),
            _outcome(lambda: repr(ds_mod._slice(ds, path, offset))), ds.original_character_set]
    return out


def _assert_same(path: Path) -> tuple:
    """The fast reader read ``path`` and gave pydicom's dataset, offset and reads."""
    ref, ref_offset = _pydicom(path)
    fast = _fast(path)
    assert fast is not None, path
    ds, offset = fast
    assert isinstance(ds, HeaderDataset) and isinstance(ds.file_meta, FileMetaDataset)
    again = header_dataset(ds.header_bytes)                     # read again from the bytes a worker sends
    assert again.header_bytes == ds.header_bytes and list(again.keys()) == list(ds.keys())
    assert all(again[tag] == ds[tag] for tag in ds.keys()) and again.file_meta == ds.file_meta
    assert offset == ref_offset
    assert list(ds.keys()) == list(ref.keys())
    for tag in ref.keys():
        assert ds[tag] == ref[tag], tag
        assert type(ds[tag].value) is type(ref[tag].value), tag
    assert list(ds.file_meta.keys()) == list(ref.file_meta.keys())
    for tag in ref.file_meta.keys():
        assert ds.file_meta[tag] == ref.file_meta[tag], tag
    # fresh datasets (no values converted yet) for the reads
    ref, _ = _pydicom(path)
    ds, _ = _fast(path)
    assert repr(_reads(ds, path, offset)) == repr(_reads(ref, path, offset))
    return ds, offset


def _scan_key(path: Path, root: Path):
    """What :func:`_scan_file` makes of ``path`` (or what it raises)."""
    def run():
        h = ds_mod._scan_file(path, root)
        if h is None:
            return None
        facts = h.facts() if h.ds is not None else h._facts
        # as a worker process sends it: facts worked out, or the header's bytes to read again
        sent = pickle.loads(pickle.dumps(ds_mod._scan_file(path, root)))
        sent_facts = sent.facts() if sent.has_geometry and not sent.truncated else None
        return repr((h.modality, h.series_uid, h.truncated, h.offset, h.has_geometry, h.slice, h.slice_error,
                     h.rtstruct, facts, sent.slice, sent.offset, sent_facts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _outcome(run)


def _assert_same_scan(path: Path, root: Path, monkeypatch) -> bool:
    """The header scan makes the same of ``path`` with and without the fast reader; whether
    the fast reader read it."""
    fast = _scan_key(path, root)
    with monkeypatch.context() as mp:
        mp.setattr(dicom_header, "read_image_header", lambda fh, size: None)
        slow = _scan_key(path, root)
    assert fast == slow, path
    return _fast(path) is not None


# ---- files written by pydicom ------------------------------------------------------------------
_OTHER_LAYOUTS = [{"photometric": "MONOCHROME1", "signed": False, "bits_stored": 12},
                  {"slope": 0.5, "intercept": 0.25}, {"slope": 1, "intercept": 0.5},
                  {"bits_allocated": 32, "bits_stored": 32, "slope": 1, "intercept": -5},
                  {"bits_allocated": 32, "bits_stored": 24, "signed": True}]
_FORMAT_KWARGS = [dict(zip(("bits_allocated", "bits_stored", "signed", "slope", "intercept", "implicit"), f))
                  for f in series_tests._FORMATS] + _OTHER_LAYOUTS


@pytest.mark.parametrize("kw", _FORMAT_KWARGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_every_pixel_format_reads_as_pydicom_reads_it(tmp_path, kw, monkeypatch):
    volume = np.arange(2 * 6 * 5).reshape(2, 6, 5) % 100
    files = series_tests._write(tmp_path / "dicom" / "s", volume, **kw)
    for path in files:
        _assert_same(path)
        assert _assert_same_scan(path, tmp_path / "dicom", monkeypatch)


def test_phantom_headers_read_as_pydicom_reads_them(small_export, monkeypatch):
    root = small_export / "dicom"
    files = [p for p in ds_mod.walk_files(root) if ds_mod._is_candidate(p)]
    fast = 0
    for path in files:
        if _assert_same_scan(path, root, monkeypatch):
            _assert_same(path)
            fast += 1
        else:
            assert ds_mod._code(_pydicom(path)[0], "Modality") not in ("MR", "CT")   # only non-images fall back
    assert fast > 0


def _pydicom_file(path: Path, *, implicit: bool, modality: str = "MR", **extra) -> Path:
    """An MR slice written by pydicom with sequences (defined and undefined length), private
    tags, multi-valued and empty values, padded strings and odd-length UIDs."""
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = "1.2.3.45"                        # odd length: padded with NUL
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20200101"
    ds.Modality = modality
    ds.Manufacturer = " Philips  "
    ds.ManufacturerModelName = ""
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.3", "1.2.3.4.5"
    ref.ReferencedFrameNumber = [1, 2, 3]
    ds.ReferencedImageSequence = Sequence([ref, Dataset()])           # defined length, one empty item
    ds.SeriesDescription = "T2 ax fse"                                 # odd: padded with a space
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "H1 "
    ds.SliceThickness = None                                            # empty DS
    ds.MagneticFieldStrength = [1.5, 3]                                 # multi-valued DS
    ds.SpacingBetweenSlices = "2.5"
    ds.ProtocolName = "t2_tse_tra"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.840.1.2.3", "1.2.840.1.2.345"
    ds.SeriesNumber = 7
    ds.InstanceNumber = "4 "
    ds.ImagePositionPatient = [-10.0, -12.5, 4.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = "1.2.3.4.5.6.7"
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "T-1234", "SRT"
    request = Dataset()
    request.RequestedProcedureID = "RP1"
    request.ScheduledProtocolCodeSequence = Sequence([inner])
    request.ScheduledProtocolCodeSequence.is_undefined_length = True
    inner.is_undefined_length_sequence_item = True
    ds.RequestAttributesSequence = Sequence([request, Dataset()])     # undefined length, nested
    ds.RequestAttributesSequence.is_undefined_length = True
    request.is_undefined_length_sequence_item = True
    block = ds.private_block(0x0029, "NPCAI TEST", create=True)
    block.add_new(0x01, "LO", "private text")
    block.add_new(0x02, "DS", "1.25\\2.5")
    private = Dataset()
    private.PatientID = "inner"
    block.add_new(0x10, "SQ", Sequence([private]))
    ds[block.get_tag(0x10)].is_undefined_length = True
    private.is_undefined_length_sequence_item = True
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 4, 3
    ds.PixelSpacing = ["0.7", "0.90"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = ["40", "400"], [80, 1500]
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.PixelData = np.arange(12, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("implicit", [False, True])
def test_sequences_private_tags_and_odd_values_read_as_pydicom_reads_them(tmp_path, implicit, monkeypatch):
    path = _pydicom_file(tmp_path / "a.dcm", implicit=implicit)
    data = path.read_bytes()
    assert b"\xfe\xff\xdd\xe0" in data and b"\xfe\xff\x0d\xe0" in data     # undefined lengths were written
    ds, _ = _assert_same(path)
    ref, _ = _pydicom(path)
    # the sequences convert to pydicom's, the private one included
    assert ds.RequestAttributesSequence == ref.RequestAttributesSequence
    assert ds.ReferencedImageSequence[0].ReferencedFrameNumber == [1, 2, 3]
    assert ds[0x00291010].value == ref[0x00291010].value and ds[0x00291010].VR == "SQ"
    assert ds.get("MagneticFieldStrength") == [1.5, 3.0] and ds_mod._float(ds, "MagneticFieldStrength") is None
    assert ds_mod._str(ds, "PatientID") == "H1" and ds_mod._code(ds, "SOPInstanceUID") == "1.2.3.45"
    assert _assert_same_scan(path, tmp_path, monkeypatch)


@pytest.mark.filterwarnings("ignore:The value length")
def test_a_header_longer_than_the_first_read(tmp_path, monkeypatch):
    path = _pydicom_file(tmp_path / "a.dcm", implicit=False, ImageComments="x" * 50001)
    assert dicom_header._FIRST_READ < 50000
    _assert_same(path)
    assert _assert_same_scan(path, tmp_path, monkeypatch)


def test_files_pydicom_must_read_are_left_to_it(tmp_path, monkeypatch):
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless

    base = _pydicom_file(tmp_path / "base.dcm", implicit=False)
    cases = {}
    ds = pydicom.dcmread(base)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(cases.setdefault("big", tmp_path / "big.dcm"), ds, little_endian=False, implicit_vr=False,
                     force_encoding=True)
    ds = pydicom.dcmread(base)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(cases.setdefault("deflated", tmp_path / "deflated.dcm"))
    ds = pydicom.dcmread(base)
    ds.compress(RLELossless)
    ds.save_as(cases.setdefault("rle", tmp_path / "rle.dcm"))
    ds = pydicom.dcmread(base)
    ds.save_as(cases.setdefault("no-preamble", tmp_path / "nopre.dcm"), enforce_file_format=False)
    cases["no-preamble"].write_bytes(base.read_bytes()[132:])                # file meta, no preamble
    cases["rtstruct"] = _pydicom_file(tmp_path / "rt.dcm", implicit=False, modality="RTSTRUCT")
    cases["pr"] = _pydicom_file(tmp_path / "pr.dcm", implicit=True, modality="PR")
    ds = pydicom.dcmread(base)
    del ds.PixelData
    ds.save_as(cases.setdefault("no-pixels", tmp_path / "nopix.dcm"))
    (tmp_path / "text.dcm").write_bytes(b"not a DICOM file at all\n" * 10)
    cases["text"] = tmp_path / "text.dcm"
    for name, path in cases.items():
        assert _fast(path) is None, name
        assert not _assert_same_scan(path, tmp_path, monkeypatch)


# ---- files built byte by byte: odd lengths, malformed and borderline encodings -----------------
_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_ITEM, _ITEM_END, _SEQ_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\x0d\xe0", b"\xfe\xff\xdd\xe0"
_UNDEF = 0xFFFFFFFF


def _el(tag: int, vr: str, value: bytes, implicit: bool, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<L", n) + value
    if vr in _LONG:
        return head + vr.encode() + b"\0\0" + struct.pack("<L", n) + value
    return head + vr.encode() + struct.pack("<H", n) + value


def _item(content: bytes, undefined: bool) -> bytes:
    if undefined:
        return _ITEM + struct.pack("<L", _UNDEF) + content + _ITEM_END + b"\0\0\0\0"
    return _ITEM + struct.pack("<L", len(content)) + content


def _seq(tag: int, items: list[bytes], undefined: bool, implicit: bool) -> bytes:
    content = b"".join(items)
    if undefined:
        return _el(tag, "SQ", b"", implicit, length=_UNDEF) + content + _SEQ_END + b"\0\0\0\0"
    return _el(tag, "SQ", content, implicit)


def _raw_file(implicit: bool, extra: dict[int, bytes] | None = None, *, syntax: bytes | None = None,
              modality: bytes = b"MR", drop: tuple[int, ...] = ()) -> bytes:
    """A 4 x 3 MR slice, elements in tag order; ``extra`` maps tags to encoded elements
    (``syntax=b""``: no transfer syntax)."""
    def text(tag, vr, value):
        return _el(tag, vr, value, implicit)

    elements = {
        0x00080005: text(0x00080005, "CS", b"ISO_IR 100"),
        0x00080016: text(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.4\0"),
        0x00080018: text(0x00080018, "UI", b"1.2.3.4.5"),                                   # odd, no padding
        0x00080060: text(0x00080060, "CS", modality),
        0x0008103E: text(0x0008103E, "LO", b" T2 ax "),                                      # odd length
        0x00100020: text(0x00100020, "LO", b"H1"),
        0x0020000D: text(0x0020000D, "UI", b"1.2.3\0"),
        0x0020000E: text(0x0020000E, "UI", b"1.2.3.4.6 "),                                   # space padded
        0x00200013: text(0x00200013, "IS", b" 12"),
        0x00200032: text(0x00200032, "DS", b"-10\\-12.5\\4.0 "),
        0x00200037: text(0x00200037, "DS", b"1\\0\\0\\0\\1\\0"),
        0x00280002: text(0x00280002, "US", struct.pack("<H", 1)),
        0x00280004: text(0x00280004, "CS", b"MONOCHROME2 "),
        0x00280010: text(0x00280010, "US", struct.pack("<H", 4)),
        0x00280011: text(0x00280011, "US", struct.pack("<H", 3)),
        0x00280030: text(0x00280030, "DS", b"0.7\\0.9"),
        0x00280100: text(0x00280100, "US", struct.pack("<H", 16)),
        0x00280101: text(0x00280101, "US", struct.pack("<H", 16)),
        0x00280103: text(0x00280103, "US", struct.pack("<H", 1)),
        0x00281052: text(0x00281052, "DS", b"-1024"),
        0x00281053: text(0x00281053, "DS", b"1 "),
        0x7FE00010: _el(0x7FE00010, "OW", bytes(24), implicit),
    }
    for tag in drop:
        del elements[tag]
    elements.update(extra or {})
    body = b"".join(v for _, v in sorted(elements.items()))
    if syntax is None:
        syntax = b"1.2.840.10008.1.2\0" if implicit else b"1.2.840.10008.1.2.1\0"
    meta = (_el(0x00020001, "OB", b"\0\1", False) + _el(0x00020002, "UI", b"1.2.840.10008.5.1.4.1.1.4\0", False)
            + _el(0x00020003, "UI", b"1.2.3.4.5\0", False) + (_el(0x00020010, "UI", syntax, False) if syntax else b""))
    meta = _el(0x00020000, "UL", struct.pack("<L", len(meta)), False) + meta
    return b"\0" * 128 + b"DICM" + meta + body


def _sequences(implicit: bool) -> dict[int, bytes]:
    """Defined and undefined length sequences and items, nested, and private tags."""
    e = _el
    empty_private = {} if implicit else {0x00291011: _seq(0x00291011, [], True, implicit)}   # empty, undefined
    leaf = e(0x00080100, "SH", b"T-1234", implicit) + e(0x00080102, "SH", b"SRT ", implicit)
    nested = _seq(0x00400008, [_item(leaf, True), _item(leaf, False)], True, implicit)
    return {
        0x00081140: _seq(0x00081140, [_item(e(0x00081150, "UI", b"1.2.3\0", implicit), False), _item(b"", False)],
                         False, implicit),
        0x00081160: e(0x00081160, "IS", b"1\\2\\3 ", implicit),                                # multi-valued IS
        0x00281050: e(0x00281050, "DS", b"40\\400", implicit),                                 # multi-valued DS
        0x00400275: _seq(0x00400275, [_item(e(0x00401001, "SH", b"RP1 ", implicit) + nested, True),
                                      _item(nested, False), _item(b"", True)], True, implicit),
        0x00290010: e(0x00290010, "LO", b"NPCAI TEST", implicit),
        0x00291001: e(0x00291001, "LO", b"private", implicit),
        0x00291002: e(0x00291002, "UN", b"\x01\x02\x03", implicit),                            # odd-length UN
        0x00291010: _seq(0x00291010, [_item(e(0x00100020, "LO", b"inner ", implicit), True)], True, implicit),
        0x00291012: e(0x00291012, "SQ", b"", implicit),                                        # empty, defined
        0x00180050: e(0x00180050, "DS", b"", implicit),                                        # empty value
    } | empty_private


@pytest.mark.parametrize("implicit", [False, True])
def test_byte_built_headers_read_as_pydicom_reads_them(tmp_path, implicit, monkeypatch):
    path = tmp_path / "a.dcm"
    path.write_bytes(_raw_file(implicit, _sequences(implicit)))
    ds, offset = _assert_same(path)
    assert offset == len(path.read_bytes()) - 24 - (8 if implicit else 12)
    assert ds_mod._code(ds, "SeriesInstanceUID") == "1.2.3.4.6" and ds_mod._str(ds, "SeriesDescription") == "T2 ax"
    assert ds.RequestAttributesSequence == _pydicom(path)[0].RequestAttributesSequence
    assert _assert_same_scan(path, tmp_path, monkeypatch)
    for syntax in (b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.1 ", b"1.2.840.10008.1.2\0\0"):   # padded UIDs
        if syntax.rstrip(b"\0 ").endswith(b".1") != implicit:
            path.write_bytes(_raw_file(implicit, _sequences(implicit), syntax=syntax))
            _assert_same(path)


def _borderline(implicit: bool) -> dict[str, bytes]:
    """Encodings the fast reader leaves to pydicom."""
    e = _el
    cases = {
        "vr-mismatch": _raw_file(implicit, syntax=b"1.2.840.10008.1.2.1\0" if implicit else b"1.2.840.10008.1.2\0"),
        "other-syntax": _raw_file(implicit, syntax=b"1.2.840.10008.1.2.4.50\0"),
        "no-syntax": _raw_file(implicit, syntax=b""),
        "command-group": _raw_file(implicit, {0x00000002: e(0x00000002, "UI", b"1.2\0", True)}),
        "undefined-ob": _raw_file(implicit, {0x00091001: e(0x00091001, "OB", b"\0\0" + _SEQ_END + b"\0\0\0\0", implicit,
                                                            length=_UNDEF), 0x00090010: e(0x00090010, "LO", b"X ", implicit)}),
        "top-level-delimiter": _raw_file(implicit, {0x00180010: _ITEM_END + b"\0\0\0\0"}),
        "item-not-item": _raw_file(implicit, {0x00400275: e(0x00400275, "SQ", b"", implicit, length=_UNDEF)
                                              + b"\x08\x00\x00\x01" + b"\0\0\0\0" + _SEQ_END + b"\0\0\0\0"}),
        "item-overrun": _raw_file(implicit, {0x00400275: _seq(0x00400275, [
            _ITEM + struct.pack("<L", 4) + e(0x00401001, "SH", b"RP1 ", implicit)], True, implicit)}),
        "delimiter-in-defined-item": _raw_file(implicit, {0x00400275: _seq(0x00400275, [
            _item(_ITEM_END + b"\0\0\0\0", False)], True, implicit)}),
        "no-modality": _raw_file(implicit, drop=(0x00080060,)),
        "rtstruct": _raw_file(implicit, modality=b"RTSTRUCT"),
        "modality-padded-oddly": _raw_file(implicit, modality=b"\0MR"),
        "length-past-end": _raw_file(implicit, {0x00180010: e(0x00180010, "UT", b"abc", implicit, length=10 ** 6)}),
        "big-endian": _raw_file(implicit, syntax=b"1.2.840.10008.1.2.2\0"),
    }
    if not implicit:
        cases["unknown-vr"] = _raw_file(implicit, {0x00180010: b"\x18\x00\x10\x00XX\x02\x00ab"})
        cases["undefined-un"] = _raw_file(implicit, {0x00400275: e(0x00400275, "UN", b"", implicit, length=_UNDEF)
                                                     + _item(b"", True) + _SEQ_END + b"\0\0\0\0"})
        cases["implicit-item-in-explicit"] = _raw_file(implicit, {0x00400275: _seq(0x00400275, [
            _item(e(0x00401001, "SH", b"RP1 ", True), True)], True, implicit)})
    else:
        # without a VR, pydicom reads an empty private sequence of undefined length as bytes
        cases["empty-undefined-private-sequence"] = _raw_file(implicit, {
            0x00290010: e(0x00290010, "LO", b"X ", True), 0x00291011: _seq(0x00291011, [], True, True)})
        cases["undefined-private-not-sequence"] = _raw_file(implicit, {
            0x00090010: e(0x00090010, "LO", b"X ", True),
            0x00091001: e(0x00091001, "OB", b"\x01\x02" + _SEQ_END + b"\0\0\0\0", True, length=_UNDEF)})
    return cases


@pytest.mark.parametrize("implicit", [False, True])
def test_borderline_encodings_are_left_to_pydicom(tmp_path, implicit, monkeypatch):
    for name, data in _borderline(implicit).items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(data)
        assert _fast(path) is None, name
        _assert_same_scan(path, tmp_path, monkeypatch)


@pytest.mark.parametrize("implicit", [False, True])
def test_sequences_nested_past_the_recursion_limit_are_left_to_pydicom(tmp_path, implicit, monkeypatch):
    nested = _el(0x00401001, "SH", b"RP1 ", implicit)
    for _ in range(sys.getrecursionlimit()):
        nested = _seq(0x00400275, [_item(nested, True)], True, implicit)
    path = tmp_path / "deep.dcm"
    path.write_bytes(_raw_file(implicit, {0x00400275: nested}))
    assert _fast(path) is None
    _assert_same_scan(path, tmp_path, monkeypatch)


@pytest.mark.parametrize("implicit", [False, True])
def test_truncated_headers_scan_as_before(tmp_path, implicit, monkeypatch):
    data = _raw_file(implicit, _sequences(implicit))
    path = tmp_path / "cut.dcm"
    fast = 0
    for end in list(range(0, len(data) - 24, 5)) + list(range(len(data) - 40, len(data) + 1)):
        path.write_bytes(data[:end])
        fast += _assert_same_scan(path, tmp_path, monkeypatch)
    assert fast >= 20                                            # cut in the pixel data: read fast, truncated


@pytest.mark.parametrize("implicit", [False, True])
def test_corrupted_headers_scan_as_before(tmp_path, implicit, monkeypatch):
    """Random byte changes, insertions and deletions in the header: the scan makes the same
    of every file (same values, same unreadable files, same exceptions)."""
    data = _raw_file(implicit, _sequences(implicit))
    header_end = len(data) - 24
    rng = random.Random(20 + implicit)
    path = tmp_path / "bad.dcm"
    fast = 0
    for _ in range(250):
        b = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 3))):
            k = rng.randrange(128, header_end)
            op = rng.random()
            if op < 0.6:
                b[k] = rng.choice((0, 0xFF, 0x20, rng.randrange(256), b[k] ^ 1))
            elif op < 0.8:
                del b[k]
            else:
                b.insert(k, rng.randrange(256))
        path.write_bytes(bytes(b))
        fast += _assert_same_scan(path, tmp_path, monkeypatch)
    assert fast > 25                                             # and many were still read fast
