"""The canonical cohort: what ``npcai ingest`` writes and every later stage reads.

A cohort is a folder::

    COHORT/
      cohort.json            # this module's :class:`Cohort`, serialised
      clinical.csv           # one row per patient, keyed by ``patient_id`` (pseudonym)
      images/<scan_id>.nii.gz
      masks/<scan_id>.nii.gz        # manual contours: 0 background, 1 primary tumour, 2 nodes
      masks/<scan_id>_auto.nii.gz   # automatic masks from ``npcai segment predict``
      roi/<name>/                   # ROI caches (``npcai roi build``)

``scan_id`` is ``<patient_id>_<timepoint>_<sequence>``, e.g. ``P0001_pre_T1c``.
The pseudonym-to-hospital-id mapping lives *beside* the cohort
(:func:`pseudonym_map_path`), never inside it.

Array convention: ``read_array`` returns SimpleITK's numpy order ``(z, y, x)``; axial slice
``k`` is ``array[k]`` and its in-plane pixel spacing is ``(spacing[1], spacing[0])`` for
``(row, column)``.

Examples:
    >>> cohort = Cohort.load("cohort")                      # doctest: +SKIP
    >>> scan = cohort.scans(timepoint="pre", sequence="T1c")[0]   # doctest: +SKIP
    >>> image = cohort.read_array(scan)                     # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text

__all__ = [
    "COHORT_FORMAT", "SEQUENCES", "TIMEPOINTS", "LABELS", "Scan", "Patient", "Cohort",
    "scan_id", "pseudonym_map_path",
]

COHORT_FORMAT = "npcai-cohort/1"
SEQUENCES = ("T1", "T2", "T1c", "CT")
TIMEPOINTS = ("pre", "post")
LABELS = {"tumour": 1, "nodes": 2}
_REINGEST = "the cohort file is damaged; re-run `npcai ingest` (or restore the cohort from a backup)"

MaskKind = Literal["manual", "auto"]


def scan_id(patient_id: str, timepoint: str, sequence: str) -> str:
    """The canonical scan identifier ``<patient>_<timepoint>_<sequence>``."""
    return f"{patient_id}_{timepoint}_{sequence}"


def pseudonym_map_path(cohort_dir: str | Path) -> Path:
    """Where ingest writes the pseudonym -> hospital id table: beside the cohort, never inside
    it nor inside any other npcai output (a study folder holding its ingested cohort).

    ``/x/cohort`` -> ``/x/cohort.pseudonyms.csv``; ``/x/study/cohort`` (a study's own
    cohort) -> ``/x/study.cohort.pseudonyms.csv``, beside the study folder.
    """
    from npcai.fsutil import OUTPUT_MARKER

    cohort_dir = Path(cohort_dir).resolve()
    names, base = [cohort_dir.name], cohort_dir.parent
    while base.parent != base and any((base / f).is_file() for f in (OUTPUT_MARKER, "study.yaml", "cohort.json")):
        names.insert(0, base.name)
        base = base.parent
    return base / f"{'.'.join(names)}.pseudonyms.csv"


@dataclass
class Scan:
    """One image volume of one patient at one timepoint and sequence, with its masks."""

    scan_id: str
    patient_id: str
    timepoint: str                     # "pre" | "post"
    sequence: str                      # "T1" | "T2" | "T1c" | "CT"
    image: str                         # path relative to the cohort folder
    size: list[int]                    # SimpleITK order (x, y, z)
    spacing: list[float]               # mm, SimpleITK order (x, y, z)
    origin: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    direction: list[float] = field(default_factory=lambda: [1, 0, 0, 0, 1, 0, 0, 0, 1])
    mask: str | None = None            # manual contour label map, relative path
    auto_mask: str | None = None       # automatic mask, relative path
    auto_mask_provenance: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)   # e.g. {"kind": "dicom", "series_uid_hash": ...}
    mask_stats: dict[str, Any] = field(default_factory=dict)  # slices_tumour, slices_nodes, volume_*_ml
    image_sha256: str | None = None


@dataclass
class Patient:
    """A pseudonymised patient and their scans."""

    patient_id: str
    scans: list[Scan] = field(default_factory=list)
    centre: str | None = None


@dataclass
class Cohort:
    """A validated, de-identified cohort folder (see module docstring)."""

    root: Path
    patients: list[Patient]
    modality: str = "MR"
    created_by: dict[str, Any] = field(default_factory=dict)   # npcai version, command, date
    source: dict[str, Any] = field(default_factory=dict)       # export kind, input hash, phantom truth path
    endpoints: list[str] = field(default_factory=list)         # clinical columns present
    format: str = COHORT_FORMAT

    # ---------------------------------------------------------------- persistence
    @classmethod
    def load(cls, root: str | Path) -> "Cohort":
        """Read ``root/cohort.json``; fails with one line when the folder is not a cohort."""
        root = Path(root)
        path = root / "cohort.json"
        if not path.is_file():
            raise NpcaiError(f"{root}: not an npcai cohort (no cohort.json); create one with `npcai ingest`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise NpcaiError(f"{path}: not valid JSON ({exc}); re-run `npcai ingest`") from exc
        if not isinstance(data, dict):
            raise NpcaiError(f"{path}: holds a JSON {type(data).__name__}, not a cohort description; "
                             "re-run `npcai ingest`")
        if data.get("format") != COHORT_FORMAT:
            raise NpcaiError(f"{path}: format {data.get('format')!r} is not {COHORT_FORMAT!r}; re-run `npcai ingest`")
        try:
            patients = [
                Patient(patient_id=p["patient_id"], centre=p.get("centre"),
                        scans=[Scan(**s) for s in p.get("scans", [])])
                for p in data["patients"]
            ]
        except (KeyError, TypeError, AttributeError) as exc:
            raise NpcaiError(f"{path}: the patient list is damaged ({type(exc).__name__}: {exc}); "
                             "re-run `npcai ingest`") from exc
        return cls(root=root, patients=patients, modality=data.get("modality", "MR"),
                   created_by=data.get("created_by", {}), source=data.get("source", {}),
                   endpoints=data.get("endpoints", []), format=data["format"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "modality": self.modality,
            "created_by": self.created_by,
            "source": self.source,
            "endpoints": self.endpoints,
            "patients": [
                {"patient_id": p.patient_id, "centre": p.centre,
                 "scans": [dataclasses.asdict(s) for s in p.scans]}
                for p in self.patients
            ],
        }

    def save(self, root: str | Path | None = None) -> None:
        """Write cohort.json atomically (into ``root`` or the cohort's own folder)."""
        root = Path(root) if root is not None else self.root
        atomic_write_text(root / "cohort.json", json.dumps(self.to_dict(), indent=1))

    # ---------------------------------------------------------------- queries
    @property
    def patient_ids(self) -> list[str]:
        return [p.patient_id for p in self.patients]

    def patient(self, patient_id: str) -> Patient:
        for p in self.patients:
            if p.patient_id == patient_id:
                return p
        raise NpcaiError(f"{self.root}: no patient {patient_id!r} in the cohort; see `npcai validate {self.root}`")

    def scans(self, timepoint: str | None = None, sequence: str | None = None,
              patient_id: str | None = None) -> list[Scan]:
        """All scans, optionally filtered by timepoint, sequence and patient."""
        return [s for p in self.patients for s in p.scans
                if (timepoint is None or s.timepoint == timepoint)
                and (sequence is None or s.sequence == sequence)
                and (patient_id is None or s.patient_id == patient_id)]

    def scan(self, scan_id_: str) -> Scan:
        for s in self.scans():
            if s.scan_id == scan_id_:
                return s
        raise NpcaiError(f"{self.root}: no scan {scan_id_!r} in the cohort")

    def clinical(self):
        """The clinical table (pandas DataFrame indexed by ``patient_id``)."""
        import pandas as pd

        path = self.root / "clinical.csv"
        if not path.is_file():
            raise NpcaiError(f"{path}: missing; re-run `npcai ingest`")
        return pd.read_csv(path, dtype={"patient_id": str}).set_index("patient_id")

    # ---------------------------------------------------------------- volumes
    def path(self, relative: str) -> Path:
        return self.root / relative

    def read_image(self, scan: Scan):
        """The scan as a SimpleITK image (physical geometry intact)."""
        from npcai.cohort.contours import read_image_file

        return read_image_file(self.path(scan.image), fix=_REINGEST)

    def read_array(self, scan: Scan) -> np.ndarray:
        """The scan's voxels as float32, numpy order (z, y, x)."""
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(self.read_image(scan)).astype(np.float32, copy=False)

    def read_mask(self, scan: Scan, kind: MaskKind = "manual") -> np.ndarray:
        """The scan's label map as uint8, numpy order (z, y, x): 1 tumour, 2 nodes."""
        import SimpleITK as sitk

        rel = scan.mask if kind == "manual" else scan.auto_mask
        if rel is None:
            hint = "add contours and re-run `npcai ingest`" if kind == "manual" else \
                "run `npcai segment predict` first"
            raise NpcaiError(f"scan {scan.scan_id}: no {kind} mask; {hint}")
        from npcai.cohort.contours import read_image_file

        return sitk.GetArrayFromImage(read_image_file(self.path(rel), fix=_REINGEST)).astype(np.uint8, copy=False)
