"""DICOM series discovery, checking and conversion to SimpleITK images.

A hospital export is a tree of DICOM files in any layout. :func:`discover_series` reads
every file's header once (:mod:`npcai.cohort.dicom_header` for uncompressed little-endian
MR/CT files, else pydicom with ``stop_before_pixels``; the same dataset), groups image files by
SeriesInstanceUID, orders slices along the slice normal (the cross product of the
ImageOrientationPatient row and column vectors, dotted with ImagePositionPatient), and
checks the geometry: one orientation, one matrix size, one pixel spacing, no duplicate
positions and no missing slices. :func:`read_series` converts a checked series to a
SimpleITK image with the physical geometry intact.

Each file is parsed once: the header scan notes where the pixel data starts and how it is
stored (:class:`PixelLayout`). A series stored uncompressed in little-endian greyscale, one
frame per file, with an integer RescaleSlope/RescaleIntercept (nearly every MR and CT
export) is then read by copying those bytes into the volume, with GDCM's rules applied
(bits above BitsStored masked off or sign-extended, rescale, GDCM's choice of pixel type), so
the voxels are those SimpleITK's ``ImageSeriesReader`` gives. Any other series (compressed,
big endian, MONOCHROME1, fractional rescale, mixed layouts) is read by ``ImageSeriesReader``.

Series are named in messages by their folder relative to the export and a short hash of
the SeriesInstanceUID, never by patient names.

Examples:
    >>> series, skipped = discover_series("export/dicom")            # doctest: +SKIP
    >>> image = read_series(series[0])                                # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from npcai.cohort.deidentify import hash_uid, new_salt
from npcai.cohort.parallel import iter_ordered_map
from npcai.errors import NpcaiError
from npcai.progress import track

_MESSAGE_SALT = new_salt()   # messages name a series by a hash no one can recompute from the export

__all__ = [
    "DEFAULT_SEQUENCE_MAP", "SequenceMap", "DicomSeries", "RtStructFile", "discover_series",
    "read_series", "read_series_pixels", "check_series_geometry", "find_rtstructs", "scanner_facts", "PixelLayout",
]

log = logging.getLogger(__name__)

#: Sequence name -> regular expression searched (case-insensitive) in SeriesDescription.
#: Order matters: the first match wins (T1c before T1, since "T1C" also contains "T1").
DEFAULT_SEQUENCE_MAP: dict[str, str] = {
    "T1c": r"C\+|post.?contrast|gd|t1c|\+c",
    "T2": r"t2",
    "T1": r"t1",
}

_IMAGE_MODALITIES = {"MR", "CT"}
_NON_IMAGE_MODALITIES = {"RTSTRUCT", "RTDOSE", "RTPLAN", "RTRECORD", "SR", "PR", "SEG", "REG", "KO", "DOC"}
_ORIENTATION_TOL = 1e-3
_DUPLICATE_TOL_MM = 1e-3
_GAP_TOL = 0.1          # a slice step deviating > 10 % from the median step is a gap


class SequenceMap:
    """Ordered sequence patterns: ``classify("T1 FS POST GD")`` -> ``"T1c"``.

    Args:
        patterns: ``{sequence: regex}`` in priority order; sequences must be T1, T2 or T1c
            (CT comes from the DICOM modality, not from a pattern).

    Examples:
        >>> SequenceMap().classify("ax T2 fse")
        'T2'
        >>> SequenceMap().classify("t1_se_tra +C")
        'T1c'
    """

    def __init__(self, patterns: Mapping[str, str] | None = None, source: str = "sequence map"):
        patterns = dict(DEFAULT_SEQUENCE_MAP if patterns is None else patterns)
        if not patterns:
            raise NpcaiError(f"{source}: no sequence patterns; give e.g. 'T2: t2' per line")
        self.patterns: dict[str, re.Pattern] = {}
        for seq, rx in patterns.items():
            if seq not in ("T1", "T2", "T1c"):
                raise NpcaiError(f"{source}: sequence {seq!r} is not one of T1, T2, T1c; rename the key")
            try:
                self.patterns[seq] = re.compile(str(rx), re.IGNORECASE)
            except re.error as exc:
                raise NpcaiError(f"{source}: pattern for {seq} ({rx!r}) is not a valid regular expression: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "SequenceMap":
        """Read ``{sequence: regex}`` from a YAML file (order kept)."""
        from npcai.fsutil import read_user_yaml

        path = Path(path)
        data = read_user_yaml(path, what="sequence map", example="'T1c: \"gd|post\"'")
        if not isinstance(data, dict):
            raise NpcaiError(f"{path}: expected a mapping 'sequence: regex' (T1, T2, T1c); fix the file")
        return cls(data, source=str(path))

    @classmethod
    def coerce(cls, value: "SequenceMap | Mapping[str, str] | str | os.PathLike | None") -> "SequenceMap":
        """Accept a SequenceMap, a dict, a YAML path or None (the defaults)."""
        if isinstance(value, SequenceMap):
            return value
        if value is None or isinstance(value, Mapping):
            return cls(value)
        return cls.from_yaml(value)

    def classify(self, description: str) -> str | None:
        """The first sequence whose pattern occurs in ``description``, or None."""
        for seq, rx in self.patterns.items():
            if rx.search(description or ""):
                return seq
        return None


@dataclass(frozen=True)
class PixelLayout:
    """How one slice's pixels lie in its file, when they can be read without a decoder.

    Uncompressed little-endian (implicit or explicit VR), one greyscale MONOCHROME2 frame of
    8, 16 or 32 allocated bits (unused upper bits only in 16-bit pixels of 8 to 15 stored
    bits), an integer rescale. The pixel data element starts at the
    offset :func:`discover_series` recorded for each file (its tag, then its length).
    """

    implicit_vr: bool
    rows: int
    cols: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    slope: int
    intercept: int

    @property
    def stored_dtype(self) -> np.dtype:
        """The numpy type of the stored values (little endian)."""
        return np.dtype(f"<{'i' if self.signed else 'u'}{self.bits_allocated // 8}")

    @property
    def output_dtype(self) -> np.dtype | None:
        """The pixel type GDCM (and so SimpleITK) gives the rescaled values, or None where it
        would be floating point.

        Identity rescale: the stored type. Otherwise the smallest integer type holding
        ``slope * v + intercept`` over the whole BitsStored range of ``v`` (unsigned when
        that range is not negative), never narrower than the stored type.
        """
        if (self.slope, self.intercept) == (1, 0):
            return self.stored_dtype
        lo, hi = ((-(1 << (self.bits_stored - 1)), (1 << (self.bits_stored - 1)) - 1) if self.signed
                  else (0, (1 << self.bits_stored) - 1))
        a, b = lo * self.slope + self.intercept, hi * self.slope + self.intercept
        lo, hi = min(a, b), max(a, b)
        kinds = ("u1", "u2", "u4") if lo >= 0 else ("i1", "i2", "i4")
        for kind in kinds:
            info = np.iinfo(np.dtype(kind))
            if info.min <= lo and hi <= info.max:
                dtype = np.dtype(kind)
                return dtype if dtype.itemsize >= self.stored_dtype.itemsize else None
        return None


_RAW_SYNTAXES = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}   # UID -> implicit VR
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"                                     # (7FE0,0010) little endian


def _integer(ds: Any, tag: str, default: int) -> int | None:
    """An integer-valued DS tag as int (``default`` when absent), None when fractional or bad."""
    if tag not in ds:
        return default
    try:
        v = float(ds.get(tag))
    except (TypeError, ValueError):
        return None
    return int(v) if np.isfinite(v) and v.is_integer() else None


def _pixel_layout(ds: Any) -> PixelLayout | None:
    """The slice's :class:`PixelLayout`, or None when a decoder (SimpleITK) must read it."""
    try:
        implicit = _RAW_SYNTAXES.get(str(ds.file_meta.TransferSyntaxUID))
        if implicit is None or "ModalityLUTSequence" in ds or "PixelData" in ds:
            return None
        if _us(ds, "SamplesPerPixel", 1) != 1 or ("NumberOfFrames" in ds and int(ds.NumberOfFrames or 1) != 1):
            return None
        if _code(ds, "PhotometricInterpretation") != "MONOCHROME2":
            return None
        allocated, stored, signed = _us(ds, "BitsAllocated"), _us(ds, "BitsStored"), _us(ds, "PixelRepresentation")
    except (AttributeError, TypeError, ValueError):
        return None
    slope, intercept = _integer(ds, "RescaleSlope", 1), _integer(ds, "RescaleIntercept", 0)
    # GDCM refuses 8-bit and garbles 32-bit values with unused bits, and 16-bit ones stored in
    # fewer than 8 bits overflow its rescale: SimpleITK reads (or refuses) those itself
    if stored != allocated and not (allocated == 16 and 8 <= stored < 16):
        return None
    if allocated not in (8, 16, 32) or signed not in (0, 1) or slope is None or intercept is None or slope == 0:
        return None
    layout = PixelLayout(implicit_vr=implicit, rows=_us(ds, "Rows"), cols=_us(ds, "Columns"), bits_allocated=allocated,
                         bits_stored=stored, signed=bool(signed), slope=slope, intercept=intercept)
    return layout if layout.output_dtype is not None else None


