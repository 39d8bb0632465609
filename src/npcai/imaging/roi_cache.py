"""The ROI cache: decode, normalise, crop and resize every slice once; train from a memmap.

``build_roi`` writes ``COHORT/roi/NAME/`` (format in ``docs/contracts.md``)::

    images.npy    float16 (N, C, S, S), open with np.load(path, mmap_mode="r")
    masks.npy     uint8   (N, S, S)   label map (1 tumour, 2 nodes) in ROI space
    index.csv     one row per array row (patient, scan, slice, areas, crop window, pixel size)
    variant.json  every parameter, the input hash, counts, skipped patients

Pipeline per patient: read the channels on one grid (:mod:`npcai.imaging.volume_io`) ->
drop small mask components (:func:`npcai.imaging.masks.drop_small_components`) -> pick
slices (:mod:`npcai.imaging.slices`) -> normalise each channel over the whole scan
(:mod:`npcai.imaging.normalise`) -> apply the variant and resize
(:func:`npcai.imaging.variants.apply_variant`). ``masks.npy`` holds the full filtered label
map (tumour and nodes) whatever the region, so explanations can measure where a network
looks; what the network *saw* is the non-zero part of ``images.npy``.

Caching: ``variant.json["input_hash"]`` is a SHA-256 over the parameters and the bytes of
every image and mask file used. Building again with the same parameters and inputs returns
at once (logged "up to date"); any change rebuilds. Builds go to a temporary folder that is
renamed when complete. Patients whose region is empty on every slice (or who lack a scan or
a manual mask) are skipped with a warning and listed in ``variant.json["skipped"]``.

Examples:
    >>> path = build_roi("cohort", "expand20", "expand:20px", size=224)   # doctest: +SKIP
    >>> ds = RoiDataset.open("cohort", "expand20")                         # doctest: +SKIP
    >>> x = ds.images[ds.index.patient_id == "P0001"]                      # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from npcai.cohort.model import Cohort
from npcai.errors import NpcaiError
from npcai.limits import check_image_side
from npcai.fsutil import atomic_output_dir, file_sha256
from npcai.imaging.masks import (REGIONS, bounding_box, drop_small_components, parse_min_component,
                                 region_mask)
from npcai.imaging.normalise import normalise_volume, parse_normalisation
from npcai.imaging.slices import parse_slice_rule, select_slices
from npcai.imaging.variants import apply_variant, parse_variant, resolve_frame
from npcai.imaging.volume_io import load_stack, plan_patient
from npcai.progress import track

if TYPE_CHECKING:
    import torch

__all__ = ["ROI_FORMAT", "INDEX_COLUMNS", "build_roi", "RoiDataset", "roi_dir", "list_rois",
           "roi_params", "MIN_SIZE"]

log = logging.getLogger(__name__)

ROI_FORMAT = "npcai-roi/1"
MIN_SIZE = 32
INDEX_COLUMNS = ["patient_id", "timepoint", "sequences", "scan_id", "slice_index", "position_mm",
                 "region", "mask_area_px", "tumour_area_px", "nodes_area_px", "crop_y0", "crop_x0",
                 "crop_size", "pixel_mm", "pixel_mm_col"]


def roi_dir(cohort_dir: str | Path, name: str) -> Path:
    """``COHORT/roi/NAME``."""
    return Path(cohort_dir) / "roi" / name


def list_rois(cohort_dir: str | Path) -> list[str]:
    """Names of the complete ROI datasets of a cohort."""
    root = Path(cohort_dir) / "roi"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "variant.json").is_file())


def _sequences(sequences: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(sequences, str):
        sequences = [s for s in sequences.split(",")]
    seqs = tuple(s.strip() for s in sequences if s.strip())
    if not seqs:
        raise NpcaiError("--sequences is empty; give at least one, e.g. T1c or T1c,T2,T1")
    if len(set(seqs)) != len(seqs):
        raise NpcaiError(f"--sequences {','.join(seqs)} repeats a sequence; list each once")
    return seqs


def roi_params(variant: str, *, region: str = "primary", slices: str = "tumour",
               sequences: str | tuple[str, ...] = ("T1c",), timepoint: str = "pre",
               mask: str = "manual", size: int = 224,
               min_component: str | tuple[int, int] | None = (10, 10),
               frame: str | None = None, normalise: str = "robust") -> dict[str, Any]:
    """Validate and canonicalise the build parameters (what ``variant.json`` records).

    Raises:
        NpcaiError: any parameter is invalid (one line naming it and the valid forms).
    """
    v = parse_variant(variant)
    if region not in REGIONS:
        raise NpcaiError(f"--region {region!r} is not valid; use one of: {', '.join(REGIONS)}")
    if timepoint not in ("pre", "post", "both"):
        raise NpcaiError(f"--timepoint {timepoint!r} is not valid; use pre, post or both")
    if mask not in ("manual", "auto"):
        raise NpcaiError(f"--mask {mask!r} is not valid; use manual or auto")
    check_image_side(size, what="--size", minimum=MIN_SIZE, hint="224 is typical")
    return {
        "format": ROI_FORMAT,
        "variant": str(v),
        "region": region,
        "slices": str(parse_slice_rule(slices)),
        "sequences": list(_sequences(sequences)),
        "timepoint": timepoint,
        "mask": mask,
        "size": int(size),
        "min_component": list(parse_min_component(min_component)),
        "frame": resolve_frame(v, frame),
        "normalisation": str(parse_normalisation(normalise)),
    }


def _input_hash(params: dict[str, Any], files: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for rel, path in files:
        h.update(rel.encode())
        h.update(file_sha256(path).encode())
    return h.hexdigest()


def build_roi(cohort_dir: str | Path, name: str, variant: str, *, region: str = "primary",
              slices: str = "tumour", sequences: str | tuple[str, ...] = ("T1c",),
              timepoint: str = "pre", mask: str = "manual", size: int = 224,
              min_component: str | tuple[int, int] | None = (10, 10), frame: str | None = None,
              normalise: str = "robust", overwrite: bool = False) -> Path:
    """Build (or reuse) the ROI dataset ``COHORT/roi/NAME`` and return its folder.

    Args:
        cohort_dir: an ingested cohort.
        name: the dataset's folder name under ``COHORT/roi/``.
        variant: ``original``, ``segmented``, ``expand:N(px|mm)``, ``bbox[:M(px|mm)]``,
            ``bbox-expand:N(px|mm)`` (:mod:`npcai.imaging.variants`).
        region: ``primary`` (label 1), ``nodes`` (label 2) or ``both``.
        slices: ``tumour``, ``max-area:K`` or ``all`` (:mod:`npcai.imaging.slices`).
        sequences: channels, e.g. ``("T1c",)`` or ``"T1c,T2,T1"``.
        timepoint: ``pre``, ``post`` or ``both`` (pre and post as channels; same grid needed).
        mask: ``manual`` contours or ``auto`` masks from ``npcai segment predict``.
        size: output side in pixels (>= 32).
        min_component: drop per-slice mask components whose bounding box is smaller than
            (height, width) in both directions; ``(0, 0)`` keeps all (study 000 used 10x10).
        frame: ``slice`` (default) or ``bbox`` (square crop around the region first); bbox
            variants always crop.
        normalise: intensity normalisation (:mod:`npcai.imaging.normalise`), default robust.
        overwrite: replace a dataset of the same name built with other parameters (runs
            trained on it then no longer match their recorded input hash). Without it that
            is an error; a dataset whose *inputs* changed (same parameters) is rebuilt.

    Returns:
        The dataset folder.

    Raises:
        NpcaiError: invalid parameters, a dataset of this name built with other parameters
            (without ``overwrite``), or no patient has the region on any slice.

    Examples:
        >>> build_roi("cohort", "nodes_3mm", "expand:3mm", region="nodes", size=224)  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    params = roi_params(variant, region=region, slices=slices, sequences=sequences,
                        timepoint=timepoint, mask=mask, size=size, min_component=min_component,
                        frame=frame, normalise=normalise)
    v = parse_variant(params["variant"])
    rule = parse_slice_rule(params["slices"])
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise NpcaiError(f"--name {name!r} is not a valid folder name; use e.g. expand20px")
    cohort = Cohort.load(cohort_dir)
    out = roi_dir(cohort_dir, name)

    needs_mask = v.uses_mask or rule.kind != "all"
    plans, skipped = [], {}
    for p in cohort.patients:
        plan = plan_patient(cohort, p.patient_id, sequences=tuple(params["sequences"]),
                            timepoint=timepoint, mask=mask)
        if isinstance(plan, str):
            skipped[p.patient_id] = plan
        elif plan.mask_scan is None and needs_mask:
            skipped[p.patient_id] = f"no {mask} mask"
        else:
            plans.append(plan)
    files = [(str(f.relative_to(cohort.root)), f) for plan in plans for f in plan.files(cohort)]
    input_hash = _input_hash(params, files)

    existing = out / "variant.json"
    if existing.is_file():
        try:
            old = json.loads(existing.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("input_hash") == input_hash and (out / "images.npy").is_file():
            log.info("ROI dataset %s is up to date (%d slices)", out, old.get("n_slices", 0))
            return out
        plain = json.loads(json.dumps(params))
        changed = [f"{k} {old.get(k)!r} -> {plain[k]!r}" for k in plain if old.get(k) != plain[k]]
        if changed and not overwrite:
            raise NpcaiError(f"ROI dataset {name} ({out}) was built with other parameters ({'; '.join(changed)}); "
                             "runs trained on it would silently read new data: choose another name, or pass "
                             "--overwrite to replace it")
        log.info("ROI dataset %s: %s changed; rebuilding", out, "parameters" if changed else "inputs")

    shape_hw = (params["size"], params["size"])
    n_channels = len(params["sequences"]) * (2 if timepoint == "both" else 1)
    rows: list[dict[str, Any]] = []
    mask_chunks: list[np.ndarray] = []
    channels: list[str] = []
    with atomic_output_dir(out, overwrite=True) as tmp:
        raw_path = tmp / "images.raw"
        with open(raw_path, "wb") as raw:
            for plan in track(plans, f"Building ROI {name} ({params['variant']})"):
                stack = load_stack(cohort, plan)
                channels = plan.channels
                labels = stack.labels if stack.labels is not None else \
                    np.zeros(stack.image.shape[1:], np.uint8)
                labels = drop_small_components(labels, tuple(params["min_component"]))
                region_3d = region_mask(labels, region)
                if needs_mask and not region_3d.any():
                    skipped[plan.patient_id] = f"{region} region empty on every slice" + (
                        f" after dropping components under {params['min_component'][0]}x"
                        f"{params['min_component'][1]} px" if any(params["min_component"]) else "")
                    continue
                chosen = select_slices(region_3d, rule)
                norm = np.stack([normalise_volume(c, params["normalisation"], channel=ch)
                                 for c, ch in zip(stack.image, plan.channels)])
                fallback = bounding_box(region_3d.any(axis=0))
                patient_masks = np.empty((len(chosen),) + shape_hw, np.uint8)
                for j, k in enumerate(chosen):
                    roi = apply_variant(norm[:, k], labels[k], region_3d[k], v, size=params["size"],
                                        pixel_mm=stack.pixel_mm, frame=params["frame"],
                                        fallback_box=fallback)
                    raw.write(roi.image.astype(np.float16).tobytes())
                    patient_masks[j] = roi.labels
                    y0, x0, side = roi.crop
                    rows.append({
                        "patient_id": plan.patient_id,
                        "timepoint": timepoint,
                        "sequences": "+".join(params["sequences"]),
                        "scan_id": plan.scans[0].scan_id,
                        "slice_index": int(k),
                        "position_mm": round(float(stack.positions_mm[k]), 4),
                        "region": region,
                        "mask_area_px": int(region_3d[k].sum()),
                        "tumour_area_px": int((labels[k] == 1).sum()),
                        "nodes_area_px": int((labels[k] == 2).sum()),
                        "crop_y0": y0, "crop_x0": x0, "crop_size": side,
                        "pixel_mm": side * stack.pixel_mm[0] / params["size"],
                        "pixel_mm_col": side * stack.pixel_mm[1] / params["size"],
                    })
                mask_chunks.append(patient_masks)
        for pid, why in skipped.items():
            log.warning("ROI %s: skipped patient %s (%s)", name, pid, why)
        if not rows:
            example = "; ".join(f"{pid}: {why}" for pid, why in list(skipped.items())[:3]) or "no patients"
            raise NpcaiError(f"{cohort.root}: no patient has a usable {region} region ({example}); "
                             "check the masks with `npcai validate`, or change --region / --min-component")
        n = len(rows)
        raw_mm = np.memmap(raw_path, dtype=np.float16, mode="r", shape=(n, n_channels) + shape_hw)
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.float16,
                                           shape=(n, n_channels) + shape_hw)
        for start in range(0, n, 256):
            images[start:start + 256] = raw_mm[start:start + 256]
        images.flush()
        del images, raw_mm
        raw_path.unlink()
        np.save(tmp / "masks.npy", np.concatenate(mask_chunks))
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
        index.to_csv(tmp / "index.csv", index=False)
        from npcai import __version__

        meta = dict(params)
        meta.update({
            "channels": channels,
            "input_hash": input_hash,
            "n_slices": n,
            "n_patients": int(index.patient_id.nunique()),
            "patients": sorted(index.patient_id.unique().tolist()),
            "skipped": skipped,
            "n_skipped": len(skipped),
            "npcai_version": __version__,
            "build_seconds": round(time.perf_counter() - t_start, 3),
        })
        (tmp / "variant.json").write_text(json.dumps(meta, indent=1))
    return out


