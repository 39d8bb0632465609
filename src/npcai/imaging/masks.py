"""Mask operations on the native pixel grid: regions, small-component removal, expansion, boxes.

All functions work on one 2D axial slice (``(row, col)``) or a stack ``(z, row, col)`` and
keep the physical pixel spacing in mind: expansion in millimetres uses a Euclidean distance
transform sampled at the slice's ``(row_mm, col_mm)`` spacing, so a 3 mm ring is 3 mm wide in
every direction even when pixels are not square.

Examples:
    >>> import numpy as np
    >>> m = np.zeros((20, 20), bool); m[8:12, 8:12] = True
    >>> int(expand_mask(m, 2).sum())      # a 4x4 square grown by 2 px (Euclidean)
    52
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from npcai.errors import NpcaiError

__all__ = ["REGIONS", "region_mask", "drop_small_components", "expand_mask", "bounding_box",
           "square_window", "parse_min_component"]

#: region name -> mask labels it covers (1 primary tumour, 2 cervical nodes)
REGIONS = {"primary": (1,), "nodes": (2,), "both": (1, 2)}


def region_mask(labels: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask of ``region`` (``primary``, ``nodes`` or ``both``) in a label map."""
    if region not in REGIONS:
        raise NpcaiError(f"region {region!r} is not valid; use one of: {', '.join(REGIONS)}")
    return np.isin(labels, REGIONS[region])


def parse_min_component(text: str | tuple[int, int] | None) -> tuple[int, int]:
    """Parse ``--min-component`` (``"10x10"``, ``"0"`` to keep everything, or a tuple)."""
    if text is None:
        return (0, 0)
    if isinstance(text, (tuple, list)):
        if len(text) != 2:
            raise NpcaiError(f"min_component {text!r}: give (height, width) in pixels")
        h, w = (int(v) for v in text)
    else:
        s = str(text).strip().lower()
        parts = s.split("x")
        try:
            h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
            if len(parts) > 2:
                raise ValueError
        except ValueError:
            raise NpcaiError(f"--min-component {text!r} is not valid; use HxW in pixels, "
                             "e.g. 10x10, or 0 to keep every component") from None
    if h < 0 or w < 0:
        raise NpcaiError(f"--min-component {text!r}: sizes must be >= 0")
    return (h, w)


def drop_small_components(labels: np.ndarray, min_size: tuple[int, int] = (10, 10)) -> np.ndarray:
    """Remove small 2D connected components from a label map, slice by slice (study 000).

    The exact rule: within each axial slice and each label separately, an 8-connected
    component is dropped when its bounding box is smaller than ``min_size`` in *both*
    directions, i.e. ``height < min_h and width < min_w`` (it fits strictly inside a
    ``min_h x min_w`` box). ``(0, 0)`` keeps everything. Returns a new array.
    """
    min_h, min_w = min_size
    out = np.array(labels, copy=True)
    if min_h <= 0 and min_w <= 0:
        return out
    stack = out if out.ndim == 3 else out[None]
    present = np.flatnonzero(np.bincount(stack.ravel(), minlength=1)[1:]) + 1
    if present.size == 0:
        return out
    # Work on the in-plane box holding every label (contours are small; volumes are not).
    rows = np.flatnonzero(stack.any(axis=(0, 2)))
    cols = np.flatnonzero(stack.any(axis=(0, 1)))
    block = stack[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]      # a view: edits land in out
    # 8-connected within a slice, never across slices: one labelling call per label value.
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    for label in present:
        comp, n = ndimage.label(block == label, structure=structure)
        if n == 0:
            continue
        small = np.zeros(n + 1, bool)
        for i, box in enumerate(ndimage.find_objects(comp), start=1):
            h = box[1].stop - box[1].start
            w = box[2].stop - box[2].start
            small[i] = h < min_h and w < min_w
        block[small[comp]] = 0
    return out


def expand_mask(mask: np.ndarray, distance: float | tuple[float, float], unit: str = "px",
                pixel_mm: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Grow a 2D mask outward by exactly ``distance`` (Euclidean), clipped to the image.

    A pixel belongs to the result when its centre lies within ``distance`` of a mask pixel
    centre: the Euclidean distance transform of the complement, computed in pixels
    (``unit="px"``) or in millimetres with ``sampling=pixel_mm`` (``unit="mm"``; ``pixel_mm``
    is the slice's ``(row_mm, col_mm)`` spacing), is ``<= distance``. The output has the
    input's shape, so the growth stops at the image edge. An empty mask stays empty.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"expand_mask works on one 2D slice, got shape {mask.shape}")
    if distance <= 0 or not mask.any():
        return mask.copy()
    if unit == "mm":
        if not (pixel_mm[0] > 0 and pixel_mm[1] > 0):
            raise NpcaiError(f"expansion of {distance} mm needs a pixel spacing; the scan has {pixel_mm}")
        sampling = (float(pixel_mm[0]), float(pixel_mm[1]))
    elif unit == "px":
        sampling = (1.0, 1.0)
    else:
        raise ValueError(f"unit must be 'px' or 'mm', got {unit!r}")
    # Only the neighbourhood of the mask can be reached: work on a padded crop (much faster).
    reach = (int(np.ceil(distance / sampling[0])) + 1, int(np.ceil(distance / sampling[1])) + 1)
    rows, cols = np.nonzero(mask)
    r0, r1 = max(rows.min() - reach[0], 0), min(rows.max() + reach[0] + 1, mask.shape[0])
    c0, c1 = max(cols.min() - reach[1], 0), min(cols.max() + reach[1] + 1, mask.shape[1])
    crop = mask[r0:r1, c0:c1]
    dist = ndimage.distance_transform_edt(~crop, sampling=sampling)
    out = np.zeros_like(mask)
    out[r0:r1, c0:c1] = dist <= distance + 1e-9
    return out


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(row0, col0, row1, col1)`` (end exclusive) of the True pixels of a 2D mask, or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def square_window(box: tuple[int, int, int, int], margin: tuple[float, float] = (0.0, 0.0)
                  ) -> tuple[int, int, int]:
    """The square ``(y0, x0, side)`` centred on ``box`` (plus ``margin`` px per side) that holds it.

    The window may extend beyond the image; the caller zero-pads (as studies 001/003 did).
    """
    r0, c0, r1, c1 = box
    mr, mc = int(np.ceil(margin[0])), int(np.ceil(margin[1]))
    r0, r1, c0, c1 = r0 - mr, r1 + mr, c0 - mc, c1 + mc
    side = max(r1 - r0, c1 - c0, 1)
    y0 = r0 - (side - (r1 - r0)) // 2
    x0 = c0 - (side - (c1 - c0)) // 2
    return int(y0), int(x0), int(side)