@dataclass
class _Slice:
    path: Path
    position: np.ndarray
    orientation: np.ndarray
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]
    instance: int
    layout: PixelLayout | None = None
    pixel_offset: int = -1


@dataclass
class DicomSeries:
    """One image series found in an export, its slices ordered along the slice normal."""

    series_uid: str
    study_uid: str
    hospital_id: str
    study_date: str
    modality: str
    description: str
    frame_of_reference: str
    folder: str                          # relative to the export root (for messages)
    files: list[Path] = field(default_factory=list)
    positions_mm: list[float] = field(default_factory=list)   # along the normal, ascending
    skipped_files: list[str] = field(default_factory=list)    # unreadable files, relative paths
    sequence: str | None = None
    timepoint: str | None = None
    orientation: tuple[float, ...] = ()                       # ImageOrientationPatient (6 values)
    origin: tuple[float, ...] = ()                            # position of the first slice (mm)
    pixel_spacing: tuple[float, float] = (1.0, 1.0)           # (row, column) mm
    slice_thickness: float | None = None                      # mm, used only for one-slice series
    scanner: dict[str, Any] = field(default_factory=dict)     # acquisition facts, see scanner_facts()
    pixel_layout: PixelLayout | None = None                   # shared by every slice, else None
    pixel_offsets: list[int] = field(default_factory=list)    # where each file's pixel data element starts

    @property
    def uid_hash(self) -> str:
        """A salted hash of the series UID for messages (the cohort uses its own salt)."""
        return hash_uid(self.series_uid, _MESSAGE_SALT)

    @property
    def name(self) -> str:
        """How messages name the series: folder and a short UID hash, no patient names."""
        return f"series {self.folder} (uid #{self.uid_hash[:12]})"


