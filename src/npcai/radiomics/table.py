"""The radiomics feature table of an ROI dataset: the only code that reads or writes it.

``extract_features(cohort, roi)`` writes, beside the ROI cache it was computed from::

    COHORT/roi/.radiomics/NAME/
      features.csv       one row per patient: patient_id, n_slices, then one column per
                         feature, ``<channel>__<pyradiomics name>`` (mean over the patient's slices)
      slices.csv         one row per ROI slice used: roi_row, patient_id, slice_index,
                         region_px, then the same feature columns (that slice's values)
      extraction.json    format npcai-radiomics/1; roi {name, input_hash, variant, region,
                         channels}; settings; package and version; cache_key; feature_names;
                         n_patients, n_slices, skipped patients and why, skipped_slices

Patients are named by the cohort's pseudonyms only. The table is reused while the cache
key (the ROI's input hash, the extraction settings and the package version) is unchanged;
any change re-extracts (the folder is replaced atomically).

Examples:
    >>> table = extract_features("cohort", "expand10")          # doctest: +SKIP
    >>> table.features.loc["P0001", "T1c__original_glcm_Contrast"]  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_output_dir, file_sha256
from npcai.progress import track
from npcai.radiomics import PACKAGE
from npcai.radiomics.extractor import ExtractionSettings, SliceExtractor, package_version
from npcai.radiomics.regions import feature_region

__all__ = ["FEATURES_FORMAT", "FeatureTable", "features_dir", "extract_features", "open_features"]

log = logging.getLogger(__name__)

FEATURES_FORMAT = "npcai-radiomics/1"
_FEATURES, _SLICES, _META = "features.csv", "slices.csv", "extraction.json"
_ID_COLUMNS = ("patient_id", "n_slices")
_SLICE_ID_COLUMNS = ("roi_row", "patient_id", "slice_index", "region_px")


def features_dir(cohort_dir: str | Path, roi_name: str) -> Path:
    """``COHORT/roi/.radiomics/NAME``."""
    return Path(cohort_dir) / "roi" / ".radiomics" / roi_name


@dataclass
class FeatureTable:
    """A feature table (see the module docstring).

    Attributes:
        path: the table's folder.
        features: patients x features (float), indexed by patient_id (no other column).
        n_slices: patient_id -> number of slices averaged.
        meta: ``extraction.json``.
        sha256: SHA-256 of ``features.csv`` (runs record it).
    """

    path: Path
    features: pd.DataFrame
    n_slices: pd.Series
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    @property
    def patients(self) -> list[str]:
        return list(self.features.index)

    def slices(self) -> pd.DataFrame:
        """The per-slice values (``slices.csv``)."""
        return pd.read_csv(self.path / _SLICES, dtype={"patient_id": str})


def _cache_key(roi_hash: str, settings: ExtractionSettings, version: str) -> str:
    doc = {"roi_input_hash": roi_hash, "settings": settings.to_dict(), "package": PACKAGE, "version": version}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> FeatureTable:
    meta_path = path / _META
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NpcaiError(f"{meta_path}: cannot read the radiomics table ({exc}); extract it again with "
                         "`npcai radiomics extract`") from exc
    if meta.get("format") != FEATURES_FORMAT:
        raise NpcaiError(f"{meta_path}: format {meta.get('format')!r} is not {FEATURES_FORMAT!r}; extract again")
    try:
        df = pd.read_csv(path / _FEATURES, dtype={"patient_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NpcaiError(f"{path / _FEATURES}: cannot read ({str(exc).splitlines()[0]}); extract again") from exc
    missing = [c for c in _ID_COLUMNS if c not in df.columns]
    if missing:
        raise NpcaiError(f"{path / _FEATURES}: column {missing[0]!r} missing; extract again")
    df = df.set_index("patient_id")
    feats = df.drop(columns=["n_slices"]).astype(float)
    return FeatureTable(path, feats, df["n_slices"].astype(int), meta, file_sha256(path / _FEATURES))


def open_features(cohort_dir: str | Path, roi_name: str) -> FeatureTable:
    """The feature table of ROI ``roi_name``; refused when the ROI was rebuilt since.

    Raises:
        NpcaiError: no table (extract first) or one computed from another ROI build.
    """
    from npcai.imaging.roi_cache import RoiDataset

    path = features_dir(cohort_dir, roi_name)
    if not (path / _META).is_file():
        raise NpcaiError(f"{path}: no radiomics features for ROI {roi_name!r}; extract them with "
                         f"`npcai radiomics extract {cohort_dir} --roi {roi_name}`")
    table = _read(path)
    roi = RoiDataset.open(cohort_dir, roi_name)
    recorded = (table.meta.get("roi") or {}).get("input_hash")
    if recorded != roi.input_hash:
        raise NpcaiError(f"{path}: computed from ROI {roi_name!r} with input hash {str(recorded)[:12]}, but the ROI "
                         f"now has {roi.input_hash[:12]}; extract again with `npcai radiomics extract`")
    return table


def extract_features(cohort_dir: str | Path, roi_name: str, *, settings: ExtractionSettings | None = None,
                     force: bool = False) -> FeatureTable:
    """Extract (or reuse) the feature table of ROI ``roi_name`` of a cohort.

    Args:
        cohort_dir: an ingested cohort with the ROI dataset built (`npcai roi build`).
        roi_name: the ROI dataset's name; its region (tumour, tumour + ring, the expanded region,
            whole slice) is what the features describe (:mod:`npcai.radiomics.regions`).
        settings: :class:`ExtractionSettings` (default: 32 bins, every class).
        force: extract again even when the cached table is up to date.

    Returns:
        The :class:`FeatureTable`.

    Raises:
        NpcaiError: no such ROI, or no slice of any patient gives features.
    """
    from npcai import __version__
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.imaging.variants import parse_variant

    settings = settings or ExtractionSettings()
    roi = RoiDataset.open(cohort_dir, roi_name)
    version = package_version()
    key = _cache_key(roi.input_hash, settings, version)
    out = features_dir(cohort_dir, roi_name)
    if not force and (out / _META).is_file() and (out / _FEATURES).is_file():
        try:
            old = json.loads((out / _META).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}
        if old.get("cache_key") == key:
            log.info("radiomics features of ROI %s are up to date (%s)", roi_name, out)
            return _read(out)
    t0 = time.perf_counter()
    extractor = SliceExtractor(settings)
    channels = [str(c) for c in roi.params.get("channels") or roi.params.get("sequences") or ["ch0"]]
    region = str(roi.params.get("region", "both"))
    uses_mask = parse_variant(roi.params.get("variant", "segmented")).uses_mask
    index = roi.index
    slice_rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    skipped_slices = 0
    for pid in track(roi.patients, f"Radiomics features of ROI {roi_name}"):
        got = 0
        last_error = ""
        for r in roi.rows_of(pid):
            image = np.asarray(roi.images[r], dtype=np.float32)
            labels = np.asarray(roi.masks[r])
            mask = feature_region(image, labels, region, uses_mask=uses_mask)
            pixel_mm = (float(index.at[r, "pixel_mm"]), float(index.at[r, "pixel_mm_col"]))
            row: dict[str, Any] = {"roi_row": int(r), "patient_id": pid,
                                   "slice_index": int(index.at[r, "slice_index"]), "region_px": int(mask.sum())}
            try:
                for c, channel in enumerate(channels):
                    feats = extractor.features(image[c], mask, pixel_mm=pixel_mm)
                    row.update({f"{channel}__{k}": v for k, v in feats.items()})
            except NpcaiError as exc:
                skipped_slices += 1
                last_error = str(exc)
                log.debug("radiomics: patient %s ROI row %d skipped (%s)", pid, r, exc)
                continue
            slice_rows.append(row)
            got += 1
        if not got:
            skipped[pid] = f"no slice gives features ({last_error})"
            log.warning("radiomics %s: skipped patient %s (%s)", roi_name, pid, skipped[pid])
    if not slice_rows:
        raise NpcaiError(f"ROI {roi_name}: no slice of any patient gives radiomics features "
                         f"(e.g. {next(iter(skipped.values()), 'no patients')}); use a larger region or size")
    slices = pd.DataFrame(slice_rows)
    names = [c for c in slices.columns if c not in _SLICE_ID_COLUMNS]
    slices = slices[list(_SLICE_ID_COLUMNS) + names]
    grouped = slices.groupby("patient_id", sort=True)
    feats = grouped[names].mean()
    feats.insert(0, "n_slices", grouped.size().astype(int))
    feats = feats.reset_index()
    non_finite = int((~np.isfinite(feats[names].to_numpy(dtype=float))).sum())
    meta = {
        "format": FEATURES_FORMAT,
        "roi": {"name": roi_name, "input_hash": roi.input_hash, "variant": roi.params.get("variant"),
                "region": region, "frame": roi.params.get("frame"), "size": roi.params.get("size"),
                "channels": channels},
        "settings": settings.to_dict(), "package": PACKAGE, "version": version, "cache_key": key,
        "aggregation": "2D features per ROI slice, mean over the patient's slices",
        "feature_names": names, "n_features": len(names), "n_patients": int(len(feats)),
        "n_slices": int(len(slices)), "skipped": skipped, "skipped_slices": skipped_slices,
        "non_finite_values": non_finite, "npcai_version": __version__,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    with atomic_output_dir(out, overwrite=True) as tmp:
        feats.to_csv(tmp / _FEATURES, index=False, float_format="%.10g")
        slices.to_csv(tmp / _SLICES, index=False, float_format="%.10g")
        (tmp / _META).write_text(json.dumps(meta, indent=1))
    return _read(out)
