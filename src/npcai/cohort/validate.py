"""Re-check a cohort folder and summarise it (what ``npcai validate`` prints).

:func:`validate_cohort` re-reads every file a cohort lists and reports problems (missing
files, image headers that disagree with cohort.json, masks off their image's grid or with
labels other than 0/1/2, clinical rows that do not join, a hospital id column in a
de-identified cohort) and, as warnings, what real exports get wrong without breaking a file
(:func:`data_warnings`): the same pixel data under two sequences or timepoints, spacing that
was assumed or is the no-header default, sequences and masks missing for some patients.
:func:`cohort_summary` returns the numbers a study report shows:
patients, scans per sequence and timepoint, slices with tumour and with nodes, and the
balance and censoring of each endpoint.

Examples:
    >>> result = validate_cohort("cohort")          # doctest: +SKIP
    >>> result.ok, result.problems                  # doctest: +SKIP
    (True, [])
    >>> result.warnings                             # doctest: +SKIP
    ['identical pixel data under two sequences or timepoints for 1 patient(s): P0003 (pre T1 = pre T2) ...']
    >>> cohort_summary("cohort").endpoints          # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.cohort.clinical_schema import binary_columns, identifying_columns, survival_endpoints, validate_clinical
from npcai.cohort.model import TIMEPOINTS, Cohort, pseudonym_map_path
from npcai.errors import NpcaiError
from npcai.progress import track

__all__ = ["CohortSummary", "ValidationResult", "cohort_summary", "data_warnings", "validate_cohort"]

_SHOW = 8   # patients or scans named per line before "..."


@dataclass
class CohortSummary:
    """Counts describing a cohort (each table a pandas DataFrame).

    Attributes:
        patients: number of patients.
        modality: "MR" or "CT".
        scans: rows sequence, columns timepoint, values number of scans.
        masks: one row per (timepoint, sequence): scans, scans with a manual mask, slices,
            slices with tumour, slices with nodes, tumour and node volume (median ml).
        endpoints: one row per endpoint: kind (survival/binary), n, events or positives,
            censored or negatives, missing, censoring %, median time.
    """

    patients: int
    modality: str
    scans: pd.DataFrame
    masks: pd.DataFrame
    endpoints: pd.DataFrame
    clinical_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"patients": self.patients, "modality": self.modality,
                "scans": self.scans.reset_index().to_dict(orient="records"),
                "masks": self.masks.to_dict(orient="records"),
                "endpoints": self.endpoints.to_dict(orient="records"),
                "clinical_columns": list(self.clinical_columns)}


@dataclass
class ValidationResult:
    """``problems`` (one line each: the cohort is broken), the cohort's :class:`CohortSummary`
    (None if unreadable) and ``warnings`` (one line each: the cohort is usable, but check this)."""

    problems: list[str]
    summary: CohortSummary | None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def cohort_summary(cohort: Cohort | str | os.PathLike, *, recount_masks: bool = False) -> CohortSummary:
    """Summarise a cohort from cohort.json and clinical.csv.

    Args:
        cohort: a :class:`Cohort` or its folder.
        recount_masks: recount tumour/node slices from the mask files instead of trusting
            ``mask_stats`` in cohort.json.
    """
    c = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    scans = c.scans()
    seqs = sorted({s.sequence for s in scans})
    counts = pd.DataFrame(0, index=pd.Index(seqs, name="sequence"), columns=list(TIMEPOINTS))
    rows = []
    groups: dict[tuple[str, str], list] = {}
    for s in scans:
        counts.loc[s.sequence, s.timepoint] += 1
        groups.setdefault((s.timepoint, s.sequence), []).append(s)
    for (tp, seq), group in sorted(groups.items(), key=lambda kv: (TIMEPOINTS.index(kv[0][0]), kv[0][1])):
        stats = []
        for s in group:
            if s.mask is None:
                continue
            if recount_masks:
                from npcai.cohort.contours import mask_stats

                stats.append(mask_stats(_read_mask_image(c, s)))
            else:
                stats.append(s.mask_stats)
        rows.append({
            "timepoint": tp, "sequence": seq, "scans": len(group), "with_mask": len(stats),
            "slices": int(sum(s.size[2] for s in group)),
            "slices_tumour": int(sum(st.get("slices_tumour", 0) for st in stats)),
            "slices_nodes": int(sum(st.get("slices_nodes", 0) for st in stats)),
            "median_tumour_ml": float(np.median([st.get("volume_tumour_ml", 0) for st in stats])) if stats else np.nan,
            "median_nodes_ml": float(np.median([st.get("volume_nodes_ml", 0) for st in stats])) if stats else np.nan,
        })
    masks = pd.DataFrame(rows, columns=["timepoint", "sequence", "scans", "with_mask", "slices", "slices_tumour",
                                        "slices_nodes", "median_tumour_ml", "median_nodes_ml"])
    clin = c.clinical()
    endpoint_rows = []
    for name in survival_endpoints(clin.columns):
        tcol = next(col for col in clin.columns if col.startswith(name + "_") and col != f"{name}_event")
        t = pd.to_numeric(clin[tcol], errors="coerce")
        e = pd.to_numeric(clin[f"{name}_event"], errors="coerce")
        known = t.notna() & e.notna()
        events = int((e[known] == 1).sum())
        n = int(known.sum())
        endpoint_rows.append({"endpoint": name, "kind": "survival", "n": n, "events_or_positive": events,
                              "censored_or_negative": n - events, "missing": int((~known).sum()),
                              "censored_pct": round(100.0 * (n - events) / n, 1) if n else np.nan,
                              "median_time": float(t[known].median()) if n else np.nan, "time_column": tcol})
    for col in binary_columns(clin, exclude=["centre"]):
        v = pd.to_numeric(clin[col], errors="coerce")
        n = int(v.notna().sum())
        pos = int((v == 1).sum())
        endpoint_rows.append({"endpoint": col, "kind": "binary", "n": n, "events_or_positive": pos,
                              "censored_or_negative": n - pos, "missing": int(v.isna().sum()),
                              "censored_pct": np.nan, "median_time": np.nan, "time_column": None})
    endpoints = pd.DataFrame(endpoint_rows, columns=["endpoint", "kind", "n", "events_or_positive",
                                                     "censored_or_negative", "missing", "censored_pct",
                                                     "median_time", "time_column"])
    return CohortSummary(patients=len(c.patients), modality=c.modality, scans=counts, masks=masks,
                         endpoints=endpoints, clinical_columns=list(clin.columns))


def _read_mask_image(c: Cohort, s):
    import SimpleITK as sitk

    return sitk.ReadImage(str(c.path(s.mask)))


def _listing(items: list[str]) -> str:
    return ", ".join(items[:_SHOW]) + (" ..." if len(items) > _SHOW else "")


def _voxel_digest(c: Cohort, scan) -> str | None:
    """SHA-256 of a scan's voxel array (its bytes, shape and type), None when unreadable."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(c.path(scan.image)))
    except RuntimeError:
        return None
    # a view shares the image's buffer: keep the image alive while the view is read (a view of
    # a temporary could be hashed after its memory was freed, giving a digest of garbage)
    arr = sitk.GetArrayViewFromImage(image)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _duplicate_images(c: Cohort, compare_arrays: bool) -> list[str]:
    """Scans with the same pixel data: equal ``image_sha256`` in cohort.json, or (with
    ``compare_arrays``) equal voxel arrays among one patient's scans of the same size."""
    groups: dict[str, list] = defaultdict(list)
    for s in c.scans():
        if s.image_sha256:
            groups["file:" + s.image_sha256].append(s)
    if compare_arrays:
        for p in c.patients:
            by_size: dict[tuple, list] = defaultdict(list)
            for s in p.scans:
                by_size[tuple(s.size)].append(s)
            for same_size in by_size.values():
                if len(same_size) < 2:
                    continue
                for s in same_size:
                    digest = _voxel_digest(c, s)
                    if digest is not None:
                        groups["voxels:" + digest].append(s)
    within: dict[str, set[str]] = defaultdict(set)     # patient -> "pre T1 = pre T2"
    across: set[str] = set()
    for group in groups.values():
        ids = sorted({s.scan_id for s in group})
        if len(ids) < 2:
            continue
        by_patient: dict[str, list] = defaultdict(list)
        for s in group:
            if s.scan_id not in {x.scan_id for x in by_patient[s.patient_id]}:
                by_patient[s.patient_id].append(s)
        for pid, scans in by_patient.items():
            if len(scans) > 1:
                within[pid].add(" = ".join(f"{s.timepoint} {s.sequence}" for s in
                                           sorted(scans, key=lambda x: (TIMEPOINTS.index(x.timepoint), x.sequence))))
        if len(by_patient) > 1:
            across.add(" = ".join(ids))
    out = []
    if within:
        items = [f"{pid} ({'; '.join(sorted(pairs))})" for pid, pairs in sorted(within.items())]
        out.append(f"identical pixel data under two sequences or timepoints for {len(within)} of {len(c.patients)} "
                   f"patient(s): {_listing(items)}; one series was probably exported under two names, so the "
                   "'two' scans carry the same information: drop or fix the duplicate (e.g. with a sequence map) "
                   "and re-run `npcai ingest`")
    if across:
        out.append(f"identical pixel data under two patients for {len(across)} group(s) of scans: "
                   f"{_listing(sorted(across))}; one patient's scan was probably filed under another; check the export")
    return out


