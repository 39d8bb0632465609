"""Turning one uploaded patient into a private, de-identified one-patient export.

Everything here runs inside a per-request temporary folder (created ``0o700`` by
:func:`tempfile.mkdtemp`, deleted by the caller whatever happens):

1. :func:`check_zip` reads only the zip's central directory and refuses absolute paths,
   ``..`` components, symlinks, encrypted members, too many members and too many
   uncompressed bytes (zip bombs) *before* a single member is decompressed;
2. :func:`extract_upload` writes the members under neutral names (``d003/f00012.dcm``),
   so no folder or file name the hospital chose (which often holds a name or an MRN)
   reaches a message, and stops when a member inflates past its declared size;
3. :func:`deidentify_dicom` rewrites every DICOM file's patient tags in place
   (PatientName, PatientID, birth date, ...) to a constant, so that nothing downstream
   (ingest, its warnings and errors, the logs) ever holds the patient's identifiers.

Examples:
    >>> limits = UploadLimits(max_members=100)                    # doctest: +SKIP
    >>> check_zip(Path("upload.zip"), limits)                     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from npcai.cohort.contours import VOLUME_SUFFIXES, parse_volume_name
from npcai.errors import NpcaiError

__all__ = ["UploadError", "UploadLimits", "UploadedPatient", "check_zip", "extract_upload",
           "deidentify_dicom", "prepare_patient", "UPLOAD_ID"]

log = logging.getLogger(__name__)

#: the hospital id every upload is rewritten to before ingest (never the patient's own)
UPLOAD_ID = "UPLOAD"

#: DICOM attributes replaced before anything reads the files (PS3.15 basic profile, patient module)
PATIENT_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "OtherPatientIDs",
                "OtherPatientNames", "OtherPatientIDsSequence", "PatientAddress", "PatientTelephoneNumbers",
                "PatientMotherBirthName", "MedicalRecordLocator", "IssuerOfPatientID", "PatientBirthName",
                "AccessionNumber", "ReferringPhysicianName", "InstitutionName", "InstitutionAddress",
                "StudyID", "PatientComments", "PerformingPhysicianName", "OperatorsName")
_CONTOUR_WORDS = ("mask", "contour", "label", "seg", "gtv", "roi")


class UploadError(NpcaiError):
    """A refused upload: ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadLimits:
    """Limits on one request's upload.

    Attributes:
        max_bytes: the whole request body (enforced while it streams in).
        max_members: files in the zip.
        max_uncompressed: total uncompressed bytes of the zip's members.
        max_ratio: the largest compression ratio a member may declare (zip bombs reach 1000+).
    """

    max_bytes: int = 500 * 1024 ** 2
    max_members: int = 5000
    max_uncompressed: int = 2 * 1024 ** 3
    max_ratio: float = 200.0

    def __post_init__(self):
        for name in ("max_bytes", "max_members", "max_uncompressed"):
            if int(getattr(self, name)) < 1:
                raise NpcaiError(f"upload limit {name} must be positive, not {getattr(self, name)}")
        if not self.max_ratio > 1:
            raise NpcaiError(f"upload limit max_ratio must be above 1, not {self.max_ratio}")


@dataclass
class UploadedPatient:
    """The one-patient export written by :func:`prepare_patient`.

    Attributes:
        dicom: folder of DICOM files (None when the upload held volumes only).
        images: folder of NIfTI/NRRD volumes named ``UPLOAD_<timepoint>_<sequence>`` (or None).
        contours: folder of label maps / RTSTRUCT files (or None).
        clinical: the one-row clinical CSV (``hospital_id`` = :data:`UPLOAD_ID`).
        n_dicom: DICOM files de-identified.
    """

    dicom: Path | None
    images: Path | None
    contours: Path | None
    clinical: Path
    n_dicom: int = 0


