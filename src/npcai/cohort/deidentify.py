"""Pseudonyms and salted identifier hashes: what keeps hospital identifiers out of a cohort.

Patients get pseudonyms ``P0001, P0002, ...`` in sorted hospital-id order; the mapping is
written *beside* the cohort (:func:`npcai.cohort.model.pseudonym_map_path`), never inside
it. Re-ingesting with an earlier map keeps every known patient's pseudonym and numbers new
patients after the highest one, so dropping a patient never renames the others.

DICOM UIDs are kept only as salted SHA-256 hashes. The salt is random per cohort and is
stored only in the pseudonym map, so whoever holds the map (and the export) can trace a
scan back to its series, and nobody else can re-link scans by hashing the hospital's UIDs.

Pseudonym map (CSV, one row per patient)::

    patient_id,hospital_id,uid_salt
    P0001,H001,9f2c...     # uid_salt: the same 32 hex digits on every row

Examples:
    >>> assign_pseudonyms(["H002", "H010", "H001"])
    {'H001': 'P0001', 'H002': 'P0002', 'H010': 'P0003'}
    >>> assign_pseudonyms(["H002", "H010", "H011"], existing={"H001": "P0001", "H010": "P0003"})
    {'H010': 'P0003', 'H002': 'P0004', 'H011': 'P0005'}
    >>> len(hash_uid("1.2.840.1", salt="00"))
    64
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text

__all__ = ["PseudonymMap", "assign_pseudonyms", "hash_uid", "new_salt", "write_pseudonym_map",
           "read_pseudonym_map", "load_pseudonym_map"]

_PSEUDONYM_RX = re.compile(r"^([A-Za-z]+)(\d+)$")


def new_salt() -> str:
    """A fresh random salt (32 hex digits) for one cohort's UID hashes."""
    return secrets.token_hex(16)


def hash_uid(uid: str, salt: str) -> str:
    """Salted SHA-256 (hex) of a DICOM UID or other source identifier."""
    if not salt:
        raise ValueError("hash_uid: a per-cohort salt is required (unsalted UID hashes re-link scans)")
    return hashlib.sha256(f"{salt}:{uid}".encode("utf-8")).hexdigest()


def _sort_key(hospital_id: str):
    # natural order so H2 < H10; falls back to plain text order
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(hospital_id))]


def assign_pseudonyms(hospital_ids: Iterable[str], prefix: str = "P",
                      existing: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map each distinct hospital id to a pseudonym.

    Args:
        hospital_ids: the patients to name.
        prefix: pseudonym prefix.
        existing: ``{hospital_id: pseudonym}`` of an earlier ingest; these patients keep
            their pseudonym, new ones are numbered after the highest existing number.

    Returns:
        ``{hospital_id: pseudonym}`` for ``hospital_ids`` only, new ids in natural order.
    """
    existing = dict(existing or {})
    ids = sorted(set(map(str, hospital_ids)), key=_sort_key)
    numbers = [int(m.group(2)) for p in existing.values() if (m := _PSEUDONYM_RX.match(p))]
    start = max(numbers, default=0) + 1
    new = [h for h in ids if h not in existing]
    width = max(4, len(str(start + len(new) - 1)), *(len(m.group(2)) for p in existing.values()
                                                     if (m := _PSEUDONYM_RX.match(p))))
    out = {h: existing[h] for h in ids if h in existing}
    out.update({h: f"{prefix}{i:0{width}d}" for i, h in enumerate(new, start=start)})
    return out


@dataclass
class PseudonymMap:
    """A pseudonym map as read back: ``{hospital_id: pseudonym}`` and the cohort's UID salt."""

    pseudonyms: dict[str, str] = field(default_factory=dict)
    salt: str = ""


def write_pseudonym_map(path: str | os.PathLike, mapping: Mapping[str, str], salt: str) -> None:
    """Write ``patient_id,hospital_id,uid_salt`` rows (atomically) to ``path``."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["patient_id", "hospital_id", "uid_salt"])
    for hospital_id, patient_id in sorted(mapping.items(), key=lambda kv: kv[1]):
        w.writerow([patient_id, hospital_id, salt])
    atomic_write_text(Path(path), buf.getvalue())


def load_pseudonym_map(path: str | os.PathLike) -> PseudonymMap:
    """Read a map written by :func:`write_pseudonym_map` (one-line errors for a bad file)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: pseudonym map not found; give the <cohort>.pseudonyms.csv written by ingest")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parser error is a bad file
        raise NpcaiError(f"{path}: not a pseudonym map ({str(exc).splitlines()[0]})") from exc
    if not {"patient_id", "hospital_id"} <= set(df.columns):
        raise NpcaiError(f"{path}: not a pseudonym map (needs columns patient_id, hospital_id)")
    for col in ("patient_id", "hospital_id"):
        dup = df[col][df[col].duplicated()]
        if len(dup):
            raise NpcaiError(f"{path}: {col} {dup.iloc[0]!r} appears twice; a pseudonym map has one row per patient")
    salts = set(df["uid_salt"]) if "uid_salt" in df.columns else set()
    if len(salts) > 1:
        raise NpcaiError(f"{path}: rows carry different uid_salt values; a map holds one cohort's salt")
    return PseudonymMap(dict(zip(df["hospital_id"], df["patient_id"])), next(iter(salts), ""))


def read_pseudonym_map(path: str | os.PathLike) -> dict[str, str]:
    """``{patient_id: hospital_id}`` from a map written by :func:`write_pseudonym_map`."""
    return {p: h for h, p in load_pseudonym_map(path).pseudonyms.items()}