def _spacing_warnings(c: Cohort) -> list[str]:
    """Spacing recorded at ingest as assumed, the no-header default of NIfTI/NRRD files
    (exactly 1 x 1 x 1 mm), or a single-slice DICOM series (z spacing from SliceThickness)."""
    assumed, default, single = [], [], []
    for s in c.scans():
        if s.source.get("spacing_assumed"):
            assumed.append(s.scan_id)
        elif s.source.get("kind") == "volume" and np.allclose(s.spacing, 1.0, rtol=0, atol=1e-9):
            default.append(s.scan_id)
        elif s.source.get("kind") == "dicom" and len(s.size) == 3 and s.size[2] == 1:
            single.append(s.scan_id)
    out = []
    if assumed:
        out.append(f"spacing assumed at ingest (not in the files) for {len(assumed)} scan(s): {_listing(assumed)}; "
                   "mm distances, mm expansions and volumes are only as right as that assumption")
    if default:
        out.append(f"spacing exactly 1 x 1 x 1 mm for {len(default)} scan(s) read from NIfTI/NRRD files: "
                   f"{_listing(default)}; that is also what a file without spacing information reads as, so check "
                   "the headers (mm distances, mm expansions and volumes depend on it)")
    if single:
        out.append(f"single-slice DICOM series for {len(single)} scan(s): {_listing(single)}; their slice spacing "
                   "is taken from SliceThickness (1 mm when absent), so volumes in ml are approximate")
    return out


