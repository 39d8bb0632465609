"""Figures of npcai.survival, in the style of seed 004 (Fig. 2 nomogram and calibration, Fig. 4/5 KM).

Every function writes one PNG atomically (:func:`npcai.fsutil.save_figure`) and returns its path:

* :func:`plot_km` -- Kaplan–Meier curves with CI bands, censor ticks, a legend with n and
  events, the log-rank p and HR (95% CI) printed on the plot, and the number at risk under
  the time axis;
* :func:`plot_calibration` -- predicted vs observed S(u) per group with KM CIs, the
  optimism-corrected points, the spline-smoothed curve and the ideal line;
* :func:`plot_nomogram` -- the rms-style nomogram (points, one axis per predictor, total
  points, linear predictor, survival at each time);
* :func:`plot_forest` -- subgroup hazard ratios on a log axis with the interaction p.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.fsutil import save_figure

__all__ = ["plot_km", "plot_calibration", "plot_nomogram", "plot_forest", "format_p"]

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def format_p(p: float) -> str:
    """``p < 0.001`` or ``p = 0.034`` (three significant digits)."""
    if not np.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_km(out: str | os.PathLike, comparison, *, time_label: str = "Time (months)",
            survival_label: str = "Survival probability", title: str = "", by_label: str = "",
            break_every: float | None = None, ci: bool = True) -> Path:
    """Kaplan–Meier figure of a :class:`~npcai.survival.groups.GroupComparison`."""
    plt = _plt()
    curves = comparison.curves
    t_max = max(float(km.table_["time"].max()) for km in curves.values())
    if break_every is None:
        break_every = next(b for b in (1, 2, 3, 6, 12, 24, 36, 60, 120, 240, 1e9) if t_max / b <= 8)
    breaks = np.arange(0, t_max + 1e-9, break_every)
    n_groups = len(curves)
    fig = plt.figure(figsize=(7.5, 5.6 + 0.28 * n_groups))
    table_h = 0.035 * n_groups
    ax = fig.add_axes([0.14, 0.06 + table_h + 0.14, 0.82, 0.76 - table_h])
    for i, (name, km) in enumerate(curves.items()):
        c = _COLOURS[i % len(_COLOURS)]
        tab = km.table_
        x = np.concatenate([[0.0], tab["time"].to_numpy()])
        y = np.concatenate([[1.0], tab["survival"].to_numpy()])
        label = f"{by_label + ' = ' if by_label else ''}{name} (n = {km.n_}, events = {km.n_events_})"
        ax.step(x, y, where="post", color=c, lw=1.8, label=label)
        if ci:
            lo = np.concatenate([[1.0], tab["low"].to_numpy()])
            hi = np.concatenate([[1.0], tab["high"].to_numpy()])
            ok = np.isfinite(lo) & np.isfinite(hi)
            ax.fill_between(x[ok], lo[ok], hi[ok], step="post", color=c, alpha=0.15, lw=0)
        cens = tab[tab["n_censor"] > 0]
        ax.plot(cens["time"], cens["survival"], ls="none", marker="|", ms=8, mew=1.2, color=c)
    ax.set_xlim(0, breaks[-1] if breaks[-1] >= t_max else t_max)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(breaks)
    ax.set_xlabel(time_label)
    ax.set_ylabel(survival_label)
    ax.grid(alpha=0.25)
    lr = comparison.logrank
    lines = [f"Log-rank {format_p(lr.p_value)}" + (" (stratified)" if lr.stratified else "")]
    for _, r in comparison.hazard_ratios.iterrows():
        lines.append(f"HR {r.group} vs {r.reference}: {r.hr:.2f} (95% CI {r.hr_low:.2f}-{r.hr_high:.2f})")
    ax.text(0.98, 0.97, "\n".join(lines), transform=ax.transAxes, ha="right", va="top", fontsize=9,
            bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    ax.legend(loc="lower left", fontsize=9, frameon=True, framealpha=0.9)
    if title:
        ax.set_title(title)
    # number at risk, aligned with the time axis
    tx = fig.add_axes([0.14, 0.06, 0.82, table_h], sharex=ax)
    tx.set_ylim(-0.5, n_groups - 0.5)
    tx.axis("off")
    tx.text(-0.05, n_groups - 0.5 + 0.3, "Number at risk", transform=tx.get_yaxis_transform(), fontsize=9,
            weight="bold", va="bottom", ha="left")
    for i, (name, km) in enumerate(curves.items()):
        yy = n_groups - 1 - i
        c = _COLOURS[i % len(_COLOURS)]
        for b, n in zip(breaks, km.n_at_risk(breaks)):
            tx.text(b, yy, str(int(n)), ha="center", va="center", fontsize=9, color=c)
        tx.text(-0.05, yy, str(name), transform=tx.get_yaxis_transform(), ha="right", va="center", fontsize=9,
                color=c)
    return save_figure(fig, out, dpi=150)


def plot_calibration(out: str | os.PathLike, cal, *, survival_label: str = "survival",
                     time_unit: str = "months", title: str = "") -> Path:
    """Calibration figure of a :class:`~npcai.survival.calibration.CalibrationResult`."""
    plt = _plt()
    g = cal.groups
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="Ideal")
    order = np.argsort(cal.predicted.to_numpy())
    ax.plot(cal.predicted.to_numpy()[order], cal.smoothed_observed.to_numpy()[order], color="#2ca02c", lw=1.2,
            label=f"Smoothed (ICI {cal.ici:.3f}, E90 {cal.e90:.3f})")
    ok = g.km.notna()
    yerr = np.vstack([(g.km - g.km_low)[ok], (g.km_high - g.km)[ok]])
    ax.errorbar(g.predicted[ok], g.km[ok], yerr=yerr, fmt="o-", color="#1f77b4", capsize=3, lw=1.2,
                label=f"Kaplan-Meier, groups of ~{cal.m} (95% CI)")
    if cal.n_boot:
        ax.plot(g.predicted[ok], g.km_corrected[ok], "x", color="#d62728", ms=8, mew=2,
                label=f"Bias-corrected (bootstrap B = {cal.n_boot})")
    lo = float(np.nanmin([g.predicted.min(), g.km_low.min(), cal.predicted.min()]))
    lim = max(0.0, min(0.9, np.floor(lo * 10) / 10))
    ax.set_xlim(lim, 1)
    ax.set_ylim(lim, 1)
    u = f"{cal.u:g}-{time_unit.rstrip('s')}"
    ax.set_xlabel(f"Predicted {u} {survival_label} (Cox model)")
    ax.set_ylabel(f"Observed {u} {survival_label} (Kaplan-Meier)")
    gof = cal.gof
    ax.text(0.02, 0.98, f"{gof['test']} test: chi2 = {gof['chisq']:.2f}, df = {gof['df']}, {format_p(gof['p_value'])}",
            transform=ax.transAxes, ha="left", va="top", fontsize=8.5)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.25)
    ax.set_title(title or f"Calibration at {cal.u:g} {time_unit} (n = {len(cal.predicted)})")
    return save_figure(fig, out, dpi=150, bbox_inches="tight")


def _fmt_tick(v) -> str:
    if isinstance(v, str):
        return v
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:g}"


def _fmt_decade(v) -> str:
    """Compact tick labels of a log-scale axis: 0, 10, 100, 1k, 10k, 100k, 1M, 10M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


