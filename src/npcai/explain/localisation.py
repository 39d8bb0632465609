"""Where does the CAM energy go? Shares of a map inside the lesion, in bands around it, far away.

Pure functions on arrays in ROI space. Every pixel of a slice falls into exactly one region
of each *scale*, so the shares of one scale sum to 1:

``px`` scale (distances in **native image pixels**)
    ``tumour`` (label 1), ``nodes`` (label 2), ``band_0_5px``, ``band_5_10px``,
    ``band_10_20px``, ``band_20_40px``, ``band_gt40px``.
``mm`` scale (distances in millimetres)
    ``tumour``, ``nodes``, ``band_0_3mm``, ``band_3_5mm``, ``band_5_10mm``, ``band_10_20mm``,
    ``far`` (more than 20 mm from any lesion: the far field).

Distances are measured from the **union of tumour and nodes** (every contoured lesion on the
slice) with an exact Euclidean distance transform; a band ``a_b`` holds the pixels at a
distance ``a < d <= b``. Study 000 grows its ROIs by 5/10/20/40/60 *native* pixels and study
003 by 3 mm, which is why both scales are kept. An ROI image is a square native crop of
``crop_size`` pixels resampled to ``S`` pixels, so one ROI pixel spans ``crop_size / S``
native pixels (``index.csv`` columns ``crop_size`` and the ROI size from ``images.npy``) and
``pixel_mm`` / ``pixel_mm_col`` millimetres; :func:`roi_geometry` turns an index row into
those spacings.

A slice without any lesion pixel has no distances: its band shares are NaN (tumour and
nodes shares are 0). A map with no positive energy has NaN shares everywhere.

The **uniform baseline** is what attention spread evenly over the image would give: each
region's area fraction, i.e. ``energy_shares(np.ones_like(cam), ...)``.

Only pixels that carry image information count. :func:`informative_pixels` marks the others
in an ROI image: the **zeroed padding** (every channel exactly 0: outside the kept region of
``segmented`` / ``expand`` / ``bbox`` variants and the square padding, see the ROI cache
contract) and the **air outside the body** (the flat plateau at the image's intensity floor,
where robust normalisation clips the background, connected to the edge of the frame). Passing
``valid=informative_pixels(image)`` to :func:`energy_shares`, :func:`uniform_shares` and
:func:`band_share` leaves those pixels out of both the CAM's shares and the uniform baseline,
so a CAM peaking in the padding or in the air around the head cannot look like attention to
the far field; :func:`excluded_share` says how much of the CAM energy fell there.

Examples:
    >>> import numpy as np
    >>> labels = np.zeros((32, 32), int); labels[12:20, 12:20] = 1
    >>> cam = np.zeros((32, 32)); cam[12:20, 12:20] = 1.0
    >>> g = RoiGeometry(native_px=1.0, pixel_mm=(1.0, 1.0))
    >>> round(energy_shares(cam, labels, g)["px"]["tumour"], 3)
    1.0
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import ndimage

from npcai.errors import NpcaiError

__all__ = [
    "PX_EDGES", "MM_EDGES", "RoiGeometry", "roi_geometry", "region_names", "distance_from_lesion",
    "region_maps", "energy_shares", "uniform_shares", "band_mask", "band_share", "flatten_shares",
    "informative_pixels", "excluded_share",
]

TUMOUR, NODES = 1, 2
PX_EDGES: tuple[float, ...] = (0, 5, 10, 20, 40)    # bands 0-5, 5-10, 10-20, 20-40, >40 native px
MM_EDGES: tuple[float, ...] = (0, 3, 5, 10, 20)     # bands 0-3, 3-5, 5-10, 10-20 mm, then the far field


@dataclass(frozen=True)
class RoiGeometry:
    """Physical size of one ROI pixel.

    Attributes:
        native_px: native image pixels per ROI pixel (``crop_size / S``).
        pixel_mm: millimetres per ROI pixel, ``(row, column)``.
    """

    native_px: float
    pixel_mm: tuple[float, float]


def roi_geometry(row: Mapping, roi_size: int) -> RoiGeometry:
    """The :class:`RoiGeometry` of one ``index.csv`` row of an ROI cache of ``roi_size`` px."""
    try:
        crop = float(row["crop_size"])
        mm_r = float(row["pixel_mm"])
        mm_c = float(row.get("pixel_mm_col", mm_r))
    except KeyError as exc:
        raise NpcaiError(f"ROI index.csv: column {exc.args[0]!r} missing; rebuild the ROI with `npcai roi build`") from exc
    if not (crop > 0 and mm_r > 0 and np.isfinite(mm_c) and mm_c > 0):
        raise NpcaiError(f"ROI index.csv: crop_size={crop}, pixel_mm={mm_r} must be positive; rebuild the ROI")
    return RoiGeometry(native_px=crop / float(roi_size), pixel_mm=(mm_r, mm_c))


def _band_names(edges: tuple[float, ...], unit: str, last: str) -> list[str]:
    def fmt(v: float) -> str:
        return f"{v:g}".replace(".", "p")

    names = [f"band_{fmt(a)}_{fmt(b)}{unit}" for a, b in zip(edges[:-1], edges[1:])]
    return names + [last]


def region_names(scale: str, px_edges: tuple[float, ...] = PX_EDGES,
                 mm_edges: tuple[float, ...] = MM_EDGES) -> list[str]:
    """Region names of a scale (``"px"`` or ``"mm"``), in order from the lesion outwards."""
    if scale == "px":
        return ["tumour", "nodes", *_band_names(px_edges, "px", f"band_gt{px_edges[-1]:g}px")]
    if scale == "mm":
        return ["tumour", "nodes", *_band_names(mm_edges, "mm", "far")]
    raise ValueError(f"scale must be 'px' or 'mm', got {scale!r}")


def distance_from_lesion(labels: np.ndarray, spacing: tuple[float, float],
                         lesion_labels: tuple[int, ...] = (TUMOUR, NODES)) -> np.ndarray | None:
    """Euclidean distance of every pixel to the nearest lesion pixel (0 inside), in the units
    of ``spacing`` (row, column size of one pixel); ``None`` when the slice has no lesion."""
    lesion = np.isin(labels, lesion_labels)
    if not lesion.any():
        return None
    return ndimage.distance_transform_edt(~lesion, sampling=spacing)


def _check(cam: np.ndarray, labels: np.ndarray) -> None:
    if cam.shape != labels.shape or cam.ndim != 2:
        raise NpcaiError(f"CAM shape {cam.shape} and label map shape {labels.shape} must be the same (H, W)")


def _valid(valid: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if valid is None:
        return None
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != shape:
        raise NpcaiError(f"valid-pixel mask shape {valid.shape} and CAM shape {shape} must be the same (H, W)")
    return valid


def informative_pixels(image: np.ndarray, *, air: bool = True, floor_tolerance: float = 0.02,
                       min_air_fraction: float = 0.01) -> np.ndarray:
    """Pixels of an ROI image that carry image information: ``(H, W)`` bool.

    Left out: the zeroed padding (every channel exactly 0) and, with ``air``, the air outside
    the body: pixels within ``floor_tolerance`` x (99th percentile - floor) of the image's
    intensity floor in every channel (robust normalisation clips the background to one value)
    that are connected to the edge of the frame. Dark tissue or the airway inside the body is
    kept unless it touches the frame's edge. Nothing is called air when the floor plateau is
    under ``min_air_fraction`` of the non-padding pixels (e.g. a crop inside the body) or the
    image has no contrast.

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` ROI image as stored in ``images.npy``.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise NpcaiError(f"ROI image: expected shape (C, H, W) or (H, W), got {tuple(np.shape(image))}")
    padding = np.all(img == 0, axis=0)
    valid = ~padding
    if not air or not valid.any():
        return valid
    near_floor = np.ones(valid.shape, bool)
    for channel in img:
        values = channel[valid]
        floor, top = float(values.min()), float(np.percentile(values, 99))
        if not top > floor:
            return valid                      # no contrast: nothing to tell air from tissue
        near_floor &= channel <= floor + floor_tolerance * (top - floor)
    near_floor &= valid
    if near_floor.sum() < min_air_fraction * valid.sum():
        return valid
    components, _ = ndimage.label(near_floor)
    edge = np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]])
    outside = np.isin(components, np.unique(edge[edge > 0]))
    return valid & ~outside


def excluded_share(cam: np.ndarray, valid: np.ndarray) -> float:
    """Share of the positive CAM energy on pixels outside ``valid`` (padding, air); NaN when
    the map has no positive energy."""
    cam = np.maximum(np.asarray(cam, dtype=np.float64), 0.0)
    valid = _valid(valid, cam.shape)
    total = float(cam.sum())
    return float(cam[~valid].sum() / total) if total > 0 else float("nan")


def region_maps(labels: np.ndarray, geometry: RoiGeometry, px_edges: tuple[float, ...] = PX_EDGES,
                mm_edges: tuple[float, ...] = MM_EDGES) -> dict[str, np.ndarray | None]:
    """Integer region maps ``{"px": (H,W), "mm": (H,W)}``: value ``k`` is the ``k``-th of
    :func:`region_names`; ``None`` for a scale when the slice has no lesion."""
    labels = np.asarray(labels)
    out: dict[str, np.ndarray | None] = {}
    for scale, spacing, edges in (("px", (geometry.native_px, geometry.native_px), px_edges),
                                  ("mm", geometry.pixel_mm, mm_edges)):
        dist = distance_from_lesion(labels, spacing)
        if dist is None:
            out[scale] = None
            continue
        # d in (edges[i], edges[i+1]] -> band i; > last edge -> the outermost region.
        band = np.searchsorted(np.asarray(edges[1:], dtype=float), dist, side="left")
        regions = 2 + band
        regions[labels == TUMOUR] = 0
        regions[labels == NODES] = 1
        out[scale] = regions.astype(np.int16)
    return out


def energy_shares(cam: np.ndarray, labels: np.ndarray, geometry: RoiGeometry,
                  px_edges: tuple[float, ...] = PX_EDGES, mm_edges: tuple[float, ...] = MM_EDGES, *,
                  valid: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Share of the positive CAM energy in each region: ``{"px": {...}, "mm": {...}}``.

    Args:
        cam: ``(H, W)`` map; its negative part is ignored (Grad-CAM's ReLU).
        labels: ``(H, W)`` ROI label map (1 tumour, 2 nodes, 0 elsewhere).
        geometry: size of an ROI pixel (:func:`roi_geometry`).
        valid: ``(H, W)`` bool, the pixels that count (:func:`informative_pixels`); energy
            elsewhere is left out of the shares. Default: every pixel.

    Returns:
        For each scale, region name -> share of the energy on valid pixels; the shares of a
        scale sum to 1 (NaN where undefined: no lesion on the slice for the bands, no positive
        energy on valid pixels for all).
    """
    cam = np.maximum(np.asarray(cam, dtype=np.float64), 0.0)
    labels = np.asarray(labels)
    _check(cam, labels)
    valid = _valid(valid, cam.shape)
    if valid is not None:
        cam = np.where(valid, cam, 0.0)
    total = float(cam.sum())
    maps = region_maps(labels, geometry, px_edges, mm_edges)
    result: dict[str, dict[str, float]] = {}
    for scale in ("px", "mm"):
        names = region_names(scale, px_edges, mm_edges)
        if total <= 0:
            result[scale] = {n: float("nan") for n in names}
            continue
        regions = maps[scale]
        if regions is None:
            shares = {n: float("nan") for n in names}
            shares["tumour"] = shares["nodes"] = 0.0
        else:
            sums = np.bincount(regions.ravel(), weights=cam.ravel(), minlength=len(names))
            shares = {n: float(s / total) for n, s in zip(names, sums)}
        result[scale] = shares
    return result


def uniform_shares(labels: np.ndarray, geometry: RoiGeometry, px_edges: tuple[float, ...] = PX_EDGES,
                   mm_edges: tuple[float, ...] = MM_EDGES, *, valid: np.ndarray | None = None
                   ) -> dict[str, dict[str, float]]:
    """The shares a uniform map would get: each region's area fraction of the slice (of its
    ``valid`` pixels when given, as in :func:`energy_shares`)."""
    labels = np.asarray(labels)
    return energy_shares(np.ones(labels.shape), labels, geometry, px_edges, mm_edges, valid=valid)


def band_mask(labels: np.ndarray, geometry: RoiGeometry, band: tuple[float, float], *, unit: str = "px",
              reference: tuple[int, ...] = (TUMOUR,)) -> np.ndarray | None:
    """Pixels at a distance ``inner < d <= outer`` from the ``reference`` labels (the tumour by
    default), in native px (``unit="px"``) or mm (``unit="mm"``); None without ``reference``."""
    inner, outer = (float(v) for v in band)
    if not outer > inner >= 0:
        raise NpcaiError(f"signal band {tuple(band)}: needs 0 <= inner < outer ({unit})")
    if unit == "px":
        spacing = (geometry.native_px, geometry.native_px)
    elif unit == "mm":
        spacing = geometry.pixel_mm
    else:
        raise ValueError(f"unit must be 'px' or 'mm', got {unit!r}")
    dist = distance_from_lesion(np.asarray(labels), spacing, reference)
    if dist is None:
        return None
    return (dist > inner) & (dist <= outer)


def band_share(cam: np.ndarray, labels: np.ndarray, geometry: RoiGeometry, band: tuple[float, float],
               *, unit: str = "px", reference: tuple[int, ...] = (TUMOUR,), valid: np.ndarray | None = None
               ) -> tuple[float, float]:
    """Share of CAM energy, and of a uniform map, on a ring around the ``reference`` labels
    (see :func:`band_mask`), e.g. the band where a phantom's prognostic signal was planted;
    with ``valid``, both over the valid pixels only (as :func:`energy_shares`).

    Returns:
        ``(share, uniform_share)``; both NaN when the slice has none of ``reference`` or no
        valid pixel (and ``share`` NaN when the map has no positive energy there).
    """
    cam = np.maximum(np.asarray(cam, dtype=np.float64), 0.0)
    labels = np.asarray(labels)
    _check(cam, labels)
    valid = _valid(valid, cam.shape)
    if valid is None:
        valid = np.ones(cam.shape, bool)
    ring = band_mask(labels, geometry, band, unit=unit, reference=reference)
    if ring is None or not valid.any():
        return float("nan"), float("nan")
    cam = np.where(valid, cam, 0.0)
    total = float(cam.sum())
    share = float(cam[ring].sum() / total) if total > 0 else float("nan")
    return share, float((ring & valid).sum() / valid.sum())


def flatten_shares(shares: dict[str, dict[str, float]], prefix: str = "share") -> dict[str, float]:
    """``{"px": {"tumour": a, ...}, "mm": {...}}`` -> ``{"share_tumour": a, "share_band_0_5px": .., ...}``
    (tumour and nodes appear once: they are the same on both scales)."""
    flat: dict[str, float] = {}
    for scale in ("px", "mm"):
        for name, value in shares[scale].items():
            flat.setdefault(f"{prefix}_{name}", value)
    return flat