def _missing_scans(c: Cohort) -> list[str]:
    """Sequences (per timepoint) that some patients lack, and scans without a manual mask."""
    have: dict[tuple[str, str], set[str]] = defaultdict(set)
    unmasked: dict[tuple[str, str], list[str]] = defaultdict(list)
    for s in c.scans():
        have[(s.timepoint, s.sequence)].add(s.patient_id)
        if s.mask is None:
            unmasked[(s.timepoint, s.sequence)].append(s.scan_id)
    n = len(c.patients)
    out = []
    for (tp, seq), pids in sorted(have.items(), key=lambda kv: (TIMEPOINTS.index(kv[0][0]), kv[0][1])):
        lacking = [p for p in c.patient_ids if p not in pids]
        if lacking:
            out.append(f"sequence {seq} ({tp}-treatment) is missing for {len(lacking)} of {n} patients: "
                       f"{_listing(lacking)}; runs using {seq} ({tp}) will leave them out")
    for (tp, seq), scans in sorted(unmasked.items(), key=lambda kv: (TIMEPOINTS.index(kv[0][0]), kv[0][1])):
        total = sum(1 for s in c.scans(timepoint=tp, sequence=seq))
        if scans and len(scans) < total:
            out.append(f"{len(scans)} of {total} {tp}-treatment {seq} scans have no manual mask: {_listing(scans)}; "
                       "mask-based ROIs leave them out (contour them, or use --mask auto after `npcai segment predict`)")
    return out