_SCALE_NAMES = {"log": "log scale", "log1p": "log scale", "log2": "log scale", "log10": "log scale",
                "sqrt": "square-root scale"}


def _label_step(pos: np.ndarray, ticks: Sequence[str]) -> int:
    """Label every k-th tick so that labels (about 1.1 x-units per character) do not overlap."""
    if len(pos) < 2:
        return 1
    gap = float(np.min(np.abs(np.diff(pos)))) or 1e-9
    width = max(len(t) for t in ticks) * 1.1 + 1.0
    return max(1, int(np.ceil(width / gap)))


def plot_nomogram(out: str | os.PathLike, nom, *, survival_label: str = "survival", title: str = "",
                  labels: dict[str, str] | None = None) -> Path:
    """rms-style nomogram figure of a fitted :class:`~npcai.survival.nomogram.Nomogram`."""
    plt = _plt()
    labels = labels or {}
    rows: list[tuple[str, Sequence[float], Sequence[str]]] = []
    pts_ticks = list(range(0, 101, 10))
    rows.append(("Points", pts_ticks, [str(v) for v in pts_ticks]))
    for ax_ in nom.axes_:
        name = labels.get(ax_.variable, ax_.variable)
        label = ax_.label.replace(ax_.variable, name, 1) if ax_.condition else name
        transform = getattr(ax_, "transform", None)
        if transform:
            label += f" ({_SCALE_NAMES[transform]})"
        fmt = _fmt_decade if transform and transform != "sqrt" else _fmt_tick
        rows.append((label, ax_.points, [fmt(v) for v in ax_.values]))
    total_ticks = nom.total_axis_
    # the total-points axis is drawn on its own scale: 0..max total maps to the same width
    tmax = total_ticks[-1]
    scale_total = 100.0 / tmax

    def tot(v: float) -> float:
        return v * scale_total

    rows.append(("Total points", [tot(v) for v in total_ticks], [_fmt_tick(v) for v in total_ticks]))
    rows.append(("Linear predictor", [tot(p) for p in nom.lp_axis_[1]], [_fmt_tick(v) for v in nom.lp_axis_[0]]))
    for t, (vals, pts) in nom.survival_axes_.items():
        rows.append((f"{t:g}-{nom.time_unit.rstrip('s')} {survival_label}", [tot(p) for p in pts],
                     [f"{v:g}" for v in vals]))
    fig, ax = plt.subplots(figsize=(10, 0.62 * len(rows) + 1.0))
    for i, (label, pos, ticks) in enumerate(rows):
        y = len(rows) - 1 - i
        pos = np.asarray(pos, dtype=float)
        keep = (pos >= -0.5) & (pos <= 100.5)        # ticks beyond the total-points range are not drawn
        pos, ticks = pos[keep], [tl for tl, k in zip(ticks, keep) if k]
        if pos.size == 0:
            continue
        ax.plot([pos.min(), pos.max()], [y, y], color="black", lw=1)
        step = _label_step(pos, ticks)
        for j, (p, tl) in enumerate(zip(pos, ticks)):
            ax.plot([p, p], [y, y + (0.12 if j % step == 0 else 0.07)], color="black", lw=1)
            if j % step == 0:
                ax.text(p, y + 0.17, tl, ha="center", va="bottom", fontsize=8)
        ax.text(-3, y, label, ha="right", va="center", fontsize=9.5, weight="bold" if i == 0 else "normal")
        if label == "Total points":
            ax.axhline(y + 0.5, color="0.8", lw=0.8)
    # minor ticks on the points axis
    y0 = len(rows) - 1
    for p in range(0, 101, 2):
        ax.plot([p, p], [y0, y0 + 0.06], color="black", lw=0.6)
    ax.set_xlim(-45, 105)
    ax.set_ylim(-0.7, len(rows) - 0.2)
    ax.axis("off")
    ax.set_title(title or f"Nomogram (Cox model; {', '.join(f'{t:g}' for t in nom.times)} {nom.time_unit})",
                 fontsize=11)
    return save_figure(fig, out, dpi=150, bbox_inches="tight")


