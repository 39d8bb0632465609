"""The figures of the results view and the one-page report, drawn with numpy + Pillow.

Matplotlib costs about a second per figure on a busy two-core machine, several times the
model's own compute, so the server draws its few fixed figures directly: Grad-CAM overlays
(grey slice, jet CAM, tumour outline in white, nodes in magenta, a 10 mm scale bar), the
reference histogram (also as inline SVG data for the page) and the one-page A4 report.
Every function returns PNG bytes; nothing is written to disk, and no function is given an
identifier: the report names the patient by the request's pseudonym only.
"""
from __future__ import annotations

import io
import textwrap
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["cam_png", "overlay_rgb", "histogram", "reference_png", "report_png", "percentile", "SHARE_LABELS",
           "CAM_ALPHA"]

SHARE_LABELS = {"tumour": "tumour", "nodes": "nodes", "band_0_5px": "0-5 px ring", "band_5_10px": "5-10 px ring",
                "band_10_20px": "10-20 px ring", "band_20_40px": "20-40 px ring", "band_gt40px": "> 40 px"}
CAM_ALPHA = 0.45
TUMOUR_RGB, NODES_RGB = (255, 255, 255), (255, 0, 255)
INK, MUTED, WARN, BAR, MARK = (29, 39, 51), (91, 103, 115), (176, 58, 46), (155, 180, 204), (192, 57, 43)


# --------------------------------------------------------------------------- basics
@lru_cache(maxsize=None)
def _font(size: int, bold: bool = False):
    from pathlib import Path

    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


@lru_cache(maxsize=1)
def _jet() -> np.ndarray:
    """The jet colour map as a (256, 3) uint8 table (the same map as the explain package's overlays)."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)     # fast zlib: 5x quicker, files ~30% larger
    return buf.getvalue()


def percentile(reference: np.ndarray, value: float) -> float:
    """Percent of the reference patients with a lower probability (ties count half)."""
    ref = np.asarray(reference, dtype=float)
    if ref.size == 0:
        return float("nan")
    return float(100.0 * ((ref < value).sum() + 0.5 * (ref == value).sum()) / ref.size)


# --------------------------------------------------------------------------- Grad-CAM
def _window(image: np.ndarray) -> np.ndarray:
    finite = image[np.isfinite(image)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    hi = hi if hi > lo else lo + 1.0
    return np.clip((np.nan_to_num(image) - lo) / (hi - lo), 0, 1)


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, iterations=2, border_value=0)


def overlay_rgb(s, side: int = 288) -> np.ndarray:
    """One slice's overlay as an RGB array ``(side, side, 3)``: grey ROI, jet CAM, lesion outlines."""
    from PIL import Image

    h, w = s.image.shape
    grey = np.asarray(Image.fromarray((_window(s.image) * 255).astype(np.uint8)).resize((side, side),
                                                                                       Image.BILINEAR), float)
    peak = float(np.max(s.cam)) if np.size(s.cam) else 0.0
    cam = np.asarray(s.cam, np.float32) / peak if peak > 0 else np.zeros((h, w), np.float32)
    cam = np.asarray(Image.fromarray(cam).resize((side, side), Image.BILINEAR)).clip(0, 1)
    colour = _jet()[(cam * 255).astype(np.uint8)].astype(float)
    rgb = (1 - CAM_ALPHA) * grey[..., None] + CAM_ALPHA * colour
    labels = np.asarray(Image.fromarray(np.asarray(s.labels, np.uint8)).resize((side, side), Image.NEAREST))
    for value, c in ((1, TUMOUR_RGB), (2, NODES_RGB)):
        m = labels == value
        if m.any() and not m.all():
            rgb[_outline(m)] = c
    return rgb.round().clip(0, 255).astype(np.uint8)


def _scale_bar(draw, geometry, side: int, n_px: int, y: int) -> None:
    """A 10 mm bar (5 mm when 10 mm would be too wide) in the lower left corner."""
    mm_per_px = geometry.pixel_mm[1] * n_px / side
    length = 10.0 if 10.0 / mm_per_px < side / 2 else 5.0
    px = int(round(length / mm_per_px))
    draw.rectangle((10, y, 10 + px, y + 4), fill=(255, 255, 255))
    draw.text((10, y - 18), f"{length:g} mm", fill=(255, 255, 255), font=_font(13, bold=True))


