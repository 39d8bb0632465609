"""Converting one scan: read its series, write it and its contour as NIfTI, hash and measure them.

:func:`convert_scan` is what ingest runs per scan, in the calling process or in spawned worker
processes (:mod:`npcai.cohort.parallel`). This module is kept light to import (no pandas): a
spawned worker imports it, not all of :mod:`npcai.cohort.ingest`, which halves a worker's start.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from npcai.cohort.contours import align_label_map, mask_stats, read_label_map, same_grid
from npcai.cohort.rtstruct import rasterise_rtstruct
from npcai.fsutil import file_sha256

__all__ = ["ScanJob", "ConvertedScan", "convert_scan", "load_mask", "write_volume", "GZIP_LEVEL"]

#: deflate level of ``.nii.gz`` outputs (ISA-L levels 0-3; 2 is within a few % of zlib's size)
GZIP_LEVEL = 2



@dataclass(frozen=True)
class ScanJob:
    """What converting one scan needs (picklable: it may run in a worker process)."""

    load: Callable[[], Any]
    image_path: Path
    mask_path: Path
    contour: Path | None
    rtstruct: Path | None
    rois: Mapping[str, int]
    compress: bool


@dataclass(frozen=True)
class ConvertedScan:
    """What ingest records of one converted scan (geometry, hashes, mask statistics)."""

    size: list[int]
    spacing: list[float]
    origin: list[float]
    direction: list[float]
    image_sha256: str
    mask_stats: dict[str, Any] | None
    contour_source: dict[str, Any] | None


def convert_scan(job: ScanJob) -> ConvertedScan:
    """Read one scan and its contour, write both as NIfTI; runs in the caller or in a worker process."""
    image = job.load()
    image_sha256 = write_volume(image, job.image_path, compress=job.compress)
    mask = load_mask(job, image, job.rois)
    stats = source = None
    if mask is not None:
        mask_img, source = mask
        write_volume(mask_img, job.mask_path, compress=job.compress)
        stats = mask_stats(mask_img)
    return ConvertedScan(size=list(image.GetSize()), spacing=[float(v) for v in image.GetSpacing()],
                          origin=[float(v) for v in image.GetOrigin()],
                          direction=[float(v) for v in image.GetDirection()],
                          image_sha256=image_sha256, mask_stats=stats, contour_source=source)


def load_mask(job: ScanJob, image, rois: Mapping[str, int]):
    """The scan's label map on the image grid (from its NIfTI contour or its RTSTRUCT) and where it
    came from, or None when the scan has no contour."""
    if job.contour is not None:
        label = read_label_map(job.contour)
        resampled = not same_grid(label, image)
        mask = align_label_map(label, image, name=str(job.contour))
        return mask, {"kind": "label_map", "file_sha256": file_sha256(job.contour), "resampled": resampled}
    if job.rtstruct is not None:
        mask = rasterise_rtstruct(job.rtstruct, image, rois, name=str(job.rtstruct))
        return mask, {"kind": "rtstruct", "file_sha256": file_sha256(job.rtstruct)}
    return None




def write_volume(image, path: Path, *, compress: bool = True) -> str:
    """Write a NIfTI volume and return the SHA-256 of the written bytes; ``.nii.gz`` is
    SimpleITK's ``.nii`` bytes gzipped by ISA-L (about 4x faster than ITK's own zlib, which
    ignores the compression level), with no timestamp in the gzip header so the same volume
    always gives the same bytes."""
    import SimpleITK as sitk
    from isal import igzip

    if not compress:
        sitk.WriteImage(image, str(path), useCompression=False)
        return file_sha256(path)
    raw = path.with_name(f".{path.name[:-len('.gz')]}")             # .<scan_id>.nii beside the output
    try:
        sitk.WriteImage(image, str(raw), useCompression=False)
        data = raw.read_bytes()
    finally:
        raw.unlink(missing_ok=True)
    packed = igzip.compress(data, GZIP_LEVEL, mtime=0)
    path.write_bytes(packed)
    return hashlib.sha256(packed).hexdigest()
