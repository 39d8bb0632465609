"""Study figures: ROC curves, AUC against ROI expansion (000 Fig. 4), grouped AUC bars,
confusion matrices. Each function takes data and returns a matplotlib Figure; :func:`save_png`
writes it atomically. Every figure has a title, labelled axes with units and 95% CIs.

Examples:
    >>> import numpy as np
    >>> fig = roc_figure([dict(label="model", y_true=np.array([0, 1, 0, 1]),
    ...                        y_score=np.array([.1, .8, .3, .6]), auc=1.0, low=1.0, high=1.0)],
    ...                  "ROC, test patients")
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from npcai.fsutil import save_figure

__all__ = ["roc_figure", "expansion_figure", "grouped_auc_figure", "confusion_figure", "save_png"]

_COLOURS = plt.get_cmap("tab10").colors


def save_png(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG through a temporary file and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=dpi, bbox_inches="tight")
    return path


def roc_figure(curves: list[dict], title: str):
    """ROC curves of several models on the same test patients.

    Args:
        curves: dicts with ``label``, ``y_true``, ``y_score`` (patient level) and ``auc``,
            ``low``, ``high`` (DeLong 95% CI) for the legend.
        title: figure title (say which patients and endpoint).
    """
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="Chance (AUC 0.5)")
    for i, c in enumerate(curves):
        y_true, y_score = np.asarray(c["y_true"]), np.asarray(c["y_score"])
        if len(np.unique(y_true)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y_true, y_score)
        ci = f" ({c['low']:.2f}–{c['high']:.2f})" if np.isfinite(c.get("low", np.nan)) else ""
        ax.plot(fpr, tpr, lw=1.8, color=_COLOURS[i % 10], ls=c.get("ls", "-"),
                label=f"{c['label']}: {c['auc']:.3f}{ci}")
    ax.set_xlabel("1 − specificity (false-positive rate)")
    ax.set_ylabel("Sensitivity (true-positive rate)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7, title="AUC (95% CI)", title_fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def expansion_figure(results: pd.DataFrame, *, unit: str = "px", baseline: pd.DataFrame | None = None,
                     oracle_auc: float | None = None, title: str = "",
                     ylabel: str = "Patient-level test AUC"):
    """Test AUC against how far the tumour mask was expanded (study 000, Fig. 4).

    Args:
        results: rows of training runs with ``expansion`` (0 = tumour only), ``backbone``,
            ``auc``, ``auc_low``, ``auc_high``.
        unit: the expansion's unit for the x-axis label.
        baseline: runs without an expansion (the whole slice), drawn as a horizontal band.
        oracle_auc: the best achievable AUC on these test patients (phantom only).
        ylabel: the y-axis label (e.g. the pooled out-of-fold AUC of a cross-validated study).
    """
    runs = results.dropna(subset=["expansion"]).sort_values("expansion")
    xs = sorted(runs["expansion"].unique())
    pos = {x: i for i, x in enumerate(xs)}
    backbones = list(dict.fromkeys(runs["backbone"]))
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    width = 0.5 / max(len(backbones), 1)
    for j, bb in enumerate(backbones):
        r = runs[runs["backbone"] == bb]
        x = np.array([pos[v] for v in r["expansion"]]) + (j - (len(backbones) - 1) / 2) * width
        err = np.vstack([r["auc"] - r["auc_low"], r["auc_high"] - r["auc"]])
        ax.errorbar(x, r["auc"], yerr=np.nan_to_num(err), fmt="o", ms=4, capsize=2, lw=1,
                    color=_COLOURS[j % 10], alpha=0.75, label=f"{bb} (95% CI)")
    mean = runs.groupby("expansion")["auc"].agg(["mean", "std"]).reindex(xs)
    ax.plot(range(len(xs)), mean["mean"], "-", color="black", lw=2, label="aAUC (mean over backbones)")
    if len(backbones) > 1:
        ax.fill_between(range(len(xs)), mean["mean"] - mean["std"], mean["mean"] + mean["std"],
                        color="black", alpha=0.1, label="aAUC ± SD")
    if baseline is not None and len(baseline):
        b = baseline["auc"].mean()
        ax.axhline(b, color="tab:red", ls="--", lw=1.2, label=f"whole slice (aAUC {b:.3f})")
    if oracle_auc is not None and np.isfinite(oracle_auc):
        ax.axhline(oracle_auc, color="tab:green", ls=":", lw=1.5, label=f"oracle ceiling ({oracle_auc:.3f})")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    labels = ["tumour only" if x == 0 else f"+{x:g} {unit}" for x in xs]
    ax.set_xticks(range(len(xs)), labels)
    ax.set_xlabel(f"Expansion of the tumour mask ({unit})")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0.0, 1.05)
    ax.set_title(title or "AUC against expansion of the region of interest", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.grid(alpha=0.3, axis="y")
    return fig


def grouped_auc_figure(results: pd.DataFrame, *, group: str, hue: str, title: str,
                       group_label: str = "", oracle_auc: float | None = None):
    """Mean test AUC over backbones (bars, ±SD) with each backbone's AUC and 95% CI (points),
    grouped by ``group`` and coloured by ``hue`` (e.g. 003: dataset x intra/peri; 002: unit)."""
    groups = list(dict.fromkeys(results[group]))
    hues = list(dict.fromkeys(results[hue]))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.4 * len(groups) * max(len(hues), 1) / 2 + 2), 4.2))
    width = 0.8 / max(len(hues), 1)
    for j, h in enumerate(hues):
        for i, g in enumerate(groups):
            r = results[(results[group] == g) & (results[hue] == h)]
            if r.empty:
                continue
            x = i + (j - (len(hues) - 1) / 2) * width
            m, sd = r["auc"].mean(), r["auc"].std(ddof=1) if len(r) > 1 else 0.0
            ax.bar(x, m, width * 0.9, color=_COLOURS[j % 10], alpha=0.55,
                   yerr=sd if len(r) > 1 else None, capsize=3, label=str(h) if i == 0 else None)
            err = np.vstack([r["auc"] - r["auc_low"], r["auc_high"] - r["auc"]])
            ax.errorbar(np.full(len(r), x), r["auc"], yerr=np.nan_to_num(err), fmt="o", ms=3,
                        color=_COLOURS[j % 10], ecolor="black", elinewidth=0.7, capsize=2)
    if oracle_auc is not None and np.isfinite(oracle_auc):
        ax.axhline(oracle_auc, color="tab:green", ls=":", lw=1.5, label=f"oracle ceiling ({oracle_auc:.3f})")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlabel(group_label or group)
    ax.set_ylabel("Patient-level test AUC (points: backbones, 95% CI)")
    ax.set_ylim(0.0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    return fig


def confusion_figure(results: pd.DataFrame, title: str, positive: str = "high risk",
                     negative: str = "low risk"):
    """2x2 confusion matrices (counts of test patients) side by side, one per model."""
    n = len(results)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(2.6 * max(n, 1), 2.9), squeeze=False)
    for ax, (_, r) in zip(axes[0], results.iterrows()):
        m = np.array([[r["tn"], r["fp"]], [r["fn"], r["tp"]]], dtype=float)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=max(np.nanmax(m), 1))
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, "–" if np.isnan(v) else f"{int(v)}", ha="center", va="center",
                    color="white" if v > np.nanmax(m) / 2 else "black", fontsize=11)
        ax.set_xticks([0, 1], [negative, positive], fontsize=7)
        ax.set_yticks([0, 1], [negative, positive], fontsize=7)
        ax.set_xlabel("Predicted", fontsize=8)
        ax.set_ylabel("Actual", fontsize=8)
        ax.set_title(str(r["model"]), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
