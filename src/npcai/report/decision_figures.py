"""Figures of the decision study (seed 004): nomogram (Fig. 2a), calibration in three cohorts
(Fig. 2b/c), C-index bars (Fig. 3), Kaplan–Meier grids (Fig. 4, 5, 6, D4, D5), forest plots
(Fig. D3, D6) and, on the phantom, the predicted vs true DFS difference.

Every function writes one PNG atomically and returns its path.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.fsutil import save_figure

__all__ = ["nomogram_figure", "cindex_bars", "km_grid", "calibration_cohorts", "forest", "difference_vs_truth"]

_COHORT_COLOURS = {"Training": "#1f77b4", "Internal test": "#d62728", "External test": "#2ca02c",
                   "Validation": "#9467bd"}
_MODEL_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def nomogram_figure(out: str | os.PathLike, nom) -> Path:
    """The CPTDN nomogram with one Predictive-score axis per treatment (Fig. 2a)."""
    from npcai.survival.figures import plot_nomogram

    labels = {"prognostic_score": "Prognostic-score (SD)", "predictive_score": "Predictive-score (SD)",
              "treatment": "Treatment", "ebv_dna_high": "pre-EBV DNA >= 4000", "tumour_volume": "Tumour volume (mL)",
              "age": "Age (years)", "t_stage": "T stage", "n_stage": "N stage", "sex": "Sex"}
    return plot_nomogram(out, nom, survival_label="DFS", labels=labels,
                         title="CPTDN: DFS under each treatment (read the Predictive-score axis of the treatment)")


def cindex_bars(out: str | os.PathLike, table: pd.DataFrame) -> Path:
    """C-index (95% CI) of every model per cohort and treatment group (Fig. 3)."""
    plt = _plt()
    cohorts = list(dict.fromkeys(table["cohort"]))
    groups = list(dict.fromkeys(table["group"]))
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(cohorts), figsize=(4.6 * len(cohorts), 4.6), sharey=True, squeeze=False)
    width = 0.8 / len(models)
    for ax, c in zip(axes[0], cohorts):
        d = table[table["cohort"] == c]
        for j, m in enumerate(models):
            r = d[d["model"] == m].set_index("group").reindex(groups)
            x = np.arange(len(groups)) + (j - (len(models) - 1) / 2) * width
            y = r["c_index"].to_numpy(float)
            err = np.vstack([y - r["low"].to_numpy(float), r["high"].to_numpy(float) - y])
            ax.bar(x, np.nan_to_num(y), width, color=_MODEL_COLOURS[j % len(_MODEL_COLOURS)], label=m,
                   alpha=0.85)
            ok = np.isfinite(err).all(axis=0)
            ax.errorbar(x[ok], y[ok], yerr=err[:, ok], fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.axhline(0.5, color="0.5", ls="--", lw=0.8)
        ax.set_xticks(np.arange(len(groups)))
        n = d.groupby("group")["n"].first().reindex(groups)
        ax.set_xticklabels([f"{g}\n(n = {int(k)})" for g, k in zip(groups, n)])
        ax.set_title(c)
        ax.set_ylim(0.0, 1.0)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("Harrell's C-index (95% CI)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(models), fontsize=9, frameon=False)
    fig.suptitle("Prognostic performance by treatment group (seed 004, Fig. 3); dashed: 0.5 (chance)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(fig, out, dpi=130)


def _km_panel(ax, cmp, title: str, note: str, survival_label: str) -> None:
    from npcai.survival.figures import format_p

    colours = {"CCRT": "#1f77b4", "IC+CCRT": "#d62728", "low": "#2ca02c", "high": "#d62728"}
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.25)
    if cmp is None:
        import textwrap

        text = "not estimable" + (":\n" + textwrap.fill(textwrap.shorten(note, 110), 42) if note else "")
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7.5)
        ax.set_xticks([])
        return
    for i, (name, km) in enumerate(cmp.curves.items()):
        tab = km.table_
        x = np.concatenate([[0.0], tab["time"].to_numpy()])
        y = np.concatenate([[1.0], tab["survival"].to_numpy()])
        c = colours.get(str(name), f"C{i}")
        ax.step(x, y, where="post", color=c, lw=1.5, label=f"{name} (n = {km.n_}, {km.n_events_} events)")
        cens = tab[tab["n_censor"] > 0]
        ax.plot(cens["time"], cens["survival"], ls="none", marker="|", ms=5, color=c)
    hr = cmp.hazard_ratios.iloc[0]
    ax.text(0.97, 0.04, f"HR {hr.group} vs {hr.reference}: {hr.hr:.2f} ({hr.hr_low:.2f}-{hr.hr_high:.2f})\n"
                        f"log-rank {format_p(cmp.logrank.p_value)}", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=7.5, bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)


def km_grid(out: str | os.PathLike, panels: list[tuple[str, object, str]], *, ncols: int = 3, title: str = "",
            survival_label: str = "DFS probability", by_cohort: bool = False) -> Path:
    """Kaplan–Meier panels (title, GroupComparison or None, note) in a grid (Fig. 4, 5, 6)."""
    plt = _plt()
    n = max(1, len(panels))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.5 * nrows + 0.6), squeeze=False)
    for ax, (t, cmp, note) in zip(axes.ravel(), panels):
        _km_panel(ax, cmp, t, note, survival_label)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("Time (months)")
    for row in axes:
        row[0].set_ylabel(survival_label)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, dpi=120)


def calibration_cohorts(out: str | os.PathLike, results: dict, u: float) -> Path:
    """Predicted vs Kaplan–Meier observed S(u) per group in each cohort, one axes (Fig. 2b/c)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="Ideal")
    lo = 1.0
    for c, cal in results.items():
        g = cal.groups[cal.groups.km.notna()]
        col = _COHORT_COLOURS.get(c, "black")
        yerr = np.vstack([(g.km - g.km_low), (g.km_high - g.km)])
        ax.errorbar(g.predicted, g.km, yerr=yerr, fmt="o-", color=col, capsize=3, lw=1.2,
                    label=f"{c} (n = {len(cal.predicted)}; ICI {cal.ici:.3f})")
        if cal.n_boot:
            ax.plot(g.predicted, g.km_corrected, "x", color=col, ms=7, mew=1.5)
        lo = min(lo, float(np.nanmin([g.predicted.min(), g.km_low.min()])) if len(g) else lo)
    lim = max(0.0, min(0.9, np.floor(lo * 10) / 10))
    ax.set_xlim(lim, 1)
    ax.set_ylim(lim, 1)
    ax.set_xlabel(f"CPTDN-predicted {u:g}-month DFS")
    ax.set_ylabel(f"Observed {u:g}-month DFS (Kaplan-Meier, 95% CI)")
    ax.set_title(f"Calibration at {u:g} months (x: bootstrap-corrected, training)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.25)
    return save_figure(fig, out, dpi=130, bbox_inches="tight")


def forest(out: str | os.PathLike, table: pd.DataFrame, title: str) -> Path:
    """Subgroup hazard ratios (Fig. D3, D6)."""
    from npcai.survival.figures import plot_forest

    return plot_forest(out, table, title=title)


def difference_vs_truth(out: str | os.PathLike, patients: pd.DataFrame) -> Path:
    """Phantom only: the CPTDN's predicted 5-year DFS difference against the true one, per cohort."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.8, 5.2))
    true = 100 * (patients["true_dfs5_ic_ccrt"] - patients["true_dfs5_ccrt"])
    for c, g in patients.groupby("cohort", sort=False):
        t = true.loc[g.index]
        ax.scatter(t, g["difference_pp"], s=12, alpha=0.7, color=_COHORT_COLOURS.get(c, "black"),
                   label=f"{c} (n = {len(g)})")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    lim = [float(np.nanmin([true.min(), patients["difference_pp"].min()])),
           float(np.nanmax([true.max(), patients["difference_pp"].max()]))]
    ax.plot(lim, lim, ls=":", color="0.4", lw=1, label="predicted = true")
    ok = np.isfinite(true) & np.isfinite(patients["difference_pp"])
    r = float(np.corrcoef(true[ok], patients["difference_pp"][ok])[0, 1]) if ok.sum() > 2 else float("nan")
    ax.set_xlabel("True 5-year DFS difference, IC+CCRT - CCRT (percentage points)")
    ax.set_ylabel("CPTDN-predicted difference (percentage points)")
    ax.set_title(f"Predicted vs true treatment benefit (phantom; Pearson r = {r:.2f})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.25)
    return save_figure(fig, out, dpi=130, bbox_inches="tight")