@dataclass
class RtStructFile:
    """An RTSTRUCT file found in an export (rasterised later onto its referenced series)."""

    path: Path
    hospital_id: str
    referenced_series: list[str]
    frame_of_reference: str
    folder: str


def _str(ds: Any, tag: str) -> str:
    v = ds.get(tag, "")
    return "" if v is None else str(v).strip()


# Header values read many times per file are taken from pydicom's raw elements when they are
# plain (pydicom converts a value on first access, which costs as much as parsing it).
def _code(ds: Any, keyword: str) -> str:
    """A one-valued ASCII tag (CS, UI: Modality, SeriesInstanceUID...) as :func:`_str` gives it."""
    elem = ds.get_item(keyword)
    value = None if elem is None else elem.value
    if isinstance(value, bytes) and b"\\" not in value and value.isascii():
        return value.decode("ascii").rstrip("\0").strip()
    return _str(ds, keyword)


def _us(ds: Any, keyword: str, default: int | None = None) -> int:
    """An unsigned-short (US) tag (Rows, BitsAllocated...) as int; ``default`` when absent, or
    AttributeError when there is none."""
    elem = ds.get_item(keyword)
    if elem is None:
        if default is None:
            raise AttributeError(f"no {keyword}")
        return default
    value = elem.value
    if isinstance(value, bytes) and len(value) == 2 and elem.VR in (None, "US") \
            and getattr(elem, "is_little_endian", None) is not None:
        return int.from_bytes(value, "little" if elem.is_little_endian else "big")
    return int(ds[keyword].value)


def _expected_pixel_bytes(ds: Any) -> int | None:
    """Bytes of uncompressed pixel data the header promises (None when compressed/unknown)."""
    try:
        ts = ds.file_meta.TransferSyntaxUID
        if ts.is_compressed or ts.is_deflated:
            return None
        frames = int(ds.get("NumberOfFrames", 1) or 1) if "NumberOfFrames" in ds else 1
        return _us(ds, "Rows") * _us(ds, "Columns") * _us(ds, "BitsAllocated") // 8 * _us(ds, "SamplesPerPixel", 1) * frames
    except (AttributeError, TypeError, ValueError):
        return None


