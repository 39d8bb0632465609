"""Figures of CAMs: one slice, one patient's montage, one patient across runs, the share bars.

Every panel shows the ROI slice in grey, the CAM as a translucent jet map scaled to the
panel's own maximum (the colour bar says so), the tumour contour in white, the nodes contour
in magenta, on a phantom the planted signal band as dotted cyan lines and, when given, the
border of the pixels the shares count (padding and air left out) as grey dashes. Axes are in
millimetres of the ROI (``pixel_mm`` per ROI pixel), so a 5 mm band looks like 5 mm.

Examples:
    >>> panel = Panel(image, cam, labels, RoiGeometry(1.5, (0.8, 0.8)), "P0001 z=7")  # doctest: +SKIP
    >>> save_overlay("overlay.png", panel)                                           # doctest: +SKIP
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.explain.localisation import RoiGeometry, region_names

__all__ = ["Panel", "draw_panel", "save_overlay", "save_montage", "plot_localisation", "CAM_CMAP"]

CAM_CMAP = "jet"
CAM_ALPHA = 0.45
TUMOUR_COLOUR, NODES_COLOUR, BAND_COLOUR, VALID_COLOUR = "white", "magenta", "cyan", "lightgrey"


@dataclass
class Panel:
    """What one overlay panel shows.

    Attributes:
        image: ``(H, W)`` ROI slice (first channel), any intensity scale.
        cam: ``(H, W)`` non-negative CAM at the same resolution.
        labels: ``(H, W)`` label map (1 tumour, 2 nodes).
        geometry: ROI pixel size (for mm axes).
        title: panel title.
        band: optional ``(H, W)`` bool mask of the planted signal band (phantom).
        caption: optional text under the title (e.g. the shares for this slice).
        valid: optional ``(H, W)`` bool, the pixels the shares count
            (:func:`npcai.explain.localisation.informative_pixels`); outlined in grey dashes.
    """

    image: np.ndarray
    cam: np.ndarray
    labels: np.ndarray
    geometry: RoiGeometry
    title: str
    band: np.ndarray | None = None
    caption: str | None = None
    valid: np.ndarray | None = None


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _window(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def draw_panel(ax, panel: Panel):
    """Draw one overlay on a matplotlib axis; returns the CAM's image artist (for a colour bar)."""
    from matplotlib.lines import Line2D

    h, w = panel.image.shape
    mm_r, mm_c = panel.geometry.pixel_mm
    extent = (0.0, w * mm_c, h * mm_r, 0.0)
    lo, hi = _window(panel.image)
    ax.imshow(panel.image, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
    peak = float(panel.cam.max())
    shown = panel.cam / peak if peak > 0 else np.zeros_like(panel.cam)
    art = ax.imshow(shown, cmap=CAM_CMAP, vmin=0.0, vmax=1.0, alpha=CAM_ALPHA, extent=extent,
                    interpolation="bilinear")
    xs = (np.arange(w) + 0.5) * mm_c
    ys = (np.arange(h) + 0.5) * mm_r
    handles = []
    for value, colour, name, style in ((1, TUMOUR_COLOUR, "tumour", "-"), (2, NODES_COLOUR, "nodes", "-")):
        m = panel.labels == value
        if m.any() and not m.all():
            ax.contour(xs, ys, m.astype(float), levels=[0.5], colors=colour, linewidths=1.2, linestyles=style)
            handles.append(Line2D([], [], color=colour, lw=1.2, ls=style, label=name))
    if panel.band is not None and panel.band.any():
        ax.contour(xs, ys, panel.band.astype(float), levels=[0.5], colors=BAND_COLOUR, linewidths=0.9,
                   linestyles=":")
        handles.append(Line2D([], [], color=BAND_COLOUR, lw=0.9, ls=":", label="signal band"))
    if panel.valid is not None and panel.valid.any() and not panel.valid.all():
        ax.contour(xs, ys, panel.valid.astype(float), levels=[0.5], colors=VALID_COLOUR, linewidths=0.8,
                   linestyles="--")
        handles.append(Line2D([], [], color=VALID_COLOUR, lw=0.8, ls="--", label="pixels counted"))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.6)
    title = panel.title if panel.caption is None else f"{panel.title}\n{panel.caption}"
    ax.set_title(title, fontsize=6.5)
    ax.set_xlabel("x (mm)", fontsize=7)
    ax.set_ylabel("y (mm)", fontsize=7)
    ax.tick_params(labelsize=6)
    return art


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def _colourbar(fig, art, axes) -> None:
    cb = fig.colorbar(art, ax=axes, fraction=0.046, pad=0.04)
    cb.set_label("CAM (fraction of panel maximum)", fontsize=7)
    cb.ax.tick_params(labelsize=6)