# --------------------------------------------------------------------------- zip
def _unsafe_name(name: str) -> str | None:
    """Why a member name is refused, or None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "a '..' component (zip slip)"
    if "\x00" in name:
        return "a NUL character"
    return None


def check_zip(path: Path, limits: UploadLimits, *, what: str = "images") -> list[zipfile.ZipInfo]:
    """The zip's file members, after checking its central directory (nothing is decompressed).

    Raises:
        UploadError: not a zip (415), or a member that is unsafe or too big (422/413).
    """
    if not zipfile.is_zipfile(path):
        raise UploadError(f"{what}: not a zip archive; zip the patient's DICOM folder (or NIfTI volumes) "
                          "and upload the .zip", status=415)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"{what}: damaged zip archive ({exc}); create the zip again", status=415) from exc
    if len(infos) > limits.max_members:
        raise UploadError(f"{what}: the zip holds {len(infos)} entries, more than the limit of "
                          f"{limits.max_members}; upload one patient's pre-treatment series only", status=413)
    total = 0
    files = []
    for info in infos:
        why = _unsafe_name(info.filename)
        if why:
            raise UploadError(f"{what}: zip member {_shown(info.filename)} has {why}; "
                              "create the zip from inside the patient's folder")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UploadError(f"{what}: zip member {_shown(info.filename)} is a symbolic link; "
                              "zip the files themselves")
        if info.flag_bits & 0x1:
            raise UploadError(f"{what}: zip member {_shown(info.filename)} is encrypted; upload an unencrypted zip")
        if info.is_dir():
            continue
        total += info.file_size
        if total > limits.max_uncompressed:
            raise UploadError(f"{what}: the zip unpacks to more than {_mb(limits.max_uncompressed)} "
                              "(limit); upload one patient's pre-treatment series only", status=413)
        if info.file_size > 1024 ** 2 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise UploadError(f"{what}: zip member {_shown(info.filename)} is compressed "
                              f"{info.file_size / max(info.compress_size, 1):.0f}:1, above the limit of "
                              f"{limits.max_ratio:.0f}:1 (a zip bomb?); upload the scan's own files", status=413)
        files.append(info)
    if not files:
        raise UploadError(f"{what}: the zip is empty; zip the patient's DICOM folder or NIfTI volumes")
    return files


def _shown(name: str) -> str:
    """A member name for messages: only its last component, which the user can find (truncated)."""
    base = PurePosixPath(name.replace("\\", "/")).name or name
    return repr(base[:60])


def _mb(n: int) -> str:
    return f"{n / 1024 ** 2:.0f} MB"


def _volume_suffix(name: str) -> str | None:
    low = name.lower()
    return next((s for s in VOLUME_SUFFIXES if low.endswith(s)), None)


def _volume_key(name: str) -> tuple[str, str, str] | None:
    """``(id, timepoint, sequence)`` of ``[<id>_][<timepoint>_]<sequence>.nii.gz``, or None."""
    return parse_volume_name(name) or parse_volume_name(f"{UPLOAD_ID}_{name}")


def _is_contour_name(name: str) -> bool:
    low = name.replace("\\", "/").lower()
    return any(w in part for part in low.split("/") for w in _CONTOUR_WORDS)


def extract_upload(path: Path, infos: list[zipfile.ZipInfo], dest: Path, limits: UploadLimits,
                   *, what: str = "images") -> dict[str, list[Path]]:
    """Write the checked members under neutral names; returns ``{"dicom", "volumes", "contours"}`` paths.

    DICOM candidates go to ``dest/dicom/d<folder>/f<n>.dcm``; volumes keep only their
    ``<timepoint>_<sequence>`` (``dest/volumes``), label maps (names with mask/contour/label/seg/gtv)
    go to ``dest/contours``. Decompression stops with an error past a member's declared size.
    """
    out = {"dicom": [], "volumes": [], "contours": []}
    folders: dict[str, int] = {}
    total = 0
    with zipfile.ZipFile(path) as zf:
        for n, info in enumerate(infos):
            name = info.filename.replace("\\", "/")
            base = PurePosixPath(name).name
            if base.startswith(".") or "__MACOSX" in name:
                continue
            suffix = _volume_suffix(base)
            if suffix is not None:
                kind = "contours" if _is_contour_name(name) else "volumes"
                target = dest / kind / f"v{n:05d}{suffix}"
                keyed = _volume_key(base)
                if keyed is not None:   # keep the timepoint and sequence, drop the id
                    target = dest / kind / f"{UPLOAD_ID}_{keyed[1]}_{keyed[2]}{suffix}"
                    if target.exists():
                        raise UploadError(f"{what}: two files claim {keyed[1]} {keyed[2]} ({_shown(name)} is the "
                                          "second); keep one")
            else:
                kind = "dicom"
                parent = str(PurePosixPath(name).parent)
                folder = folders.setdefault(parent, len(folders))
                target = dest / "dicom" / f"d{folder:03d}" / f"f{n:05d}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    total += len(chunk)
                    if written > info.file_size or total > limits.max_uncompressed:
                        raise UploadError(f"{what}: zip member {_shown(name)} unpacks past its declared size "
                                          "(a zip bomb?); upload the scan's own files", status=413)
                    dst.write(chunk)
            out[kind].append(target)
    return out


# --------------------------------------------------------------------------- DICOM
def deidentify_dicom(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Replace the patient tags of every readable DICOM file in place; returns (dicom, other files).

    Raises:
        UploadError: the files belong to more than one patient (the ids are not named).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    patients: set[str] = set()
    dicom, other = [], []
    for path in files:
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError, EOFError):
            other.append(path)
            continue
        patients.add(str(ds.get("PatientID", "") or ""))
        for tag in PATIENT_TAGS:
            if tag in ds:
                delattr(ds, tag)
        ds.remove_private_tags()        # vendors hide names and MRNs there too
        ds.PatientID = UPLOAD_ID
        ds.PatientName = "Anonymous"
        ds.save_as(path)
        dicom.append(path)
    if len(patients) > 1:
        raise UploadError(f"images: the DICOM files belong to {len(patients)} different patients; "
                          "upload one patient at a time")
    return dicom, other


def _place_contour(src: Path, dest: Path, *, timepoint: str, sequence: str) -> Path:
    """Copy the separately uploaded contour file where ingest finds it."""
    dest.mkdir(parents=True, exist_ok=True)
    suffix = _volume_suffix(src.name)
    if suffix is not None:
        keyed = _volume_key(src.name)
        tp, seq = (keyed[1], keyed[2]) if keyed else (timepoint, sequence)
        target = dest / f"{UPLOAD_ID}_{tp}_{seq}{suffix}"
        if target.exists():
            raise UploadError(f"contour: the zip already holds a contour for {tp} {seq}; upload one contour")
        shutil.copyfile(src, target)
        return target
    # an RTSTRUCT: de-identified like the images
    target = dest / "rtstruct_upload.dcm"
    shutil.copyfile(src, target)
    dicom, other = deidentify_dicom([target])
    if other:
        raise UploadError("contour: neither a NIfTI/NRRD label map (.nii.gz, .nii, .nrrd) nor a DICOM RTSTRUCT; "
                          "export the tumour contour in one of those formats", status=415)
    return target


def prepare_patient(images_zip: Path, contour: Path | None, work: Path, limits: UploadLimits, *,
                    clinical: dict[str, object], timepoint: str, sequence: str) -> UploadedPatient:
    """Check, extract and de-identify one upload into ``work``; write its one-row clinical CSV.

    Args:
        images_zip: the uploaded zip of DICOM series or NIfTI volumes (+ optional contours).
        contour: the separately uploaded contour (NIfTI label map or RTSTRUCT), or None.
        work: the request's private folder.
        limits: upload limits.
        clinical: validated clinical values (column -> value).
        timepoint, sequence: where a contour without ``<timepoint>_<sequence>`` in its name belongs
            (the model's first input channel).
    """
    infos = check_zip(images_zip, limits)
    found = extract_upload(images_zip, infos, work / "x", limits)
    n_dicom = 0
    dicom_dir = None
    if found["dicom"]:
        dicom, _ = deidentify_dicom(found["dicom"])
        n_dicom = len(dicom)
        if dicom:
            dicom_dir = work / "x" / "dicom"
    volumes = work / "x" / "volumes" if found["volumes"] else None
    contours = work / "x" / "contours" if found["contours"] else None
    if volumes is not None:
        if any(not p.name.startswith(f"{UPLOAD_ID}_") for p in found["volumes"]):
            raise UploadError("images: a volume is not named <sequence>.nii.gz or <timepoint>_<sequence>.nii.gz "
                              "(sequence T1, T2, T1c or CT; timepoint pre or post); rename the files in the zip")
    if dicom_dir is None and volumes is None:
        raise UploadError("images: the zip holds no DICOM image files and no NIfTI/NRRD volumes; "
                          "zip the patient's MR series")
    if contour is not None:
        contours = work / "x" / "contours"
        _place_contour(contour, contours, timepoint=timepoint, sequence=sequence)
    import pandas as pd

    row = {"hospital_id": UPLOAD_ID, **{k: v for k, v in clinical.items() if v is not None}}
    csv = work / "clinical.csv"
    pd.DataFrame([row]).to_csv(csv, index=False)
    return UploadedPatient(dicom=dicom_dir, images=volumes, contours=contours, clinical=csv, n_dicom=n_dicom)
