"""Figures of the evaluation: ROC curves with a CI band, and the confusion matrix.

The ROC band is pROC's ``ci.se``: at fixed specificities, the 2.5-97.5 percentiles of the
sensitivity over stratified patient bootstrap resamples. Each legend entry carries the AUC
with its DeLong 95% CI.

Examples:
    >>> plot_roc("roc.png", {"model": ([0, 1, 0, 1], [.2, .8, .4, .6])})   # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from npcai.fsutil import save_figure
from npcai.stats.auc import auc_ci, roc_curve
from npcai.stats.binary import ConfusionMatrix

__all__ = ["plot_roc", "plot_confusion", "sensitivity_band"]


def _save(fig, out: str | os.PathLike) -> Path:
    """Save a figure atomically (temporary file + rename) and close it."""
    return save_figure(fig, out, dpi=150, bbox_inches="tight")


def _sens_at_spec(y: np.ndarray, s: np.ndarray, spec_grid: np.ndarray) -> np.ndarray:
    roc = roc_curve(y, s)
    # ROC is monotone: specificity increases with the threshold, sensitivity decreases.
    sp, se = roc.specificity, roc.sensitivity
    # the best sensitivity achievable at specificity >= x: the first threshold reaching x
    k = np.searchsorted(sp, spec_grid - 1e-12, side="left")
    return se[np.minimum(k, se.size - 1)]


def sensitivity_band(y_true, y_score, spec_grid: np.ndarray | None = None, n_boot: int = 500,
                     seed: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(specificity grid, low, high)``: bootstrap CI of the sensitivity at each specificity."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(y_score, dtype=float)
    grid = np.linspace(0, 1, 51) if spec_grid is None else np.asarray(spec_grid)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, grid.size))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        draws[b] = _sens_at_spec(y[idx], s[idx], grid)
    a = (1 - level) / 2
    return grid, np.quantile(draws, a, axis=0), np.quantile(draws, 1 - a, axis=0)


def plot_roc(out: str | os.PathLike, curves: Mapping[str, tuple[Sequence, Sequence]], *,
             title: str = "ROC curve", ci_band: bool = True, n_boot: int = 500,
             seed: int = 0) -> Path:
    """ROC curves (one per entry ``name -> (y_true, y_score)``) with AUC (95% CI) in the legend.

    ``ci_band`` shades the bootstrap 95% CI of the sensitivity (advisable for one or two curves).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, (y, s)) in enumerate(curves.items()):
        colour = colours[k % len(colours)]
        roc = roc_curve(y, s)
        a = auc_ci(y, s)
        ax.plot(roc.fpr[::-1], roc.tpr[::-1], color=colour, lw=1.8,
                label=f"{name}: AUC {a.auc:.3f} (95% CI {a.low:.3f}-{a.high:.3f})")
        if ci_band:
            grid, lo, hi = sensitivity_band(y, s, n_boot=n_boot, seed=seed)
            ax.fill_between(1 - grid, lo, hi, color=colour, alpha=0.18, step=None, lw=0,
                            label=f"{name}: 95% CI of sensitivity (bootstrap)")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, out)


def plot_confusion(out: str | os.PathLike, cm: ConfusionMatrix, *,
                   class_names: tuple[str, str] = ("label 0", "label 1"),
                   title: str = "Confusion matrix") -> Path:
    """Confusion matrix with counts and row percentages (rows: truth, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = cm.as_array()
    row = arr.sum(axis=1, keepdims=True)
    share = np.divide(arr, row, out=np.zeros_like(arr, dtype=float), where=row > 0)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{arr[i, j]}\n({100 * share[i, j]:.0f}%)", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=12)
    ax.set_xticks([0, 1], [f"{c}" for c in class_names])
    ax.set_yticks([0, 1], [f"{c}" for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return _save(fig, out)
