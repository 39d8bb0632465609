"""Contour label maps (ITK-SNAP NIfTI/NRRD): naming, physical-space checks, statistics.

A contour is a label map (0 background, 1 primary tumour, 2 nodes) that must lie in the
same physical space as its image. When only the voxel grid differs (another resolution
over the same extent) it is resampled onto the image grid with nearest-neighbour
interpolation; when the physical extent disagrees by more than one voxel it is refused,
because the contour was drawn on another scan. An empty contour (no labelled voxel) is
refused too: it almost always means a wrong export, and a silent empty mask would turn
into a "no tumour" patient downstream.

Volume and contour files are named ``<id>_<sequence>`` or ``<id>_<timepoint>_<sequence>``
(``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``, ``.mha``); see :func:`parse_volume_name`. A name
without a timepoint means ``pre``, so ``H001_T1c`` and ``H001_pre_T1c`` claim the same scan.
For contours (``find_volumes(..., prefer_timepointed=True)``, as ingest reads them) the
**explicitly time-pointed name wins** and the other file is ignored, with one info line per
scan naming both files; two files that still claim one scan (e.g. ``.nii.gz`` and ``.nrrd``
with the same name) are refused.

Examples:
    >>> parse_volume_name("H001_post_T1c.nii.gz")
    ('H001', 'post', 'T1c')
    >>> parse_volume_name("pt7_CT.nii.gz")
    ('pt7', 'pre', 'CT')
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from npcai.cohort.model import LABELS
from npcai.errors import NpcaiError

__all__ = [
    "VOLUME_SUFFIXES", "parse_volume_name", "has_timepoint", "find_volumes", "read_volume", "read_label_map",
    "align_label_map", "same_grid", "mask_stats", "clean_image",
]

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_SEQ = {"t1": "T1", "t2": "T2", "t1c": "T1c", "ct": "CT"}
_NAME_RX = re.compile(r"^(?P<id>.+?)(?:_(?P<tp>pre|post))?_(?P<seq>t1c|t1|t2|ct)$", re.IGNORECASE)


def _stem(path: Path) -> str | None:
    name = path.name
    for suf in VOLUME_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return None


def parse_volume_name(name: str | os.PathLike) -> tuple[str, str, str] | None:
    """``(hospital_id, timepoint, sequence)`` from a file name, or None when it does not fit.

    A name without a timepoint means ``pre``.
    """
    stem = _stem(Path(name))
    if stem is None:
        return None
    m = _NAME_RX.match(stem)
    if not m:
        return None
    return m.group("id"), (m.group("tp") or "pre").lower(), _SEQ[m.group("seq").lower()]


def has_timepoint(name: str | os.PathLike) -> bool:
    """Whether a volume file name states its timepoint (``<id>_pre_T1c``), rather than
    implying ``pre`` (``<id>_T1c``)."""
    stem = _stem(Path(name))
    m = _NAME_RX.match(stem) if stem is not None else None
    return bool(m and m.group("tp"))


def find_volumes(folder: str | os.PathLike, what: str, *,
                 prefer_timepointed: bool = False) -> dict[tuple[str, str, str], Path]:
    """All volume files in ``folder`` keyed by ``(hospital_id, timepoint, sequence)``.

    Files that do not follow the naming rule are listed in a warning. Two files claiming the
    same key are an error naming both, except with ``prefer_timepointed`` when exactly one of
    them states its timepoint (``<id>_pre_<seq>`` beside ``<id>_<seq>``): that one is used,
    and one info line names the file used and the file ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NpcaiError(f"{folder}: {what} folder not found; check the path")
    claims: dict[tuple[str, str, str], list[Path]] = {}
    odd: list[str] = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith(".") or _stem(p) is None:
            continue
        key = parse_volume_name(p.name)
        if key is None:
            odd.append(p.name)
            continue
        claims.setdefault(key, []).append(p)
    found: dict[tuple[str, str, str], Path] = {}
    for key, paths in claims.items():
        if len(paths) > 1 and prefer_timepointed:
            explicit = [p for p in paths if has_timepoint(p.name)]
            if len(explicit) == 1:
                ignored = [p.name for p in paths if p is not explicit[0]]
                log.info("%s: %s %s: using %s, ignoring %s (an explicitly time-pointed name wins)",
                         folder.name, what, " ".join(key[1:]), explicit[0].name, ", ".join(ignored))
                paths = explicit
        if len(paths) > 1:
            raise NpcaiError(f"{folder}: {paths[0].name} and {paths[1].name} both claim {key[0]} {key[1]} {key[2]}; "
                             "keep one")
        found[key] = paths[0]
    if odd:
        log.warning("%s: ignored %d %s file(s) not named <id>_<sequence> or <id>_<timepoint>_<sequence> "
                    "(sequence T1, T2, T1c or CT): %s", folder, len(odd), what, ", ".join(odd[:5]))
    return found


