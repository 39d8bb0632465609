"""Ingest a hospital export into a de-identified, validated cohort folder.

The export is DICOM series (any folder layout), and/or NIfTI/NRRD volumes named
``<id>_<sequence>`` / ``<id>_<timepoint>_<sequence>``; contours are label maps named the
same way or DICOM RTSTRUCT files; the clinical table is a CSV or XLSX keyed by
``hospital_id``. :func:`ingest` checks all of it, joins it by hospital id, assigns
pseudonyms and writes the canonical cohort (:mod:`npcai.cohort.model`) atomically:
either the whole folder appears, or nothing does.

What reaches the cohort: voxel data and geometry, pseudonyms, the clinical schema's
columns plus those named in ``keep_columns`` (by allowlist; identifying ones refused
unless ``keep_ids``; ``hospital_id`` only with ``keep_ids``), SHA-256 hashes of source
UIDs salted per cohort, file hashes and mask statistics. What does not: any DICOM tag,
hospital id, name or date, nor the salt. The pseudonym map (with the salt) is written
beside the cohort (:func:`npcai.cohort.model.pseudonym_map_path`); given back as
``pseudonyms`` on a re-ingest it keeps every patient's pseudonym and the salt.

Examples:
    >>> report = ingest("export/dicom", clinical="export/clinical.csv", out="cohort",
    ...                 contours="export/contours")                       # doctest: +SKIP
    >>> report["patients"], report["scans"]                               # doctest: +SKIP
    (120, 240)
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from npcai.cohort.clinical_schema import allowlist_columns, read_clinical, validate_clinical
from npcai.cohort.contours import find_volumes, read_volume
from npcai.cohort.convert import ScanJob, convert_scan
from npcai.cohort.deidentify import assign_pseudonyms, hash_uid, load_pseudonym_map, new_salt, write_pseudonym_map
from npcai.cohort.dicom_series import (DicomSeries, RtStructFile, SequenceMap, discover_series, find_rtstructs,
                                       read_series)
from npcai.cohort.parallel import check_workers, iter_ordered_map, with_shared_workers
from npcai.cohort.model import Cohort, Patient, Scan, pseudonym_map_path, scan_id
from npcai.cohort.rtstruct import load_roi_map
from npcai.errors import NpcaiError
from npcai.fsutil import atomic_output_dir, check_output_path, check_replaceable, file_sha256
from npcai.progress import track

__all__ = ["ingest"]

log = logging.getLogger(__name__)


@dataclass
class _Source:
    """One image volume to ingest, before pseudonymisation."""

    hospital_id: str
    timepoint: str
    sequence: str
    name: str                                   # for messages (series folder or file name)
    load: Callable[[], Any]                     # -> SimpleITK image
    source: dict[str, Any]
    series_uid: str | None = None
    frame_of_reference: str | None = None
    contour: Path | None = None
    rtstruct: Path | None = None
    path: Path | None = None                     # the volume file (images mode)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.hospital_id, self.timepoint, self.sequence


@dataclass
class _Report:
    warnings: list[str] = field(default_factory=list)

    def warn(self, msg: str) -> None:
        log.warning(msg)
        self.warnings.append(msg)


@with_shared_workers          # the header scan and the conversion share one pool of worker processes
def ingest(export: str | os.PathLike | None = None, *, clinical: str | os.PathLike, out: str | os.PathLike,
           contours: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
           sequence_map: SequenceMap | Mapping[str, str] | str | os.PathLike | None = None,
           keep_ids: bool = False, sheet: str | None = None, overwrite: bool = False,
           roi_map: Mapping[str, int] | str | os.PathLike | None = None, keep_columns: Iterable[str] = (),
           pseudonyms: str | os.PathLike | None = None, workers: int | None = None,
           compress: bool = True) -> dict[str, Any]:
    """Turn an export (DICOM and/or NIfTI/NRRD volumes + contours + clinical table) into a cohort.

    Args:
        export: folder searched recursively for DICOM series (and RTSTRUCT files); optional
            when ``images`` is given.
        clinical: CSV or XLSX with a ``hospital_id`` column (matching DICOM PatientID or the
            ``<id>`` of volume file names) and optional clinical columns.
        out: the cohort folder to create (written atomically).
        contours: folder of label maps ``<id>[_<timepoint>]_<sequence>.nii.gz|.nrrd`` and/or
            RTSTRUCT ``.dcm`` files; default ``EXPORT/contours`` when that folder exists.
        images: folder of volumes ``<id>[_<timepoint>]_<sequence>.nii.gz|.nrrd`` (sequence
            T1, T2, T1c or CT).
        sequence_map: ``{sequence: regex}`` (or a YAML path) recognising sequences from
            SeriesDescription; defaults to :data:`npcai.cohort.dicom_series.DEFAULT_SEQUENCE_MAP`.
        keep_ids: keep the ``hospital_id`` column in ``clinical.csv`` and accept identifying
            columns named in ``keep_columns`` (the cohort is then not de-identified).
        sheet: the Excel sheet holding the table (required for multi-sheet workbooks).
        overwrite: replace an existing non-empty ``out``.
        roi_map: RTSTRUCT ROI names -> label (1 tumour, 2 nodes), dict or YAML path.
        keep_columns: clinical columns outside the schema to keep (others are dropped).
        pseudonyms: the pseudonym map of an earlier ingest of this export: its patients keep
            their pseudonyms (and the UID salt), new patients are numbered after them.
        workers: processes reading DICOM headers and converting scans in parallel (default:
            one per 100 files or scans, at most one per free core); the cohort written is
            byte-for-byte the same for any count (``cohort.json``'s date aside).
        compress: write gzip-compressed NIfTI (``.nii.gz``, default); False writes ``.nii``,
            about 1.6 times the disk space and several times faster to write and to read.

    Returns:
        A report: counts (``patients``, ``scans``, ``masks``, ``slices``), ``scans_per_group``,
        ``images_without_clinical`` and ``clinical_without_images`` (hospital ids, for the
        user's eyes only; never written to the cohort), ``unmatched_contours``,
        ``scans_without_contour``, ``skipped_files``, ``ignored_series`` and ``warnings``.

    Raises:
        NpcaiError: one line naming the file, series, patient or column at fault; nothing
            is written then.

    Examples:
        >>> ingest(None, images="kbp/images", contours="kbp/contours", clinical="ids.csv",
        ...        out="kbp_cohort")["modality"]                                 # doctest: +SKIP
        'CT'
    """
    import time

    t0 = time.perf_counter()
    rep = _Report()
    check_workers(workers)
    if export is None and images is None:
        raise NpcaiError("ingest: give an EXPORT folder with DICOM series, or --images DIR with NIfTI/NRRD volumes")
    out = check_output_path(out, [export, clinical, contours, images, pseudonyms,
                                  *(p for p in (sequence_map, roi_map) if isinstance(p, (str, os.PathLike)))])
    check_replaceable(out, overwrite)
    if contours is None and export is not None and (Path(export) / "contours").is_dir():
        contours = Path(export) / "contours"
        log.info("using the export's contour folder %s (give contours to use another)", contours)
    earlier = load_pseudonym_map(pseudonyms) if pseudonyms is not None else None
    salt = earlier.salt if earlier is not None and earlier.salt else new_salt()
    seq_map = SequenceMap.coerce(sequence_map)
    rois = load_roi_map(roi_map)

    # ---- clinical table first: cheap, and the most common source of errors
    raw = read_clinical(clinical, sheet=sheet)
    if "patient_id" in raw.columns:
        raise NpcaiError(f"{Path(clinical).name}: column 'patient_id' is reserved for the pseudonyms ingest assigns; "
                         "rename it (to hospital_id if it holds the hospital's patient id)")
    raw, dropped = allowlist_columns(raw, keep_columns, keep_ids=keep_ids)
    if dropped:
        rep.warn(f"{Path(clinical).name}: dropped {len(dropped)} column(s) outside the clinical schema: "
                 f"{', '.join(map(repr, dropped))} (only schema columns and columns named to keep enter a cohort; "
                 "identifying ones never do)")
    table = validate_clinical(raw)

    # ---- image sources
    sources: list[_Source] = []
    rtstructs: list[RtStructFile] = []
    info: dict[str, Any] = {"unreadable": [], "ignored_series": {}, "files": 0}
    if export is not None:
        series, rtstructs, info = discover_series(export, sequence_map=seq_map, workers=workers)
        if not series and images is None:
            raise NpcaiError(f"{export}: no MR/CT series with a recognised sequence; check --sequence-map "
                             f"(series seen: {', '.join(info['ignored_series']) or 'none'})")
        _assign_timepoints(series)
        sources += [_dicom_source(s, salt) for s in series]
        if info["unreadable"]:   # already logged per series by discover_series
            rep.warnings.append(f"{export}: skipped {len(info['unreadable'])} unreadable DICOM file(s): "
                     f"{', '.join(info['unreadable'][:3])}")
        if info["ignored_series"]:
            rep.warnings.append(f"{export}: ignored {sum(info['ignored_series'].values())} series with no recognised "
                                f"sequence ({', '.join(sorted(info['ignored_series']))})")
    if images is not None:
        for key, path in find_volumes(images, "image").items():
            sources.append(_volume_source(key, path))
    by_key: dict[tuple[str, str, str], _Source] = {}
    for s in sources:
        if s.key in by_key:
            raise NpcaiError(f"patient {s.key[0]}: {by_key[s.key].name} and {s.name} both claim "
                             f"{s.key[1]} {s.key[2]}; remove one or adjust --sequence-map")
        by_key[s.key] = s
    if not by_key:
        raise NpcaiError(f"{images or export}: no image volumes found; name them <id>_<sequence>.nii.gz")

    # ---- contours
    unmatched_contours = _attach_contours(by_key, contours, rtstructs, rep)

    # ---- join with the clinical table
    image_ids = {s.hospital_id for s in by_key.values()}
    clinical_ids = set(table["hospital_id"])
    no_clinical = sorted(image_ids - clinical_ids)
    no_images = sorted(clinical_ids - image_ids)
    included = image_ids & clinical_ids
    src_name = Path(clinical).name
    if not included:
        raise NpcaiError(f"{src_name}: no hospital_id matches a patient of the images (e.g. images have "
                         f"{sorted(image_ids)[:3]}, table has {sorted(clinical_ids)[:3]}); "
                         "the hospital_id column must equal the DICOM PatientID or file-name id")
    if no_clinical:
        rep.warn(f"{len(no_clinical)} patient(s) with images but no row in {src_name} were excluded: "
                 f"{', '.join(no_clinical[:10])}{' ...' if len(no_clinical) > 10 else ''}")
    if no_images:
        rep.warn(f"{len(no_images)} patient(s) in {src_name} have no images and were excluded: "
                 f"{', '.join(no_images[:10])}{' ...' if len(no_images) > 10 else ''}")
    known = earlier.pseudonyms if earlier is not None else {}
    pseudonyms = assign_pseudonyms(included, existing=known)

    # ---- write
    truth = _phantom_truth(export, images, clinical)
    todo = sorted((s for s in by_key.values() if s.hospital_id in included),
                  key=lambda s: (pseudonyms[s.hospital_id], s.timepoint != "pre", s.sequence))
    patients: dict[str, Patient] = {}
    centre_col = "centre" if "centre" in table.columns else None
    centres = dict(zip(table["hospital_id"], table[centre_col])) if centre_col else {}
    no_contour: list[str] = []
    n_slices = 0
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        suffix = ".nii.gz" if compress else ".nii"
        sids = [scan_id(pseudonyms[src.hospital_id], src.timepoint, src.sequence) for src in todo]
        jobs = [ScanJob(load=src.load, image_path=tmp / "images" / f"{sid}{suffix}",
                         mask_path=tmp / "masks" / f"{sid}{suffix}", contour=src.contour, rtstruct=src.rtstruct,
                         rois=dict(rois), compress=compress) for src, sid in zip(todo, sids)]
        converted = iter_ordered_map(convert_scan, jobs, workers=workers)
        for src, sid, done in track(zip(todo, sids, converted), "Converting scans", total=len(todo)):
            pid = pseudonyms[src.hospital_id]
            if src.path is not None:
                src.source["file_sha256"] = file_sha256(src.path)
            n_slices += done.size[2]
            scan = Scan(scan_id=sid, patient_id=pid, timepoint=src.timepoint, sequence=src.sequence,
                        image=f"images/{sid}{suffix}", size=done.size, spacing=done.spacing, origin=done.origin,
                        direction=done.direction, source=dict(src.source), image_sha256=done.image_sha256)
            if done.mask_stats is None:
                no_contour.append(sid)
            else:
                scan.mask = f"masks/{sid}{suffix}"
                scan.mask_stats = done.mask_stats
                scan.source["contour"] = done.contour_source
            patient = patients.setdefault(pid, Patient(patient_id=pid, centre=_centre(centres.get(src.hospital_id))))
            patient.scans.append(scan)

        clin = table[table["hospital_id"].isin(included)].copy()
        clin.insert(0, "patient_id", clin["hospital_id"].map(pseudonyms))
        if not keep_ids:
            clin = clin.drop(columns=["hospital_id"])
        clin = clin.sort_values("patient_id")
        clin.to_csv(tmp / "clinical.csv", index=False)
        endpoints = [c for c in clin.columns if c not in ("patient_id", "hospital_id")]

        source: dict[str, Any] = {
            "kind": "+".join(k for k, v in (("dicom", export), ("volumes", images)) if v is not None),
            "input_sha256": _input_hash(todo, clinical),
            "clinical_sha256": file_sha256(clinical),
            "keep_ids": bool(keep_ids),
            "kept_columns": [c for c in raw.columns if c != "hospital_id"],
            "sequence_map": {k: v.pattern for k, v in seq_map.patterns.items()},
        }
        if truth is not None:
            source["phantom_truth"] = str(truth)
        from npcai import __version__

        modality = "CT" if all(s.sequence == "CT" for s in todo) else "MR"
        cohort = Cohort(root=out, patients=[patients[p] for p in sorted(patients)], modality=modality,
                        created_by={"npcai": __version__, "command": "ingest",
                                    "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
                        source=source, endpoints=endpoints)
        cohort.save(tmp)
        # every patient of the earlier map keeps its row: the map only ever grows
        write_pseudonym_map(pseudonym_map_path(out), {**known, **pseudonyms}, salt)

    if no_contour:
        rep.warn(f"{len(no_contour)} scan(s) have no contour: {', '.join(no_contour[:8])}"
                 f"{' ...' if len(no_contour) > 8 else ''}")
    groups: dict[str, int] = defaultdict(int)
    for s in todo:
        groups[f"{s.timepoint} {s.sequence}"] += 1
    return {
        "out": str(out),
        "pseudonym_map": str(pseudonym_map_path(out)),
        "patients": len(patients),
        "scans": len(todo),
        "masks": len(todo) - len(no_contour),
        "slices": n_slices,
        "scans_per_group": dict(groups),
        "endpoints": endpoints,
        "modality": modality,
        "images_without_clinical": no_clinical,
        "clinical_without_images": no_images,
        "unmatched_contours": unmatched_contours,
        "scans_without_contour": no_contour,
        "dropped_columns": dropped,
        "contours": str(contours) if contours is not None else None,
        "skipped_files": list(info["unreadable"]),
        "ignored_series": dict(info["ignored_series"]),
        "warnings": rep.warnings,
        "phantom_truth": str(truth) if truth else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# --------------------------------------------------------------------------- sources
def _assign_timepoints(series: list[DicomSeries]) -> None:
    """Earliest StudyDate per patient is ``pre``, later dates ``post``."""
    by_patient: dict[str, list[DicomSeries]] = defaultdict(list)
    for s in series:
        by_patient[s.hospital_id].append(s)
    for hid, group in by_patient.items():
        studies = {s.study_uid: s.study_date for s in group}
        if len(studies) > 1 and any(not d for d in studies.values()):
            raise NpcaiError(f"patient {hid}: {len(studies)} studies but some lack a StudyDate, so pre/post "
                             "cannot be told apart; fix StudyDate or ingest the timepoints separately")
        dates = sorted(set(studies.values()))
        for s in group:
            s.timepoint = "pre" if s.study_date == dates[0] else "post"


def _dicom_source(s: DicomSeries, salt: str) -> _Source:
    return _Source(hospital_id=s.hospital_id, timepoint=s.timepoint or "pre", sequence=s.sequence or "",
                   name=s.name, load=partial(read_series, s),
                   source={"kind": "dicom", "modality": s.modality, "series_uid_hash": hash_uid(s.series_uid, salt),
                           "study_uid_hash": hash_uid(s.study_uid, salt), "n_files": len(s.files),
                           "skipped_files": len(s.skipped_files), **({"scanner": s.scanner} if s.scanner else {})},
                   series_uid=s.series_uid, frame_of_reference=s.frame_of_reference)


def _volume_source(key: tuple[str, str, str], path: Path) -> _Source:
    return _Source(hospital_id=key[0], timepoint=key[1], sequence=key[2], name=path.name,
                   load=partial(read_volume, path), path=path,
                   source={"kind": "volume", "format": _format(path)})


def _format(path: Path) -> str:
    n = path.name.lower()
    return "nifti" if ".nii" in n else "nrrd" if ".nrrd" in n or ".nhdr" in n else "metaimage"


def _attach_contours(by_key: dict[tuple[str, str, str], _Source], contours: str | os.PathLike | None,
                     rtstructs: list[RtStructFile], rep: _Report) -> list[str]:
    """Match label maps and RTSTRUCTs to sources; returns the names of unmatched contour files."""
    unmatched: list[str] = []
    if contours is not None:
        folder = Path(contours)
        for key, path in find_volumes(folder, "contour", prefer_timepointed=True).items():
            if key in by_key:
                by_key[key].contour = path
            else:
                unmatched.append(path.name)
        seen = {rt.path.resolve() for rt in rtstructs}      # the contour folder may lie inside the export
        rtstructs = rtstructs + [rt for rt in find_rtstructs(folder) if rt.path.resolve() not in seen]
    by_uid = {s.series_uid: s for s in by_key.values() if s.series_uid}
    for rt in rtstructs:
        target = None
        for uid in rt.referenced_series:
            if uid in by_uid:
                target = by_uid[uid]
                break
        if target is None and rt.frame_of_reference:
            cands = [s for s in by_uid.values() if s.frame_of_reference == rt.frame_of_reference
                     and (not rt.hospital_id or s.hospital_id == rt.hospital_id)]
            if len(cands) == 1:
                target = cands[0]
            elif len(cands) > 1:
                raise NpcaiError(f"{rt.path.name}: RTSTRUCT names no series and its frame of reference holds "
                                 f"{len(cands)} series ({', '.join(c.name for c in cands[:3])}); "
                                 "re-export it with referenced series")
        if target is None:
            unmatched.append(rt.path.name)
            continue
        if target.contour is not None or target.rtstruct is not None:
            other = target.contour or target.rtstruct
            raise NpcaiError(f"{target.name}: two contours ({other.name} and {rt.path.name}); keep one")
        target.rtstruct = rt.path
    if unmatched:
        rep.warn(f"{len(unmatched)} contour file(s) match no scan and were ignored: {', '.join(unmatched[:8])}")
    return unmatched


def _centre(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _phantom_truth(export, images, clinical) -> Path | None:
    for base in (export, images, clinical):
        if base is None:
            continue
        cand = Path(base).resolve().parent / "truth"
        if cand.is_dir():
            return cand
    return None


def _input_hash(sources, clinical) -> str:
    h = hashlib.sha256()
    h.update(file_sha256(clinical).encode())
    for s in sorted(sources, key=lambda s: s.key):
        h.update((s.source.get("series_uid_hash") or s.source.get("file_sha256") or "").encode())
        for p in (s.contour, s.rtstruct):
            if p is not None:
                h.update(file_sha256(p).encode())
    return h.hexdigest()