def cam_png(s, side: int = 288) -> bytes:
    """One slice's Grad-CAM overlay (tumour outline white, nodes magenta) with a scale bar."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(overlay_rgb(s, side))
    draw = ImageDraw.Draw(img)
    _scale_bar(draw, s.geometry, side, s.image.shape[1], side - 14)
    return _png(img)


# --------------------------------------------------------------------------- reference
def histogram(reference: np.ndarray, bins: int = 20) -> dict[str, Any]:
    """Counts of the reference probabilities in ``bins`` equal bins over [0, 1] (for the page's SVG)."""
    counts, edges = np.histogram(np.clip(np.asarray(reference, float), 0, 1), bins=bins, range=(0, 1))
    return {"counts": counts.tolist(), "edges": edges.tolist(), "max": int(max(counts.max(initial=0), 1))}


def _draw_histogram(draw, box: tuple[int, int, int, int], reference: np.ndarray, prob: float,
                    threshold: float | None, endpoint: str) -> None:
    x0, y0, x1, y1 = box
    left, bottom = x0 + 78, y1 - 40
    width, height = x1 - left - 10, bottom - y0 - 8
    hist = histogram(reference)
    top = hist["max"]
    n = len(hist["counts"])
    f_small, f = _font(12), _font(13)
    for i, c in enumerate(hist["counts"]):
        bx0 = left + width * i / n
        bh = height * c / top
        draw.rectangle((bx0 + 1, bottom - bh, left + width * (i + 1) / n - 1, bottom), fill=BAR)
    draw.line((left, bottom, left + width, bottom), fill=INK, width=1)
    draw.line((left, bottom, left, y0 + 8), fill=INK, width=1)
    for v in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        x = left + width * v
        draw.line((x, bottom, x, bottom + 4), fill=INK)
        draw.text((x, bottom + 6), f"{v:.1f}", fill=INK, font=f_small, anchor="mt")
    for c in sorted({0, top}):
        y = bottom - height * c / top
        draw.line((left - 4, y, left, y), fill=INK)
        draw.text((left - 7, y), str(c), fill=INK, font=f_small, anchor="rm")
    draw.text((left + width / 2, y1 - 2), f"model probability of {endpoint} label 1 (high risk)", fill=INK, font=f,
              anchor="mb")
    draw.text((x0, y0 + 8 + height / 2), "patients", fill=INK, font=f, anchor="lm")
    if threshold is not None and np.isfinite(threshold):
        x = left + width * threshold
        for yy in range(int(y0 + 8), int(bottom), 8):
            draw.line((x, yy, x, min(yy + 4, bottom)), fill=MUTED, width=1)
        at = (x + 4, y0 + 8 + height * 0.45)
        label = f"threshold {threshold:.2f} (validation)"
        box = draw.textbbox(at, label, font=f_small, anchor="lm")
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill="white")
        draw.text(at, label, fill=MUTED, font=f_small, anchor="lm")
    x = left + width * min(max(prob, 0), 1)
    draw.line((x, y0 + 4, x, bottom), fill=MARK, width=3)
    anchor = "ra" if prob > 0.6 else "la"
    at, label, font = (x + (-6 if anchor == "ra" else 6), y0 + 4), f"this patient {prob:.2f}", _font(13, True)
    box = draw.textbbox(at, label, font=font, anchor=anchor)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill="white")
    draw.text(at, label, fill=MARK, font=font, anchor=anchor)


