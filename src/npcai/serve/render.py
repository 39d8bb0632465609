"""The figures of the results view and the one-page report (PNG bytes, never files).

Each function builds its own :class:`matplotlib.figure.Figure` (no pyplot state), so
worker threads can render at the same time. No function is given an identifier: the
report names the patient by the request's pseudonym only.
"""
from __future__ import annotations

import io
import textwrap
from typing import Any

import numpy as np

__all__ = ["cam_png", "reference_png", "report_png", "percentile", "SHARE_LABELS"]

SHARE_LABELS = {"tumour": "tumour", "nodes": "nodes", "band_0_5px": "0-5 px ring", "band_5_10px": "5-10 px ring",
                "band_10_20px": "10-20 px ring", "band_20_40px": "20-40 px ring", "band_gt40px": "> 40 px"}


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def _png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def percentile(reference: np.ndarray, value: float) -> float:
    """Percent of the reference patients with a lower probability (ties count half)."""
    ref = np.asarray(reference, dtype=float)
    if ref.size == 0:
        return float("nan")
    return float(100.0 * ((ref < value).sum() + 0.5 * (ref == value).sum()) / ref.size)


def _draw_reference(ax, reference: np.ndarray, prob: float, threshold: float | None, endpoint: str) -> None:
    bins = np.linspace(0, 1, 21)
    ax.hist(reference, bins=bins, color="#9bb4cc", edgecolor="white", label=f"training/validation patients "
                                                                           f"(n={len(reference)})")
    ax.axvline(prob, color="#c0392b", lw=2.2, label=f"this patient ({prob:.2f})")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="#555", lw=1, ls="--", label=f"threshold from validation ({threshold:.2f})")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"model probability of {endpoint} label 1 (high risk)", fontsize=8)
    ax.set_ylabel("patients", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.8)


def reference_png(reference: np.ndarray, prob: float, threshold: float | None, endpoint: str) -> bytes:
    """Histogram of the training/validation patients' probabilities with this patient marked."""
    fig = _figure(5.2, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    _draw_reference(ax, reference, prob, threshold, endpoint)
    ax.set_title("Where this patient lies among the patients the model was built on", fontsize=9)
    return _png(fig)


def _caption(shares: dict[str, float]) -> str:
    parts = [f"{SHARE_LABELS.get(k, k)} {v:.0%}" for k, v in shares.items() if np.isfinite(v)]
    return "CAM energy: " + " · ".join(parts[:4]) + ("\n" + " · ".join(parts[4:]) if len(parts) > 4 else "")


def _panel(s) -> Any:
    from npcai.explain.overlays import Panel

    return Panel(image=s.image, cam=s.cam, labels=s.labels, geometry=s.geometry,
                 title=f"slice z{s.slice_index} · slice probability {s.prob:.2f}", caption=_caption(s.shares))


def cam_png(s) -> bytes:
    """One slice's Grad-CAM overlay (tumour contour in white) with its localisation shares."""
    from npcai.explain.overlays import draw_panel

    fig = _figure(4.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    art = draw_panel(ax, _panel(s))
    cb = fig.colorbar(art, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("Grad-CAM (fraction of slice maximum)", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    return _png(fig)


def report_png(*, pseudonym: str, result, card, reference: np.ndarray, percentile_value: float, warnings: list[str],
               clinical: dict[str, Any], notice: str, created: str) -> bytes:
    """The one-page report (A4 portrait): risk, reference histogram, CAM slices, model card."""
    from npcai.explain.overlays import draw_panel

    fig = _figure(8.27, 11.69)
    fig.text(0.06, 0.965, "npcai — one-patient model output", fontsize=15, weight="bold")
    fig.text(0.06, 0.945, f"Patient pseudonym {pseudonym} · generated {created} · model {card.name}", fontsize=8.5)
    fig.text(0.06, 0.922, notice, fontsize=10, weight="bold", color="#b03a2e")
    thr = (card.threshold or {}).get("value")
    side = ""
    if thr is not None and np.isfinite(thr):
        side = f" ({'above' if result.probability > thr else 'at or below'} the validation threshold {thr:.2f})"
    risk = f"Probability of {card.endpoint} label 1 (high risk): {result.probability:.2f}{side}."
    lines = [risk,
             f"Higher than {percentile_value:.0f}% of the model's {len(reference)} training and validation patients. "
             "No 95% interval: this model gives none for one patient.",
             "Clinical values entered: " + (", ".join(f"{k} {v}" for k, v in clinical.items()) or "none")]
    lines += [f"Warning: {w}" for w in warnings]
    y = 0.895
    for line in lines:
        for wrapped in textwrap.wrap(line, 120):
            fig.text(0.06, y, wrapped, fontsize=8.5)
            y -= 0.016
    ax = fig.add_axes((0.1, y - 0.17, 0.8, 0.15))
    _draw_reference(ax, reference, result.probability, thr, card.endpoint)
    top = y - 0.215
    n = len(result.slices)
    width = 0.84 / max(n, 1)
    for k, s in enumerate(result.slices):
        axk = fig.add_axes((0.06 + k * width + 0.01, top - 0.24, width - 0.03, 0.2))
        panel = _panel(s)
        panel.caption = None
        draw_panel(axk, panel)
        axk.set_title(f"z{s.slice_index} · p={s.prob:.2f}\ntumour {s.shares['tumour']:.0%} · "
                      f"0-5px {s.shares['band_0_5px']:.0%}", fontsize=7)
    fig.text(0.06, top - 0.265, "Grad-CAM on the largest tumour slices (white: tumour contour; red: strongest "
             "evidence for high risk). Shares: fraction of CAM energy in the tumour and rings around it.", fontsize=7.5)
    y = top - 0.3
    auc = card.test_auc
    auc_text = (f"{auc['auc']:.2f} (95% CI {auc['low']:.2f}-{auc['high']:.2f}; {auc['n_pos']}+{auc['n_neg']} test "
                "patients)") if auc and auc.get("auc") is not None else "not available"
    c = card.test_c_index or {}
    c_text = (f"{c['c_index']:.2f} (95% CI {c['low']:.2f}-{c['high']:.2f})" if c.get("c_index") is not None
              else f"not available ({c.get('unavailable', 'no survival data')})")
    card_lines = [
        "Model card",
        f"Model: {card.backbone} ({card.unit} unit) on ROI {card.roi.get('variant')} "
        f"({'/'.join(card.roi.get('sequences') or [])}, {card.roi.get('size')} px); endpoint {card.endpoint}: "
        f"{card.endpoint_description}",
        f"Patients: {card.patients['train']} training, {card.patients['val']} validation, "
        f"{card.patients['test']} test; trained {card.trained}; selection: {card.selection}",
        f"Test AUC (internal): {auc_text}; test C-index: {c_text}; external validation: {card.external}",
        f"Intended use: {card.intended_use}",
    ] + [f"Limit: {lim}" for lim in card.limits]
    for i, line in enumerate(card_lines):
        for wrapped in textwrap.wrap(line, 125):
            fig.text(0.06, y, wrapped, fontsize=10 if i == 0 else 7.5, weight="bold" if i == 0 else "normal")
            y -= 0.0145 if i else 0.02
    return _png(fig, dpi=100)