@dataclass
class RoiDataset:
    """A built ROI dataset, memory-mapped (see module docstring).

    Attributes:
        root: the dataset folder.
        images: ``(N, C, S, S)`` float16 memmap.
        masks: ``(N, S, S)`` uint8 memmap, label map in ROI space.
        index: one row per slice (``INDEX_COLUMNS``).
        params: ``variant.json`` (parameters, input hash, counts, skipped patients).

    Examples:
        >>> ds = RoiDataset.open("cohort", "expand20")            # doctest: +SKIP
        >>> image, labels = ds[0]      # float32 (C,S,S), uint8 (S,S)  # doctest: +SKIP
        >>> x, y = ds.batch([5, 2, 9])   # torch float32 (3,C,S,S), uint8 (3,S,S)  # doctest: +SKIP
    """

    root: Path
    images: np.ndarray
    masks: np.ndarray
    index: pd.DataFrame
    params: dict[str, Any]

    @classmethod
    def open(cls, cohort_dir: str | Path, name: str) -> "RoiDataset":
        """Open ``COHORT/roi/NAME`` (memory-mapped; nothing is read until used)."""
        root = roi_dir(cohort_dir, name)
        meta_path = root / "variant.json"
        if not meta_path.is_file():
            have = ", ".join(list_rois(cohort_dir)) or "none"
            raise NpcaiError(f"{root}: no ROI dataset {name!r} (have: {have}); build it with "
                             f"`npcai roi build {cohort_dir} --variant V --name {name}`")
        params = json.loads(meta_path.read_text())
        if params.get("format") != ROI_FORMAT:
            raise NpcaiError(f"{meta_path}: format {params.get('format')!r} is not {ROI_FORMAT!r}; "
                             "rebuild it with `npcai roi build`")
        images = np.load(root / "images.npy", mmap_mode="r")
        masks = np.load(root / "masks.npy", mmap_mode="r")
        index = pd.read_csv(root / "index.csv", dtype={"patient_id": str, "scan_id": str})
        if not (len(index) == images.shape[0] == masks.shape[0]):
            raise NpcaiError(f"{root}: index.csv has {len(index)} rows but images.npy has "
                             f"{images.shape[0]}; rebuild it with `npcai roi build`")
        return cls(root, images, masks, index, params)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``i`` as ``(image float32 (C,S,S), labels uint8 (S,S))``."""
        return np.asarray(self.images[i], dtype=np.float32), np.asarray(self.masks[i])

    def batch(self, rows) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Rows as torch tensors: images float32 ``(B, C, S, S)``, label maps uint8 ``(B, S, S)``.

        Rows are read in ascending order (contiguous reads) and returned in the order given.
        torch's float16 -> float32 cast is several times faster than numpy's.
        """
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        images = torch.from_numpy(np.ascontiguousarray(self.images[sorted_rows])).float()
        masks = torch.from_numpy(np.ascontiguousarray(self.masks[sorted_rows]))
        inverse = torch.from_numpy(np.argsort(order, kind="stable"))
        return images[inverse], masks[inverse]

    @property
    def input_hash(self) -> str:
        """The hash of parameters + inputs (record it in runs for provenance)."""
        return str(self.params["input_hash"])

    @property
    def patients(self) -> list[str]:
        """Patients with at least one slice, sorted."""
        return sorted(self.index.patient_id.unique().tolist())

    def rows_of(self, patient_id: str) -> np.ndarray:
        """Array row numbers of one patient's slices."""
        return np.flatnonzero(self.index.patient_id.to_numpy() == patient_id)