def _read_header(path: Path):
    """(dataset, truncated?, offset of what follows the header) reading only the header;
    raises on unreadable files."""
    import pydicom

    from npcai.cohort.dicom_header import read_image_header

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        fast = read_image_header(fh, size)          # the common MR/CT case, else None
        if fast is None:
            fh.seek(0)
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            header_end = fh.tell()
        else:
            ds, header_end = fast
    if "SOPClassUID" not in ds and "Modality" not in ds:
        raise ValueError("no DICOM header")
    truncated = False
    if _code(ds, "Modality") in _IMAGE_MODALITIES:
        expected = _expected_pixel_bytes(ds)
        # pixel data element: tag (4) + VR/length header (4 or 8) + value
        if expected is not None and size - header_end < expected + 8:
            truncated = True
    return ds, truncated, header_end


def _float(ds: Any, tag: str) -> float | None:
    try:
        v = float(ds.get(tag, None))
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def scanner_facts(ds: Any) -> dict[str, Any]:
    """Acquisition facts of a header that subgroup analyses use (no identifier among them):
    ``manufacturer`` (0008,0070), ``model`` (0008,1090) and ``field_strength_t`` (0018,0087,
    tesla; a value above 100 is read as gauss, as some older exports write 15000 for 1.5 T);
    absent tags are left out."""
    tesla = _float(ds, "MagneticFieldStrength")
    if tesla is not None and tesla > 100:
        tesla = tesla / 10000.0
    facts = {"manufacturer": _str(ds, "Manufacturer"), "model": _str(ds, "ManufacturerModelName"),
             "field_strength_t": tesla}
    return {k: v for k, v in facts.items() if v not in ("", None)}


