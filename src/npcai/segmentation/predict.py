"""Automatic masks: run a trained segmenter over every slice of every scan, on each scan's own grid.

For each scan the whole volume is normalised exactly as in training, every axial slice is
brought to the model grid (:func:`npcai.segmentation.data.to_model_grid`) and stacked with
its neighbours when the run was trained on a 2.5D input (``context``, edges repeated), the
logits are resized back to the native slice (bilinear, then argmax, so boundaries sit at
native resolution), the run's post-processing is applied (:mod:`npcai.segmentation.postprocess`:
components whose bounding box fits inside ``min_component`` px, 10 x 10 by default as in
study 000, are dropped per slice; with ``keep_largest_3d`` only the largest 3D component of
each label stays), and the label map is
written to ``masks/<scan_id>_auto.nii.gz`` with the image's exact geometry (SimpleITK
``CopyInformation``). ``cohort.json`` then records ``Scan.auto_mask`` and
``Scan.auto_mask_provenance`` (run path, architecture, labels, model hash, the patient's
split in the segmentation run), so ``npcai roi build --mask auto`` can use them and any
report can say where they came from.

Examples:
    >>> report = predict_masks("cohort", "segrun_deeplab")     # doctest: +SKIP
    >>> report["scans"]                                        # doctest: +SKIP
    120
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from npcai.cohort.model import Cohort, Scan
from npcai.errors import NpcaiError
from npcai.fsutil import file_sha256
from npcai.imaging.masks import parse_min_component
from npcai.imaging.normalise import normalise_volume
from npcai.progress import track
from npcai.segmentation.data import (classes_to_labels, crop_box, crop_stack, from_model_grid, neighbour_slices,
                                     paste_crop, to_model_grid)
from npcai.segmentation.postprocess import postprocess
from npcai.segmentation.train import SegRun, load_segrun

__all__ = ["predict_volume", "predict_masks", "auto_mask_path", "run_postprocessing"]

log = logging.getLogger(__name__)


def auto_mask_path(scan: Scan) -> str:
    """Cohort-relative path of a scan's automatic mask: ``masks/<scan_id>_auto.nii.gz``."""
    return f"masks/{scan.scan_id}_auto.nii.gz"


def run_postprocessing(run: SegRun, min_component: tuple[int, int] | str | None = None,
                       keep_largest_3d: bool | None = None) -> tuple[tuple[int, int], bool]:
    """The post-processing to apply: the run's saved options unless overridden (None = the run's).

    Runs made before these options existed used 10 x 10 px and no 3D step.
    """
    opts = run.config["options"]
    mc = parse_min_component(opts.get("min_component", "10x10") if min_component is None else min_component)
    largest = bool(opts.get("keep_largest_3d", False)) if keep_largest_3d is None else bool(keep_largest_3d)
    return mc, largest


@torch.no_grad()
def predict_volume(run: SegRun, volume: np.ndarray, *, batch_size: int = 16,
                   min_component: tuple[int, int] | str | None = None, keep_largest_3d: bool | None = None,
                   normalised: bool = False, spacing=None) -> np.ndarray:
    """Label map (uint8, ``(z, y, x)``, values 0/1/2) predicted for a raw ``(z, y, x)`` volume.

    Args:
        run: a loaded :class:`SegRun`.
        volume: the scan's voxels (raw intensities unless ``normalised``).
        batch_size: slices per forward pass.
        min_component: drop 2D components whose bounding box fits inside this (h, w) box
            (None: the run's ``min_component``).
        keep_largest_3d: keep each label's largest 3D component (None: the run's option).
        normalised: the volume is already normalised as in training.
        spacing: the scan's ``(x, y, z)`` spacing in mm; needed when the run crops (``crop_mm``).
    """
    opts = run.config["options"]
    model = run.model.eval()
    vol = np.asarray(volume, np.float32) if normalised else normalise_volume(volume, opts["normalise"])
    z, rows, cols = vol.shape
    size = int(opts["size"])
    crop_mm = opts.get("crop_mm")
    if crop_mm is not None and spacing is None:
        raise NpcaiError(f"{run.path}: the model sees a {crop_mm:g} mm crop of each slice; pass the scan's spacing")
    box = crop_box(rows, cols, spacing, crop_mm)
    fill = float(vol.min())
    grid = to_model_grid(crop_stack(vol, box, fill), size, fill=fill)     # (z, size, size)
    neighbours = neighbour_slices(z, int(opts.get("context", 0)))  # the input channels of each slice
    device = next(model.parameters()).device
    out = np.zeros(vol.shape, np.uint8)
    for start in range(0, z, batch_size):
        chunk = grid[neighbours[start:start + batch_size]]          # (b, 2*context+1, size, size)
        logits = model(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)).float().cpu()
        native = from_model_grid(logits, box[2:])                      # the crop at native resolution
        out[start:start + batch_size] = paste_crop(native.argmax(1).astype(np.uint8), box, (rows, cols))
    labels = classes_to_labels(out, run.labels)
    mc, largest = run_postprocessing(run, min_component, keep_largest_3d)
    return postprocess(labels, min_component=mc, largest_3d=largest)