def data_warnings(cohort: Cohort | str | os.PathLike, *, compare_arrays: bool = True) -> list[str]:
    """What real exports get wrong without breaking a file, one line each (empty when none):

    - identical pixel data under two sequences or timepoints of a patient (equal SHA-256 in
      cohort.json, or with ``compare_arrays`` equal voxel arrays), or under two patients;
    - spacing assumed at ingest (``source["spacing_assumed"]``), exactly 1 x 1 x 1 mm from a
      NIfTI/NRRD file (the no-header default) or from a single-slice DICOM series;
    - a sequence (per timepoint) present for some patients and missing for others, and scans
      of a group without a manual mask, with counts.
    """
    c = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    return _duplicate_images(c, compare_arrays) + _spacing_warnings(c) + _missing_scans(c)


def validate_cohort(cohort_dir: str | os.PathLike, *, check_hashes: bool = True) -> ValidationResult:
    """Re-check every file of a cohort; returns the problems found and the summary.

    Checks: cohort.json loads; each image exists, its header matches the recorded size,
    spacing, origin and direction (and SHA-256 when ``check_hashes``); each mask exists,
    shares its image's grid and holds only labels 0/1/2, and its slice counts match
    ``mask_stats``; clinical.csv passes the schema with one row per cohort patient; no
    ``hospital_id`` column unless the cohort was ingested with ``--keep-ids``; the
    pseudonym map is not inside the cohort. ``warnings`` come from :func:`data_warnings`
    (voxel arrays are compared only with ``check_hashes``).
    """
    import SimpleITK as sitk

    from npcai.cohort.contours import mask_stats
    from npcai.fsutil import file_sha256

    root = Path(cohort_dir)
    try:
        c = Cohort.load(root)
    except NpcaiError as exc:
        return ValidationResult([str(exc)], None)
    problems: list[str] = []
    seen: set[str] = set()
    for s in track(c.scans(), "Checking scans"):
        if s.scan_id in seen:
            problems.append(f"{s.scan_id}: listed twice in cohort.json")
        seen.add(s.scan_id)
        img_path = c.path(s.image)
        if not img_path.is_file():
            problems.append(f"{s.scan_id}: image {s.image} is missing")
            continue
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(img_path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            problems.append(f"{s.scan_id}: image {s.image} cannot be read")
            continue
        if len(s.spacing) != 3 or not all(np.isfinite(v) and v > 0 for v in s.spacing):
            problems.append(f"{s.scan_id}: spacing {s.spacing} in cohort.json is missing or not positive; "
                            "re-export the series with its pixel spacing and re-run `npcai ingest`")
            continue
        if list(reader.GetSize()) != list(s.size) or not np.allclose(reader.GetSpacing(), s.spacing, atol=1e-4) \
                or not np.allclose(reader.GetOrigin(), s.origin, atol=1e-3) \
                or not np.allclose(reader.GetDirection(), s.direction, atol=1e-4):
            problems.append(f"{s.scan_id}: image header (size {reader.GetSize()}, spacing "
                            f"{tuple(round(v, 4) for v in reader.GetSpacing())}) disagrees with cohort.json")
        if check_hashes and s.image_sha256 and file_sha256(img_path) != s.image_sha256:
            problems.append(f"{s.scan_id}: image {s.image} changed since ingest (SHA-256 differs)")
        for kind, rel in (("mask", s.mask), ("auto mask", s.auto_mask)):
            if rel is None:
                continue
            mpath = c.path(rel)
            if not mpath.is_file():
                problems.append(f"{s.scan_id}: {kind} {rel} is missing")
                continue
            try:
                m = sitk.ReadImage(str(mpath))
            except RuntimeError:
                problems.append(f"{s.scan_id}: {kind} {rel} cannot be read")
                continue
            if m.GetSize() != reader.GetSize() or not np.allclose(m.GetSpacing(), reader.GetSpacing(), atol=1e-4) \
                    or not np.allclose(m.GetOrigin(), reader.GetOrigin(), atol=1e-3) \
                    or not np.allclose(m.GetDirection(), reader.GetDirection(), atol=1e-4):
                problems.append(f"{s.scan_id}: {kind} {rel} is not on its image's grid (size {m.GetSize()} vs "
                                f"{reader.GetSize()})")
                continue
            values = set(np.unique(sitk.GetArrayViewFromImage(m)).tolist())
            if not values <= {0, 1, 2}:
                problems.append(f"{s.scan_id}: {kind} {rel} has labels {sorted(values - {0, 1, 2})[:5]} "
                                "besides 0/1/2")
            if kind == "mask" and s.mask_stats:
                st = mask_stats(m)
                if (st["slices_tumour"], st["slices_nodes"]) != (s.mask_stats.get("slices_tumour"),
                                                                 s.mask_stats.get("slices_nodes")):
                    problems.append(f"{s.scan_id}: mask slice counts {st['slices_tumour']}/{st['slices_nodes']} "
                                    f"differ from cohort.json {s.mask_stats.get('slices_tumour')}/"
                                    f"{s.mask_stats.get('slices_nodes')}")
    for p in c.patients:
        for s in p.scans:
            if s.patient_id != p.patient_id:
                problems.append(f"{s.scan_id}: listed under patient {p.patient_id}")
    clin_path = root / "clinical.csv"
    if not clin_path.is_file():
        problems.append("clinical.csv is missing")
    else:
        raw = pd.read_csv(clin_path, dtype=str)
        raw.attrs["source"] = "clinical.csv"
        try:
            validate_clinical(raw, id_col="patient_id")
        except NpcaiError as exc:
            problems.append(str(exc))
        if "patient_id" in raw.columns:
            ids = set(raw["patient_id"].dropna())
            missing = sorted(set(c.patient_ids) - ids)
            extra = sorted(ids - set(c.patient_ids))
            if missing:
                problems.append(f"clinical.csv: no row for cohort patient(s) {', '.join(missing[:8])}")
            if extra:
                problems.append(f"clinical.csv: rows for patient(s) not in cohort.json: {', '.join(extra[:8])}")
        ident = [] if c.source.get("keep_ids") else identifying_columns(raw, id_col="patient_id")
        if ident:
            problems.append(f"clinical.csv: identifying column(s) {ident[:5]} (names, dates, contact details); "
                            "remove them")
        if "hospital_id" in raw.columns and not c.source.get("keep_ids"):
            problems.append("clinical.csv: has a hospital_id column but the cohort was not ingested with "
                            "--keep-ids; remove the column")
        missing_cols = [e for e in c.endpoints if e not in raw.columns]
        if missing_cols:
            problems.append(f"clinical.csv: columns listed in cohort.json endpoints are missing: {missing_cols[:5]}")
    if any(p.name.endswith(".pseudonyms.csv") for p in root.rglob("*.csv")):
        problems.append("a pseudonym map lies inside the cohort; move it beside the folder "
                        f"({pseudonym_map_path(root).name})")
    if not c.patients:
        problems.append("cohort.json lists no patients")
    summary = None
    try:
        summary = cohort_summary(c)
    except (NpcaiError, KeyError, ValueError) as exc:
        problems.append(f"summary failed: {exc}")
    return ValidationResult(problems, summary, data_warnings(c, compare_arrays=check_hashes))