def clean_image(image, dtype=None):
    """A copy of ``image`` with its geometry but no metadata (NIfTI descrip, NRRD keys...)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def check_gzip_complete(path: str | os.PathLike, *, fix: str) -> None:
    """Refuse a ``.gz`` file that is not one complete gzip stream.

    SimpleITK reads a truncated ``.nii.gz`` without complaint and fills the missing voxels,
    so a half-copied volume would silently become data. Decompressing the stream once (and
    checking its CRC) costs a fraction of the read and catches truncation and garbage. ISA-L
    decompresses about twice as fast as zlib here.

    Args:
        path: the file.
        fix: what the user should do, appended to the message.
    """
    import gzip
    import zlib

    from isal import igzip, isal_zlib

    path = Path(path)
    if not path.name.lower().endswith(".gz"):
        return
    try:
        with igzip.open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error, isal_zlib.error) as exc:
        raise NpcaiError(f"{path}: the compressed volume is truncated or corrupt ({exc}); {fix}") from exc


def read_image_file(path: str | os.PathLike, *, fix: str):
    """Read an image file with SimpleITK; a file it cannot decode or a truncated ``.gz`` is
    refused with one line naming the file and ``fix`` (what to do)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: file not found; {fix}")
    check_gzip_complete(path, fix=fix)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise NpcaiError(f"{path}: cannot read the volume ({str(exc).strip().splitlines()[-1][:160]}); "
                         f"{fix}") from exc


def read_volume(path: str | os.PathLike):
    """Read a 3-D greyscale NIfTI/NRRD/MHA volume (metadata dropped)."""
    path = Path(path)
    return clean_image(_read_3d(path))


def _read_3d(path: Path):
    """:func:`read_image_file`, refusing anything but a 3-D single-channel volume (metadata kept)."""
    image = read_image_file(path, fix="re-save it as NIfTI")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise NpcaiError(f"{path}: expected a 3-D single-channel volume, got {image.GetDimension()}-D with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s); re-save it")
    return image


def _label_values(arr: np.ndarray) -> np.ndarray:
    """The distinct values of a label array, sorted; for an integer array whose values lie in
    0..2 only its minimum and maximum are needed (``np.unique`` takes many times longer)."""
    if arr.size and arr.dtype.kind in "ui":
        lo, hi = int(arr.min()), int(arr.max())
        if lo >= 0 and hi <= 2:
            return np.array([0] if hi == 0 else [v for v in range(lo, hi + 1) if v in (lo, hi) or (arr == v).any()])
    return np.unique(arr)


def read_label_map(path: str | os.PathLike):
    """Read a contour label map as uint8; values must be 0, 1 (tumour) and 2 (nodes)."""
    path = Path(path)
    image = _read_3d(path)         # cleaned once, below, as uint8
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(image)
    values = _label_values(arr)
    bad = [v for v in values.tolist() if v not in (0, 1, 2)]
    if bad:
        raise NpcaiError(f"{path}: label values {bad[:5]} found; contours must use 0 background, 1 tumour, "
                         "2 nodes (relabel in ITK-SNAP)")
    if len(values) == 1 and values[0] == 0:
        raise NpcaiError(f"{path}: empty contour (no tumour or node voxel); draw the contour or remove the file")
    return clean_image(image, np.uint8)


def _corners(image) -> np.ndarray:
    """Physical positions of the 8 outer corners (voxel edges) of an image."""
    size = np.array(image.GetSize(), dtype=float)
    pts = []
    for cx in (-0.5, size[0] - 0.5):
        for cy in (-0.5, size[1] - 0.5):
            for cz in (-0.5, size[2] - 0.5):
                pts.append(image.TransformContinuousIndexToPhysicalPoint((cx, cy, cz)))
    return np.array(pts)