def _is_candidate(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name.upper() == "DICOMDIR":
        return False
    suffix = path.suffix.lower()
    return suffix in ("", ".dcm", ".dicom", ".ima") or suffix[1:].isdigit()


@dataclass
class _FileHeader:
    """What :func:`discover_series` needs of one file's header.

    In the process that read it, it keeps the pydicom dataset and works out the series facts
    (:meth:`facts`) only for the one file per series that needs them; sent to another process
    (``workers > 1``) it travels without the dataset, which costs several times less to
    pickle: with the header's bytes where the fast reader (:mod:`npcai.cohort.dicom_header`)
    read it (:meth:`facts` reads them again, for the few files that need it), else with the
    facts worked out first.
    """

    modality: str
    series_uid: str = ""
    truncated: bool = False
    offset: int = -1                             # where the header ends (the pixel data element)
    has_geometry: bool = False
    slice: _Slice | None = None
    slice_error: str | None = None               # the NpcaiError message :func:`_slice` raised
    rtstruct: RtStructFile | None = None
    ds: Any = None
    header: bytes | None = None                  # the fast reader's header bytes, when sent without ds
    _facts: dict[str, Any] | None = None

    def facts(self) -> dict[str, Any]:
        """The series-level facts the first file of a series supplies."""
        if self._facts is None:
            ds = self.ds
            if ds is None:
                from npcai.cohort.dicom_header import header_dataset

                ds = header_dataset(self.header)
            self._facts = {
                "description": _str(ds, "SeriesDescription") or _str(ds, "ProtocolName"),
                "hospital_id": _str(ds, "PatientID"), "study_uid": _str(ds, "StudyInstanceUID"),
                "study_date": _str(ds, "StudyDate"), "frame_of_reference": _str(ds, "FrameOfReferenceUID"),
                "slice_thickness": _float(ds, "SpacingBetweenSlices") or _float(ds, "SliceThickness"),
                "scanner": scanner_facts(ds)}
        return self._facts

    def __getstate__(self) -> dict[str, Any]:
        if self.ds is not None and self.has_geometry and not self.truncated:   # may be a series' first file
            header = getattr(self.ds, "header_bytes", None)
            if header is not None:
                self.header = header
            else:
                self.facts()
        return {**self.__dict__, "ds": None}


def _scan_file(path: Path, root: Path) -> _FileHeader | None:
    """The :class:`_FileHeader` of one file, or None for a file that cannot be parsed (runs in
    worker processes: module-level and picklable)."""
    try:
        ds, truncated, offset = _read_header(path)
    except Exception:  # noqa: BLE001 - any parse failure means the file is unusable
        return None
    modality = _code(ds, "Modality")
    if modality == "RTSTRUCT":
        return _FileHeader(modality, rtstruct=_rtstruct_entry(ds, path, root))
    if modality not in _IMAGE_MODALITIES:
        return _FileHeader(modality)
    header = _FileHeader(modality, series_uid=_code(ds, "SeriesInstanceUID"), truncated=truncated, offset=offset,
                         has_geometry="PixelSpacing" in ds and "ImagePositionPatient" in ds
                         and "ImageOrientationPatient" in ds, ds=ds)
    if header.has_geometry and not truncated:
        try:
            header.slice = _slice(ds, path, offset)
        except NpcaiError as exc:
            header.slice_error = str(exc)
    return header


def discover_series(root: str | os.PathLike, *, sequence_map: SequenceMap | None = None, workers: int | None = 1,
                    ) -> tuple[list[DicomSeries], list[RtStructFile], dict[str, Any]]:
    """Find, group, order and check every DICOM image series under ``root``.

    Returns ``(series, rtstructs, info)``: the checked MR/CT series with their sequence
    (from SeriesDescription via ``sequence_map``; CT from the modality), the RTSTRUCT files,
    and ``info`` with ``unreadable`` files (relative paths), ``ignored`` series descriptions
    (no recognised sequence) and ``non_image`` file counts. Series whose description matches
    no sequence are skipped with a warning; geometry problems raise :class:`NpcaiError`.
    ``workers`` processes read the headers in parallel (same result for any count).
    """
    root = Path(root)
    if not root.is_dir():
        raise NpcaiError(f"{root}: export folder not found; give the folder holding the DICOM files")
    seq_map = sequence_map or SequenceMap()
    files = [p for p in walk_files(root) if _is_candidate(p)]
    if not files:
        dangling = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink() and not p.exists())
        if dangling:
            raise NpcaiError(f"{root}: no DICOM files found; the link(s) {', '.join(dangling[:3])} lead nowhere "
                             "(their target is missing or not mounted); fix the links or give the real folder")
        raise NpcaiError(f"{root}: no DICOM files found; check the path (files ending .dcm or without extension)")

    groups: dict[str, list[tuple[_FileHeader | None, Path]]] = defaultdict(list)
    rtstructs: list[RtStructFile] = []
    unreadable: list[Path] = []
    non_image: dict[str, int] = defaultdict(int)
    no_geometry: list[Path] = []
    headers = iter_ordered_map(partial(_scan_file, root=root), files, workers=workers, chunksize=64)
    for path, header in track(zip(files, headers), "Reading DICOM headers", total=len(files)):
        if header is None:
            unreadable.append(path)
            continue
        if header.rtstruct is not None:
            rtstructs.append(header.rtstruct)
            continue
        if header.modality not in _IMAGE_MODALITIES:
            non_image[header.modality or "unknown"] += 1
            continue
        if not header.has_geometry:
            no_geometry.append(path)
            continue
        if header.truncated:
            unreadable.append(path)
            # remember which series lost a file so the series check can name it
            groups[header.series_uid].append((None, path))
            continue
        groups[header.series_uid].append((header, path))

    series: list[DicomSeries] = []
    ignored: dict[str, int] = defaultdict(int)
    unplaced = [p for p in unreadable if not any(p == q for g in groups.values() for d, q in g if d is None)]
    for uid, members in groups.items():
        good = [(d, p) for d, p in members if d is not None]
        lost = [p for d, p in members if d is None]
        if not good:
            raise NpcaiError(f"{_rel(lost[0].parent, root)}: every file of this series is unreadable or truncated "
                             f"(e.g. {lost[0].name}); re-export the series")
        first = good[0][0]
        facts = first.facts()
        modality = first.modality
        description = facts["description"]
        sequence = "CT" if modality == "CT" else seq_map.classify(description)
        folder = _rel(good[0][1].parent, root)
        if sequence is None:
            ignored[description or "(no description)"] += 1
            continue
        hospital_id = facts["hospital_id"]
        if not hospital_id:
            hospital_id = Path(folder).parts[0]
            log.warning("%s: no PatientID; using its top folder %r as the hospital id", folder, hospital_id)
        s = DicomSeries(series_uid=uid, study_uid=facts["study_uid"], hospital_id=hospital_id,
                        study_date=facts["study_date"], modality=modality, description=description,
                        frame_of_reference=facts["frame_of_reference"], folder=folder, sequence=sequence,
                        slice_thickness=facts["slice_thickness"], scanner=facts["scanner"])
        # files unreadable in the same folder are attributed to this series too
        lost += [p for p in unplaced if p.parent == good[0][1].parent]
        s.skipped_files = [_rel(p, root) for p in lost]
        for d, _ in good:
            if d.slice_error is not None:
                raise NpcaiError(d.slice_error)
        slices = [d.slice for d, _ in good]
        check_series_geometry(s, slices)
        series.append(s)

    if no_geometry:
        log.warning("%s: ignored %d MR/CT file(s) without PixelSpacing/ImagePositionPatient/ImageOrientationPatient "
                    "(e.g. %s; enhanced multi-frame or secondary captures); export classic single-frame images "
                    "to ingest them", root, len(no_geometry), _rel(no_geometry[0], root))
    if ignored:
        listing = ", ".join(f"{d!r} x{n}" for d, n in sorted(ignored.items()))
        log.warning("%s: skipped %d series with no recognised sequence (%s); add a pattern with --sequence-map "
                    "to ingest them", root, sum(ignored.values()), listing)
    for p in unplaced:
        if not any(_rel(p, root) in s.skipped_files for s in series):
            log.warning("%s: unreadable DICOM file skipped", _rel(p, root))
    info = {"unreadable": [_rel(p, root) for p in unreadable], "ignored_series": dict(ignored),
            "non_image_files": dict(non_image), "no_geometry": [_rel(p, root) for p in no_geometry],
            "files": len(files)}
    return sorted(series, key=lambda s: (s.hospital_id, s.study_date, s.folder)), rtstructs, info


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _decimals(ds: Any, keyword: str) -> list[float]:
    """The numbers of a decimal-string (DS) tag, parsed from the raw text when pydicom has not
    converted it yet (its DS conversion costs a quarter of a header read)."""
    elem = ds.get_item(keyword)
    if elem is None:
        raise AttributeError(f"no {keyword}")
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return [float(v) for v in bytes(value).split(b"\\")]
    if isinstance(value, (str, int, float)):
        return [float(value)]
    return [float(v) for v in value]


