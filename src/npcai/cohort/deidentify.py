"""Pseudonyms and hashed identifiers: what keeps hospital identifiers out of a cohort.

Patients get pseudonyms ``P0001, P0002, ...`` in sorted hospital-id order; the mapping is
written *beside* the cohort (:func:`npcai.cohort.model.pseudonym_map_path`), never inside
it. DICOM UIDs are kept only as SHA-256 hashes, so a cohort can be traced back to its
source series by someone holding the export, and by nobody else.

Examples:
    >>> assign_pseudonyms(["H002", "H010", "H001"])
    {'H001': 'P0001', 'H002': 'P0002', 'H010': 'P0003'}
    >>> len(hash_uid("1.2.840.1"))
    64
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from npcai.fsutil import atomic_write_text

__all__ = ["assign_pseudonyms", "hash_uid", "write_pseudonym_map", "read_pseudonym_map"]


def hash_uid(uid: str) -> str:
    """SHA-256 (hex) of a DICOM UID or other source identifier."""
    return hashlib.sha256(str(uid).encode("utf-8")).hexdigest()


def _sort_key(hospital_id: str):
    # natural order so H2 < H10; falls back to plain text order
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(hospital_id))]


def assign_pseudonyms(hospital_ids: Iterable[str], prefix: str = "P") -> dict[str, str]:
    """Map each distinct hospital id to ``P0001``... in sorted (natural) hospital-id order."""
    ids = sorted(set(map(str, hospital_ids)), key=_sort_key)
    width = max(4, len(str(len(ids))))
    return {h: f"{prefix}{i:0{width}d}" for i, h in enumerate(ids, start=1)}


def write_pseudonym_map(path: str | os.PathLike, mapping: Mapping[str, str]) -> None:
    """Write ``patient_id,hospital_id`` rows (atomically) to ``path``."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["patient_id", "hospital_id"])
    for hospital_id, patient_id in sorted(mapping.items(), key=lambda kv: kv[1]):
        w.writerow([patient_id, hospital_id])
    atomic_write_text(Path(path), buf.getvalue())


def read_pseudonym_map(path: str | os.PathLike) -> dict[str, str]:
    """``{patient_id: hospital_id}`` from a map written by :func:`write_pseudonym_map`."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str)
    return dict(zip(df["patient_id"], df["hospital_id"]))
