"""ROI variant strings: what part of each slice a network sees (the seeds' "datasets").

A variant is written as a short string and parsed into a frozen :class:`Variant`:

============================  ===============================================================
``original``                  the whole slice (study 000's "original image")
``segmented``                 the slice with everything outside the region mask zeroed (000)
``expand:Npx`` / ``expand:Nmm`` the region mask grown outward by N pixels / millimetres, the
                              rest zeroed (000: 5/10/20/40/60 px; 003: 3 mm "intra-peritumoural")
``bbox`` / ``bbox:M(px|mm)``  the rectangle around the region mask (plus a margin M), cut out
                              and zero-padded to a square (001, 002, 003)
``bbox-expand:N(px|mm)``      the rectangle around the mask expanded by N, zero-padded to a square
============================  ===============================================================

Examples:
    >>> parse_variant("expand:20px")
    Variant(kind='expand', distance=20.0, unit='px')
    >>> str(parse_variant("bbox:3mm"))
    'bbox:3mm'
    >>> parse_variant("original").uses_mask
    False
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from npcai.errors import NpcaiError

__all__ = ["Variant", "parse_variant", "VARIANT_FORMS", "STUDY_000_VARIANTS", "FRAMES", "RoiSlice",
           "apply_variant", "resolve_frame", "crop_square", "resize_image", "resize_labels"]

VARIANT_FORMS = ("original", "segmented", "expand:Npx", "expand:Nmm", "bbox", "bbox:M(px|mm)",
                 "bbox-expand:N(px|mm)")

#: the seven datasets of study 000 (original, segmented, expanded by 5/10/20/40/60 px)
STUDY_000_VARIANTS = ("original", "segmented", "expand:5px", "expand:10px", "expand:20px",
                      "expand:40px", "expand:60px")

_NUM = r"(\d+(?:\.\d+)?)"
_PATTERN = re.compile(
    rf"^(?:(?P<plain>original|segmented|bbox)"
    rf"|(?P<kind>expand|bbox|bbox-expand):{_NUM}(?P<unit>px|mm))$"
)


@dataclass(frozen=True)
class Variant:
    """A parsed ROI variant.

    Attributes:
        kind: ``original``, ``segmented``, ``expand``, ``bbox`` or ``bbox-expand``.
        distance: the expansion (``expand``, ``bbox-expand``) or the margin (``bbox``); 0 if none.
        unit: ``px`` or ``mm`` (the unit of ``distance``).
    """

    kind: str
    distance: float = 0.0
    unit: str = "px"

    def __str__(self) -> str:
        if self.kind in ("original", "segmented") or (self.kind == "bbox" and self.distance == 0):
            return self.kind
        d = int(self.distance) if float(self.distance).is_integer() else self.distance
        return f"{self.kind}:{d}{self.unit}"

    @property
    def uses_mask(self) -> bool:
        """True when the image content depends on the region mask (all but ``original``)."""
        return self.kind != "original"

    @property
    def is_bbox(self) -> bool:
        """True for the rectangle variants, which always crop a square around the region."""
        return self.kind in ("bbox", "bbox-expand")

    @property
    def expansion(self) -> float:
        """How far the region mask is grown before use (0 for bbox margins, which pad the box)."""
        return self.distance if self.kind in ("expand", "bbox-expand") else 0.0

    @property
    def margin(self) -> float:
        """The margin added around the bounding box (``bbox:M``), else 0."""
        return self.distance if self.kind == "bbox" else 0.0

    def to_pixels(self, value: float, pixel_mm: tuple[float, float]) -> tuple[float, float]:
        """``value`` in this variant's unit as (row, col) pixels for a slice with that spacing."""
        if self.unit == "px":
            return float(value), float(value)
        row_mm, col_mm = pixel_mm
        if not (row_mm > 0 and col_mm > 0):
            raise NpcaiError(f"variant {self}: the scan has no valid pixel spacing ({pixel_mm}); "
                             "use a px distance instead of mm")
        return value / row_mm, value / col_mm


def parse_variant(text: str | Variant) -> Variant:
    """Parse a variant string such as ``expand:20px`` (see the module docstring).

    Raises:
        NpcaiError: the string is not one of the valid forms (the message lists them).
    """
    if isinstance(text, Variant):
        return text
    s = str(text).strip().lower()
    m = _PATTERN.match(s)
    if not m:
        raise NpcaiError(f"variant {text!r} is not valid; use one of: {', '.join(VARIANT_FORMS)} "
                         "(e.g. expand:20px, expand:3mm, bbox:10px)")
    if m.group("plain"):
        return Variant(kind=m.group("plain"))
    distance = float(m.group(3))
    if m.group("kind") == "expand" and distance == 0:
        raise NpcaiError(f"variant {text!r}: an expansion of 0 is the 'segmented' variant; use that")
    return Variant(kind=m.group("kind"), distance=distance, unit=m.group("unit"))


# --------------------------------------------------------------------------- applying a variant
@dataclass
class RoiSlice:
    """One slice as a network sees it, and where it came from.

    Attributes:
        image: ``(C, S, S)`` float32, zero outside the kept region.
        labels: ``(S, S)`` uint8 label map (1 tumour, 2 nodes) in ROI space (nearest neighbour).
        kept: ``(S, S)`` bool, the pixels whose content was kept (for display).
        crop: ``(y0, x0, side)`` of the square window in native pixels (may exceed the image:
            the outside is zero-padded).
    """

    image: np.ndarray
    labels: np.ndarray
    kept: np.ndarray
    crop: tuple[int, int, int]