def same_grid(a, b, tol: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tol``)."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol, rtol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=max(tol, 1e-2 * min(a.GetSpacing())))
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


_LABEL_NAMES = {v: k for k, v in LABELS.items()}


def labels_outside(label, image) -> dict[int, tuple[int, list[float]]]:
    """Labelled voxels of ``label`` whose centre no voxel of ``image`` covers.

    Returns ``{label value: (voxel count, physical z of those voxels in mm)}``; empty when every labelled voxel lies within the image's voxel grid (each
    would then find its nearest image voxel when resampled).
    """
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(label)
    zyx = np.argwhere(arr > 0)
    if not len(zyx):
        return {}

    def frame(img):
        return (np.asarray(img.GetOrigin(), float), np.asarray(img.GetSpacing(), float),
                np.asarray(img.GetDirection(), float).reshape(3, 3))

    org, sp, d = frame(label)
    phys = org + (zyx[:, ::-1] * sp) @ d.T                      # voxel centres (x, y, z) in mm
    org_i, sp_i, d_i = frame(image)
    cidx = ((phys - org_i) @ d_i) / sp_i                        # continuous index in the image
    size = np.asarray(image.GetSize(), float)
    outside = ((cidx < -0.5) | (cidx > size - 0.5)).any(axis=1)
    if not outside.any():
        return {}
    values = arr[tuple(zyx[outside].T)]
    slice_mm = phys[outside][:, 2]
    return {int(v): (int((values == v).sum()), sorted({round(float(z), 1) for z in slice_mm[values == v]}))
            for v in np.unique(values)}


def align_label_map(label, image, name: str):
    """The label map on the image's voxel grid.

    Same grid: returned with the image's exact geometry. Same physical extent on another
    grid (corners within one image voxel): nearest-neighbour resampling, logged. Otherwise
    :class:`NpcaiError` naming ``name`` (the contour file).
    """
    import SimpleITK as sitk

    if same_grid(label, image):
        if label.GetPixelID() == sitk.sitkUInt8:
            out = sitk.Image(label)                      # shares the voxels until either is written to
            for key in out.GetMetaDataKeys():
                out.EraseMetaData(key)
        else:
            out = sitk.GetImageFromArray(sitk.GetArrayFromImage(label).astype(np.uint8, copy=False))
        out.CopyInformation(image)
        return out
    tol = float(max(max(image.GetSpacing()), max(label.GetSpacing())))
    dev = float(np.abs(np.sort(_corners(label), axis=0) - np.sort(_corners(image), axis=0)).max())
    if dev > tol:
        raise NpcaiError(f"{name}: contour lies in another physical space than its image (extent differs by "
                         f"{dev:.1f} mm, tolerance {tol:.1f} mm; contour size {label.GetSize()} spacing "
                         f"{tuple(round(s, 3) for s in label.GetSpacing())} vs image {image.GetSize()} "
                         f"{tuple(round(s, 3) for s in image.GetSpacing())}); export the contour on this scan")
    lost = labels_outside(label, image)
    if lost:
        what = " and ".join(f"{n} {_LABEL_NAMES.get(v, f'label-{v}')} voxel(s)" for v, (n, _) in sorted(lost.items()))
        zs = sorted({z for _, (_, zz) in lost.items() for z in zz})
        raise NpcaiError(f"{name}: {what} of the contour lie outside its image (contour slice(s) at "
                         f"{', '.join(f'{z:.1f}' for z in zs[:4])} mm) and would be cropped; the series "
                         "probably lacks slices there: re-export the complete series, or the contour on this scan")
    log.info("%s: contour grid differs from its image; resampled (nearest neighbour)", name)
    out = sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(out).any():
        raise NpcaiError(f"{name}: contour is empty after resampling onto its image; check the contour's geometry")
    return out


def mask_stats(mask) -> dict[str, Any]:
    """Slices containing tumour / nodes and their volumes (ml) for a label-map image."""
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(mask)
    voxel_ml = float(np.prod(mask.GetSpacing())) / 1000.0
    stats: dict[str, Any] = {}
    for name, label in LABELS.items():
        hit = arr == label
        stats[f"slices_{name}"] = int(hit.any(axis=(1, 2)).sum())
        stats[f"volume_{name}_ml"] = round(float(hit.sum()) * voxel_ml, 4)
    return stats