def _slice(ds: Any, path: Path, pixel_offset: int = -1) -> _Slice:
    try:
        iop = np.array(_decimals(ds, "ImageOrientationPatient"), dtype=float)
        ipp = np.array(_decimals(ds, "ImagePositionPatient"), dtype=float)
        ps = tuple(_decimals(ds, "PixelSpacing"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise NpcaiError(f"{path}: missing or malformed geometry tag ({exc}); re-export the series") from exc
    return _Slice(path=path, position=ipp, orientation=iop, rows=_us(ds, "Rows"), cols=_us(ds, "Columns"),
                  pixel_spacing=ps, instance=int(ds.get("InstanceNumber", 0) or 0),
                  layout=_pixel_layout(ds) if pixel_offset >= 0 else None, pixel_offset=pixel_offset)


def walk_files(root: str | os.PathLike) -> list[Path]:
    """Every file under ``root``, sorted, following symbolic links to folders.

    Exports are often assembled with links (``EXPORT/dicom -> /mnt/pacs/...``), which
    ``Path.rglob`` does not follow before Python 3.13. A link that leads back into a folder
    already visited (a cycle) is skipped with a warning.
    """
    root = Path(root)
    seen: set[str] = set()
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            log.warning("%s: a folder link leads back to %s; not followed twice", dirpath, real)
            dirnames[:] = []
            continue
        seen.add(real)
        files.extend(Path(dirpath) / f for f in filenames)
    return sorted(p for p in files if p.is_file())


def check_series_geometry(series: DicomSeries, slices: list[_Slice]) -> None:
    """Order ``slices`` along the normal into ``series.files``; refuse inconsistent geometry.

    Refused (NpcaiError naming the series): mixed orientations, mixed matrix sizes or pixel
    spacings, duplicate slice positions, missing slices (a step deviating from the median by
    more than 10 %). Unreadable files at either end of the series are skipped with a warning.
    """
    ref = slices[0]
    for s in slices[1:]:
        if np.abs(s.orientation - ref.orientation).max() > _ORIENTATION_TOL:
            raise NpcaiError(f"{series.name}: mixed slice orientations (e.g. {s.path.name} vs {ref.path.name}); "
                             "split the series or remove the odd slices")
        if (s.rows, s.cols) != (ref.rows, ref.cols):
            raise NpcaiError(f"{series.name}: mixed matrix sizes ({ref.rows}x{ref.cols} and {s.rows}x{s.cols}); "
                             "remove the odd slices")
        if not np.allclose(s.pixel_spacing, ref.pixel_spacing, rtol=1e-4, atol=1e-4):
            raise NpcaiError(f"{series.name}: mixed pixel spacings ({ref.pixel_spacing} and {s.pixel_spacing}); "
                             "remove the odd slices")
    normal = np.cross(ref.orientation[:3], ref.orientation[3:])
    pos = np.array([float(normal @ s.position) for s in slices])
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    ordered = [slices[i] for i in order]
    steps = np.diff(pos)
    if len(steps) and steps.min() < _DUPLICATE_TOL_MM:
        k = int(np.argmin(steps))
        raise NpcaiError(f"{series.name}: duplicate slice position {pos[k]:.2f} mm ({ordered[k].path.name} and "
                         f"{ordered[k + 1].path.name}); remove the duplicates or split the series")
    if len(steps) >= 2:
        # the slice spacing is the smallest step: a missing slice makes a step longer, never
        # shorter (the median of few steps is wrong: 0, 10, 15 mm has median 7.5 mm)
        usual = float(steps.min())
        bad = np.where(steps - usual > max(_GAP_TOL * usual, 0.01))[0]
        if len(bad):
            k = int(bad[0])
            n_missing = int(sum(max(round(steps[b] / usual) - 1, 1) for b in bad))
            more = f" and {len(bad) - 1} other gap(s)" if len(bad) > 1 else ""
            lost = f"; {len(series.skipped_files)} unreadable file(s) in it (e.g. {series.skipped_files[0]})" \
                if series.skipped_files else ""
            raise NpcaiError(f"{series.name}: missing slice(s) between {pos[k]:.2f} and {pos[k + 1]:.2f} mm "
                             f"({ordered[k].path.name} and {ordered[k + 1].path.name}: step {steps[k]:.2f} mm, "
                             f"slices {usual:.2f} mm apart elsewhere{more}; about {n_missing} slice(s) missing)"
                             f"{lost}; re-export the complete series")
    if series.skipped_files:
        log.warning("%s: skipped %d unreadable file(s) (%s); the remaining %d slices are evenly spaced",
                    series.name, len(series.skipped_files), ", ".join(series.skipped_files[:3]), len(ordered))
    series.files = [s.path for s in ordered]
    series.positions_mm = [float(p) for p in pos]
    series.orientation = tuple(float(v) for v in ref.orientation)
    series.origin = tuple(float(v) for v in ordered[0].position)
    series.pixel_spacing = ref.pixel_spacing
    same_layout = ref.layout is not None and all(s.layout == ref.layout for s in ordered)
    series.pixel_layout = ref.layout if same_layout else None
    series.pixel_offsets = [s.pixel_offset for s in ordered] if same_layout else []


def _rtstruct_entry(ds: Any, path: Path, root: Path) -> RtStructFile:
    refs: list[str] = []
    frame = ""
    for rf in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        frame = frame or _str(rf, "FrameOfReferenceUID")
        for st in rf.get("RTReferencedStudySequence", []) or []:
            for se in st.get("RTReferencedSeriesSequence", []) or []:
                refs.append(_str(se, "SeriesInstanceUID"))
    if not frame:
        for roi in ds.get("StructureSetROISequence", []) or []:
            frame = _str(roi, "ReferencedFrameOfReferenceUID")
            if frame:
                break
    return RtStructFile(path=path, hospital_id=_str(ds, "PatientID"), referenced_series=refs,
                        frame_of_reference=frame, folder=_rel(path.parent, root))


def find_rtstructs(folder: str | os.PathLike) -> list[RtStructFile]:
    """RTSTRUCT files anywhere under ``folder`` (other files are ignored)."""
    folder = Path(folder)
    found = []
    for path in (p for p in walk_files(folder) if _is_candidate(p)):
        try:
            ds, _, _ = _read_header(path)
        except Exception:  # noqa: BLE001 - not DICOM: not an RTSTRUCT
            continue
        if _str(ds, "Modality") == "RTSTRUCT":
            found.append(_rtstruct_entry(ds, path, folder))
    return found


def read_series(series: DicomSeries):
    """The checked series as a SimpleITK image (rescaled values, physical geometry intact).

    A series with a :class:`PixelLayout` is read directly from the pixel data offsets the
    header scan recorded (:func:`read_series_pixels`); any other series, or one whose files
    changed since the scan, through SimpleITK's ``ImageSeriesReader`` on the files in normal
    order (falling back to per-file reading to name a file SimpleITK cannot decode, and
    checking its origin against the DICOM positions). Either way the image carries no
    metadata and its geometry comes from the DICOM positions.
    """
    arr = read_series_pixels(series)
    if arr is None:
        return _read_series_sitk(series)
    return _with_geometry(arr, series)


def read_series_pixels(series: DicomSeries) -> np.ndarray | None:
    """The voxels (z, y, x) of a series with a :class:`PixelLayout`, as SimpleITK reads them.

    Each file's pixel data element is read at its recorded offset; GDCM's rules are applied:
    bits above BitsStored masked off (unsigned) or replaced by the sign bit (signed), then
    ``slope * v + intercept`` in :attr:`PixelLayout.output_dtype`. Returns None when the
    series has no layout or a file no longer holds its pixel data where the scan found it
    (the caller then reads it with SimpleITK, which names the fault).
    """
    layout = series.pixel_layout
    if layout is None or len(series.pixel_offsets) != len(series.files):
        return None
    stored = layout.stored_dtype
    nbytes = layout.rows * layout.cols * stored.itemsize
    arr = np.empty((len(series.files), layout.rows, layout.cols), dtype=stored)
    head_len = 8 if layout.implicit_vr else 12
    for k, (path, offset) in enumerate(zip(series.files, series.pixel_offsets)):
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                head = fh.read(head_len)
                if len(head) != head_len or head[:4] != _PIXEL_DATA_TAG:
                    return None
                if not layout.implicit_vr and head[4:6] not in (b"OB", b"OW"):
                    return None
                length = int.from_bytes(head[-4:], "little")
                if not nbytes <= length <= nbytes + 1:       # one pad byte makes an odd length even
                    return None
                if fh.readinto(memoryview(arr[k]).cast("B")) != nbytes:
                    return None
        except OSError:
            return None
    unused = layout.bits_allocated - layout.bits_stored
    if unused:
        if layout.signed:
            np.left_shift(arr, unused, out=arr)
            np.right_shift(arr, unused, out=arr)            # arithmetic: repeats the sign bit
        else:
            np.bitwise_and(arr, (1 << layout.bits_stored) - 1, out=arr)
    out = layout.output_dtype
    if (layout.slope, layout.intercept) == (1, 0):
        return arr
    rescaled = arr.astype(np.int64) * layout.slope + layout.intercept
    return rescaled.astype(out)


def _with_geometry(arr: np.ndarray, series: DicomSeries):
    """A clean SimpleITK image of ``arr`` (z, y, x) with the geometry of the DICOM positions."""
    import SimpleITK as sitk

    iop = np.asarray(series.orientation, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    direction = np.column_stack([iop[:3], iop[3:], normal]).ravel()
    steps = np.diff(series.positions_mm)
    z_spacing = float(np.median(steps)) if len(steps) else float(series.slice_thickness or 1.0)
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    row_mm, col_mm = series.pixel_spacing
    out.SetSpacing((float(col_mm), float(row_mm), z_spacing))
    out.SetOrigin(series.origin)
    out.SetDirection(tuple(float(v) for v in direction))
    return out


def _read_series_sitk(series: DicomSeries):
    """:func:`read_series` through SimpleITK's ``ImageSeriesReader`` (any transfer syntax)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in series.files])
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.LoadPrivateTagsOff()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        for p in series.files:
            try:
                sitk.ReadImage(str(p))
            except RuntimeError:
                raise NpcaiError(f"{series.name}: file {p.name} cannot be decoded; re-export the series") from exc
        raise NpcaiError(f"{series.name}: SimpleITK cannot read the series ({str(exc).splitlines()[-1][:200]}); "
                         "re-export it") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise NpcaiError(f"{series.name}: colour (multi-component) images are not supported; export greyscale")
    if image.GetDimension() != 3:
        image = sitk.JoinSeries(image)
    # Build a clean image (no metadata) with geometry from the DICOM positions.
    out = _with_geometry(sitk.GetArrayViewFromImage(image), series)
    if image.GetSize() != out.GetSize() or not np.allclose(image.GetOrigin(), out.GetOrigin(), atol=1e-2):
        raise NpcaiError(f"{series.name}: SimpleITK geometry disagrees with the DICOM positions; re-export the series")
    return out