def plot_forest(out: str | os.PathLike, table: pd.DataFrame, *, title: str = "") -> Path:
    """Forest plot of :func:`~npcai.survival.groups.subgroup_hazard_ratios`'s table."""
    plt = _plt()
    n = len(table)
    fig = plt.figure(figsize=(10, 0.38 * n + 1.6))
    ax = fig.add_axes([0.38, 0.12, 0.34, 0.78])
    ys = np.arange(n)[::-1]
    ok = table.hr.notna().to_numpy()
    ax.errorbar(table.hr[ok], ys[ok], xerr=[(table.hr - table.hr_low)[ok], (table.hr_high - table.hr)[ok]],
                fmt="s", color="#1f77b4", ecolor="#1f77b4", capsize=2, ms=5)
    ax.axvline(1, color="0.4", ls="--", lw=1)
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator
    lo = float(np.nanmin(table.hr_low[ok])) if ok.any() else 0.5
    hi = float(np.nanmax(table.hr_high[ok])) if ok.any() else 2.0
    cands = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
    ticks = [c for c in cands if lo / 1.5 <= c <= hi * 1.5] or [1]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks([])
    comp = table.attrs.get("comparison", "")
    ax.set_xlabel(f"Hazard ratio{' (' + comp + ')' if comp else ''}, log scale")
    ax.grid(axis="x", alpha=0.25)
    last_factor = None
    for y, (_, r) in zip(ys, table.iterrows()):
        name = r.factor if r.factor != last_factor else ""
        last_factor = r.factor
        label = f"{r.factor}: {r.subgroup}" if r.subgroup else r.factor
        ax.text(-0.02, y, label, transform=ax.get_yaxis_transform(), ha="right",
                va="center", fontsize=9, weight="bold" if not r.subgroup else "normal")
        hr = f"{r.hr:.2f} ({r.hr_low:.2f}-{r.hr_high:.2f})" if np.isfinite(r.hr) else "not estimable"
        ax.text(1.03, y, f"{int(r.n)}/{int(r.events)}", transform=ax.get_yaxis_transform(), ha="left",
                va="center", fontsize=9)
        ax.text(1.30, y, hr, transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=9)
        if name and np.isfinite(r.p_interaction):
            ax.text(1.82, y, format_p(r.p_interaction), transform=ax.get_yaxis_transform(), ha="left",
                    va="center", fontsize=9)
    top = n - 0.3
    for x, h in ((1.03, "n/events"), (1.30, "HR (95% CI)"), (1.82, "p interaction")):
        ax.text(x, top, h, transform=ax.get_yaxis_transform(), ha="left", va="bottom", fontsize=9, weight="bold")
    ax.set_title(title or "Subgroup analysis", loc="left", x=-0.9)
    return save_figure(fig, out, dpi=150, bbox_inches="tight")