def _same_data(cohort: Cohort, run: SegRun) -> bool:
    """True when ``cohort`` holds the very images and contours the run was trained on (e.g. a copy)."""
    from npcai.segmentation.data import select_scans
    from npcai.segmentation.train import input_hash

    opts = run.config["options"]
    try:
        scans = select_scans(cohort, sequence=opts["sequence"], timepoint=opts["timepoint"])
    except NpcaiError:
        return False
    return input_hash(cohort, scans) == run.config["cohort"]["input_sha256"]


def _write_like(array: np.ndarray, reference, path: Path) -> None:
    """Write ``array`` with ``reference``'s geometry, atomically (temp file in the same folder + rename)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array.astype(np.uint8))
    img.CopyInformation(reference)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".nii.gz", dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(img, tmp, True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def predict_masks(cohort: str | Path | Cohort, segrun: str | Path | SegRun, *, sequence: str | None = None,
                  timepoint: str | None = None, min_component: tuple[int, int] | str | None = None,
                  keep_largest_3d: bool | None = None, batch_size: int = 16,
                  overwrite: bool = True) -> dict[str, Any]:
    """Write ``masks/<scan_id>_auto.nii.gz`` for every matching scan and record them in cohort.json.

    Args:
        cohort: cohort folder (or :class:`Cohort`).
        segrun: a finished segmentation run folder (or a loaded :class:`SegRun`).
        sequence: scans to segment (default: the sequence the model was trained on).
        timepoint: ``pre``/``post``; None segments every timepoint.
        min_component: components smaller than this (h x w px) are dropped (None: the run's
            option, 10x10 by default as in study 000).
        keep_largest_3d: keep each label's largest 3D component (None: the run's option).
        batch_size: slices per forward pass.
        overwrite: replace existing automatic masks (otherwise scans that have one fail).

    Returns:
        A report: ``scans``, ``slices``, ``with_tumour``/``with_nodes`` (scans whose mask has
        the label), ``provenance`` and ``paths``.
    """
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    run = segrun if isinstance(segrun, SegRun) else load_segrun(segrun)
    opts = run.config["options"]
    trained_on = opts["sequence"]
    sequence = sequence or trained_on
    if sequence != trained_on:
        log.warning("segmenting %s scans with a model trained on %s scans", sequence, trained_on)
    if timepoint not in (None, "pre", "post"):
        raise NpcaiError(f"--timepoint {timepoint!r}: use pre, post or all")
    scans = cohort.scans(timepoint=timepoint, sequence=sequence)
    if not scans:
        raise NpcaiError(f"{cohort.root}: no {timepoint or ''} {sequence} scan to segment; check --sequence/--timepoint")
    if not overwrite:
        existing = [s.scan_id for s in scans if s.auto_mask and cohort.path(s.auto_mask).exists()]
        if existing:
            raise NpcaiError(f"{cohort.root}: scan {existing[0]} already has an automatic mask; pass --overwrite")
    min_component, keep_largest_3d = run_postprocessing(run, min_component, keep_largest_3d)
    ckpt = run.path / "checkpoints" / "best.ckpt"
    split = dict(zip(run.split["patient_id"], run.split["split"]))
    same_cohort = Path(run.config["cohort"]["path"]) == cohort.root.resolve() or _same_data(cohort, run)
    provenance = {"segrun": str(run.path.resolve()), "arch": opts["arch"], "encoder": opts["encoder"],
                  "labels": opts["labels"], "size": opts["size"], "normalise": opts["normalise"],
                  "trained_on": trained_on, "context": int(opts.get("context", 0)),
                  "crop_mm": opts.get("crop_mm"),
                  "min_component": list(min_component), "keep_largest_3d": keep_largest_3d,
                  "model_sha256": file_sha256(ckpt), "best_epoch": run.summary["best_epoch"],
                  "val_dice": run.summary["val_dice"], "npcai": run.config["packages"].get("npcai")}
    import SimpleITK as sitk

    (cohort.root / "masks").mkdir(exist_ok=True)
    n_slices, with_tumour, with_nodes, paths = 0, 0, 0, []
    for scan in track(scans, "Predicting automatic masks"):
        image = cohort.read_image(scan)
        labels = predict_volume(run, sitk.GetArrayFromImage(image), batch_size=batch_size,
                                min_component=min_component, keep_largest_3d=keep_largest_3d,
                                spacing=image.GetSpacing())
        rel = auto_mask_path(scan)
        _write_like(labels, image, cohort.path(rel))
        scan.auto_mask = rel
        scan.auto_mask_provenance = dict(provenance, patient_split=(split.get(scan.patient_id, "unseen")
                                                                    if same_cohort else "other-cohort"))
        n_slices += labels.shape[0]
        with_tumour += int((labels == 1).any())
        with_nodes += int((labels == 2).any())
        paths.append(rel)
    cohort.save()
    return {"scans": len(scans), "slices": n_slices, "with_tumour": with_tumour, "with_nodes": with_nodes,
            "provenance": provenance, "paths": paths}