def save_overlay(path: str | Path, panel: Panel) -> Path:
    """One slice's overlay with its colour bar, written atomically as PNG."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    try:
        art = draw_panel(ax, panel)
        _colourbar(fig, art, ax)
        return _save(fig, path)
    finally:
        plt.close(fig)


def save_montage(path: str | Path, panels: list[Panel], title: str, *, ncols: int | None = None) -> Path:
    """Several panels in a grid (a patient's slices, or one patient across runs) with one
    shared colour bar and an overall title."""
    plt = _mpl()
    n = len(panels)
    if n == 0:
        raise ValueError("save_montage needs at least one panel")
    ncols = ncols or min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols + 0.8, 3.9 * nrows + 0.6), squeeze=False)
    height = 3.9 * nrows + 0.6
    fig.subplots_adjust(top=1 - 0.95 / height, hspace=0.6)   # room for multi-line panel titles
    try:
        art = None
        for ax, panel in zip(axes.flat, panels):
            art = draw_panel(ax, panel)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        _colourbar(fig, art, axes.ravel().tolist())
        fig.suptitle(title, fontsize=9, y=1 - 0.05 / height)
        return _save(fig, path)
    finally:
        plt.close(fig)


def _pretty(region: str) -> str:
    if region in ("tumour", "nodes"):
        return region
    if region == "far":
        return "far\n>20 mm"
    label = region.removeprefix("band_").replace("gt", ">").replace("_", "-")
    for unit in ("px", "mm"):
        label = label.replace(unit, f" {unit}")
    return label


def plot_localisation(summary: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """Grouped bars: mean CAM energy share per region (95% CI over patients) for each run,
    with the uniform-attention baseline as black ticks; one panel per scale (px, mm) and a
    third for the phantom's signal band when present.

    ``summary`` is the long table of :func:`npcai.explain.explain.summarise_localisation`.
    """
    plt = _mpl()
    scales = [s for s in ("px", "mm", "signal") if (summary["scale"] == s).any()]
    runs = list(dict.fromkeys(summary["run"]))
    widths = {"px": 7, "mm": 7, "signal": 1.6}
    fig, axes = plt.subplots(1, len(scales), figsize=(sum(widths[s] for s in scales) * 0.9 + 1.5, 4.2),
                             gridspec_kw={"width_ratios": [widths[s] for s in scales]}, squeeze=False)
    try:
        colours = plt.get_cmap("tab10")
        for ax, scale in zip(axes[0], scales):
            part = summary[summary["scale"] == scale]
            regions = region_names(scale) if scale != "signal" else ["signal_band"]
            regions = [r for r in regions if r in set(part["region"])]
            x = np.arange(len(regions))
            width = 0.8 / max(len(runs), 1)
            for k, run in enumerate(runs):
                rows = part[part["run"] == run].set_index("region").reindex(regions)
                pos = x - 0.4 + width * (k + 0.5)
                mean = rows["share_mean"].to_numpy(dtype=float)
                err = np.vstack([mean - rows["share_low"].to_numpy(dtype=float),
                                 rows["share_high"].to_numpy(dtype=float) - mean])
                err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
                label = run if "variant" not in rows or pd.isna(rows["variant"].iloc[0]) else \
                    f"{run} ({rows['variant'].iloc[0]})"
                ax.bar(pos, mean, width * 0.95, yerr=err, capsize=2, color=colours(k % 10), label=label,
                       error_kw={"lw": 0.8})
                ax.hlines(rows["uniform_mean"].to_numpy(dtype=float), pos - width * 0.45, pos + width * 0.45,
                          colors="black", lw=1.6, label="uniform attention" if k == 0 else None)
            ax.set_xticks(x, [_pretty(r) if scale != "signal" else "planted\nsignal band" for r in regions],
                          fontsize=7)
            ax.set_ylabel("share of positive CAM energy", fontsize=8)
            if scale == "signal":   # small shares: zoom in, the baseline ticks keep the comparison honest
                top = np.nanmax(part[["share_high", "share_mean", "uniform_mean"]].to_numpy(dtype=float))
                ax.set_ylim(0, min(1.0, max(0.1, 1.3 * top if np.isfinite(top) else 1.0)))
            else:
                ax.set_ylim(0, 1)
            ax.set_title({"px": "distance from lesion in native pixels",
                          "mm": "distance from lesion in millimetres",
                          "signal": "phantom signal"}[scale], fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        axes[0][0].legend(fontsize=6, loc="upper right")
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)