def reference_png(reference: np.ndarray, prob: float, threshold: float | None, endpoint: str) -> bytes:
    """Histogram of the training/validation patients' probabilities with this patient marked."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (620, 250), "white")
    _draw_histogram(ImageDraw.Draw(img), (0, 0, 620, 250), reference, prob, threshold, endpoint)
    return _png(img)


# --------------------------------------------------------------------------- report
def report_png(*, pseudonym: str, result, card, reference: np.ndarray, percentile_value: float,
               warnings: list[str], clinical: dict[str, Any], notice: str, created: str) -> bytes:
    """The one-page report (A4 portrait at 100 dpi): risk, reference histogram, CAM slices, model card."""
    from PIL import Image, ImageDraw

    W, H, M = 827, 1169, 48
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    y = M

    def para(text: str, size: int = 13, *, bold: bool = False, fill=INK, width: int = 108, gap: int = 4) -> None:
        nonlocal y
        for line in textwrap.wrap(text, width) or [""]:
            d.text((M, y), line, fill=fill, font=_font(size, bold))
            y += size + gap

    para("npcai — one-patient model output", 22, bold=True)
    para(f"Patient pseudonym {pseudonym} · generated {created} · model {card.name}", 12, fill=MUTED)
    y += 4
    d.rectangle((M - 8, y - 4, W - M + 8, y + 22), fill=(253, 236, 234), outline=(241, 176, 168))
    para(notice + " It must not guide diagnosis or treatment.", 14, bold=True, fill=WARN)
    y += 8
    thr = (card.threshold or {}).get("value")
    side = ""
    if thr is not None and np.isfinite(thr):
        side = f", {'above' if result.probability > thr else 'at or below'} the validation threshold {thr:.2f}"
    para(f"Risk: {result.probability:.2f}", 20, bold=True)
    para(f"Model probability of {card.endpoint} label 1 (high risk){side}. Higher than {percentile_value:.0f}% of "
         f"the {len(reference)} patients the model was trained and validated on. No 95% interval: this model gives "
         "none for one patient.")
    para("Clinical values entered: " + (", ".join(f"{k} {v}" for k, v in clinical.items()) or "none"), 12,
         fill=MUTED)
    for w in warnings:
        para(f"Warning: {w}", 12, fill=WARN)
    y += 6
    _draw_histogram(d, (M, y, W - M, y + 190), reference, result.probability, thr, card.endpoint)
    y += 204
    para("Where the model looked: Grad-CAM on the largest tumour slices (white outline: tumour; red: strongest "
         "evidence for high risk). Shares: fraction of CAM energy in the tumour and the rings around it.", 12)
    y += 4
    n = max(len(result.slices), 1)
    side = min(170, (W - 2 * M - (n - 1) * 12) // n)
    for k, s in enumerate(result.slices):
        x = M + k * (side + 12)
        img.paste(Image.fromarray(overlay_rgb(s, side)), (x, y))
        sh = s.shares
        d.text((x, y + side + 4), f"z{s.slice_index} · slice p {s.prob:.2f}", fill=INK, font=_font(11))
        shares = (f"tumour {_pc(sh.get('tumour'))} · 0-5px {_pc(sh.get('band_0_5px'))}"
                  if np.isfinite(sh.get("tumour", np.nan)) else "no positive Grad-CAM")
        d.text((x, y + side + 18), shares, fill=MUTED, font=_font(11))
    y += side + 42
    auc = card.test_auc
    auc_text = (f"{auc['auc']:.2f} (95% CI {auc['low']:.2f}-{auc['high']:.2f}; {auc['n_pos']} + {auc['n_neg']} test "
                "patients)") if auc and auc.get("auc") is not None else "not available"
    c = card.test_c_index or {}
    c_text = (f"{c['c_index']:.2f} (95% CI {c['low']:.2f}-{c['high']:.2f})" if c.get("c_index") is not None
              else f"not available ({c.get('unavailable', 'no survival data')})")
    para("Model card", 15, bold=True)
    for line in [
        f"Model: {card.backbone} ({card.unit} unit) on ROI {card.roi.get('variant')} "
        f"({'/'.join(card.roi.get('sequences') or [])}, {card.roi.get('size')} px); endpoint {card.endpoint}: "
        f"{card.endpoint_description}",
        f"Patients: {card.patients['train']} training, {card.patients['val']} validation, {card.patients['test']} "
        f"test; trained {card.trained}; selection: {card.selection}",
        f"Test AUC (internal): {auc_text}; test C-index: {c_text}; external validation: {card.external}",
        f"Intended use: {card.intended_use}",
    ] + [f"Limit: {lim}" for lim in card.limits]:
        para(line, 11, width=128, gap=3)
        y += 2
    return _png(img)


def _pc(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"