def crop_square(array: np.ndarray, y0: int, x0: int, side: int) -> np.ndarray:
    """``array[..., y0:y0+side, x0:x0+side]`` with zero padding wherever the window leaves it."""
    h, w = array.shape[-2:]
    out = np.zeros(array.shape[:-2] + (side, side), dtype=array.dtype)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + side, h), min(x0 + side, w)
    if sy1 > sy0 and sx1 > sx0:
        out[..., sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = array[..., sy0:sy1, sx0:sx1]
    return out


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(C, H, W)`` to ``(C, size, size)``: bilinear when enlarging, area when shrinking.

    Area averaging (``cv2.INTER_AREA``) is bilinear's anti-aliased counterpart for shrinking;
    both are deterministic.
    """
    import cv2
    c, h, w = image.shape
    if (h, w) == (size, size):
        return image.astype(np.float32, copy=True)
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    hwc = np.ascontiguousarray(np.moveaxis(image.astype(np.float32, copy=False), 0, -1))
    out = cv2.resize(hwc, (size, size), interpolation=interp)
    if out.ndim == 2:
        out = out[:, :, None]
    return np.ascontiguousarray(np.moveaxis(out, -1, 0))


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2D label map to ``(size, size)`` with nearest neighbour."""
    import cv2
    if labels.shape == (size, size):
        return labels.copy()
    return cv2.resize(np.ascontiguousarray(labels), (size, size), interpolation=cv2.INTER_NEAREST)


FRAMES = ("slice", "bbox")


def resolve_frame(variant: Variant, frame: str | None) -> str:
    """The frame a variant uses: bbox variants always ``bbox``; others ``slice`` unless asked."""
    if frame is not None and frame not in FRAMES:
        raise NpcaiError(f"--frame {frame!r} is not valid; use slice or bbox")
    if variant.is_bbox:
        if frame == "slice":
            raise NpcaiError(f"variant {variant} always crops a square around the region; "
                             "drop --frame slice or use expand:N/segmented with --frame slice")
        return "bbox"
    return frame or "slice"


def apply_variant(image: np.ndarray, labels: np.ndarray, region: np.ndarray,
                  variant: Variant | str, *, size: int, pixel_mm: tuple[float, float],
                  frame: str | None = None,
                  fallback_box: tuple[int, int, int, int] | None = None) -> RoiSlice:
    """Make one slice of an ROI dataset.

    Args:
        image: ``(C, H, W)`` normalised channels of one native axial slice.
        labels: ``(H, W)`` label map after small-component removal.
        region: ``(H, W)`` bool, the chosen region (primary / nodes / both) of ``labels``.
        variant: what to keep (see module docstring).
        size: output side S in pixels.
        pixel_mm: ``(row_mm, col_mm)`` native spacing (for mm distances).
        frame: ``slice`` (the whole slice, zero-padded to a square) or ``bbox`` (a square
            around the kept region); bbox variants always use ``bbox``.
        fallback_box: the window used when ``frame="bbox"`` but this slice's region is empty
            (e.g. ``--slices all``): typically the box of the region over the whole scan.

    The kept pixels are: everything (``original``); the region (``segmented``); the region
    expanded by N (``expand:N``); the rectangle around the region (expanded by N for
    ``bbox-expand:N``, plus the margin M for ``bbox:M``). Everything else is set to 0 --
    after normalisation, so 0 means "no information". The window is then cropped (zero
    padded where it leaves the image) and resized to ``size x size``.
    """
    from npcai.imaging.masks import bounding_box, expand_mask, square_window

    variant = parse_variant(variant)
    frame = resolve_frame(variant, frame)
    h, w = region.shape
    if variant.kind == "original":
        keep = np.ones((h, w), bool)
        grown = region
    else:
        if variant.expansion > 0:
            grown = expand_mask(region, variant.expansion, variant.unit, pixel_mm)
        else:
            grown = np.asarray(region, bool)
        keep = grown
    window = None
    if frame == "bbox":
        box = bounding_box(grown) or fallback_box
        if box is not None:
            margin = variant.to_pixels(variant.margin, pixel_mm) if variant.margin else (0.0, 0.0)
            window = square_window(box, margin)
            if variant.is_bbox:
                mr, mc = int(np.ceil(margin[0])), int(np.ceil(margin[1]))
                keep = np.zeros((h, w), bool)
                keep[max(box[0] - mr, 0):box[2] + mr, max(box[1] - mc, 0):box[3] + mc] = True
        elif variant.is_bbox:
            keep = np.zeros((h, w), bool)
    if window is None:                       # the whole slice, centred in a square
        side = max(h, w)
        window = (-((side - h) // 2), -((side - w) // 2), side)
    y0, x0, side = window
    kept_img = np.where(keep[None], image, 0.0).astype(np.float32)
    out_img = resize_image(crop_square(kept_img, y0, x0, side), size)
    out_lab = resize_labels(crop_square(np.asarray(labels, np.uint8), y0, x0, side), size)
    out_keep = resize_labels(crop_square(keep.astype(np.uint8), y0, x0, side), size).astype(bool)
    out_img *= out_keep[None]             # exactly 0 outside the kept region, also after resizing
    return RoiSlice(out_img, out_lab, out_keep, (int(y0), int(x0), int(side)))
