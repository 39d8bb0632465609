"""Automatic vs manual contours on the same slices, as a PNG for people to judge.

For one scan the figure shows a few axial slices (the ones with the largest manual area of
the labels the automatic mask was trained on, in slice order): the image in grey with the manual contour drawn solid and
the automatic one dashed, tumour in red and nodes in blue, zoomed on the lesions (15 mm
margin), the slice's Dice in the panel title and axes in millimetres (from the scan's spacing), so a reader can check the
physical size.

Examples:
    >>> overlay_contours("cohort", "P0003", "overlay.png")     # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from npcai.cohort.model import LABELS, Cohort
from npcai.errors import NpcaiError
from npcai.segmentation.metrics import dice_score

__all__ = ["overlay_contours"]

_COLOURS = {"tumour": "#e41a1c", "nodes": "#377eb8"}


def overlay_contours(cohort: str | Path | Cohort, patient_id: str, out: str | Path, *, n_slices: int = 3,
                     timepoint: str = "pre", sequence: str | None = None,
                     slices: list[int] | None = None) -> Path:
    """Write a PNG comparing the scan's automatic and manual masks on ``n_slices`` slices.

    Args:
        cohort: cohort folder with automatic masks (``npcai segment predict``).
        patient_id: the patient (pseudonym).
        out: PNG path.
        n_slices: how many slices (largest manual area of the trained labels first, shown in
            slice order).
        timepoint / sequence: which scan (sequence default: the one with an automatic mask).
        slices: explicit slice indices instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from npcai.imaging.normalise import normalise_volume

    co = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    scans = [s for s in co.scans(patient_id=co.patient(patient_id).patient_id, timepoint=timepoint,
                                 sequence=sequence) if s.auto_mask and s.mask]
    if not scans:
        raise NpcaiError(f"patient {patient_id}: no {timepoint} scan with both a manual and an automatic mask; "
                         f"run `npcai segment predict` first")
    scan = scans[0]
    image = co.read_array(scan)
    manual = co.read_mask(scan, "manual")
    auto = co.read_mask(scan, "auto")
    prov = scan.auto_mask_provenance or {}
    # the labels the automatic mask was trained on (all labels when unknown) choose the slices
    trained = [LABELS[n] for n in str(prov.get("labels", "")).split(",") if n in LABELS] or list(LABELS.values())
    if slices is None:
        area = np.isin(manual, trained).reshape(len(manual), -1).sum(1)
        if area.max() == 0:
            area = (auto > 0).reshape(len(auto), -1).sum(1)
        order = [int(k) for k in np.argsort(-area, kind="stable") if area[k] > 0][:n_slices]
        slices = sorted(order) or [len(image) // 2]
    bad = [k for k in slices if not 0 <= k < len(image)]
    if bad:
        raise NpcaiError(f"scan {scan.scan_id}: slice {bad[0]} is outside 0..{len(image) - 1}")
    norm = "window:40,400" if scan.sequence == "CT" else "robust"
    shown = normalise_volume(image, norm)
    sx, sy = scan.spacing[0], scan.spacing[1]
    rows, cols = image.shape[1:]
    extent = (0, cols * sx, rows * sy, 0)
    # zoom on the lesions (manual or automatic) of the shown slices, with a 15 mm margin
    lesion = ((manual[slices] > 0) | (auto[slices] > 0)).any(0)
    if lesion.any():
        rr, cc = np.nonzero(lesion)
        margin_r, margin_c = 15.0 / sy, 15.0 / sx
        zoom = (max(cc.min() - margin_c, 0) * sx, min(cc.max() + 1 + margin_c, cols) * sx,
                min(rr.max() + 1 + margin_r, rows) * sy, max(rr.min() - margin_r, 0) * sy)
    else:
        zoom = extent
    fig, axes = plt.subplots(1, len(slices), figsize=(4.2 * len(slices), 4.6), squeeze=False,
                             constrained_layout=True)
    for ax, k in zip(axes[0], slices):
        lo, hi = np.percentile(shown[k], [1, 99])
        ax.imshow(shown[k], cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
        yy = (np.arange(rows) + 0.5) * sy
        xx = (np.arange(cols) + 0.5) * sx
        parts = []
        for name, value in LABELS.items():
            for mask, style in ((manual, "-"), (auto, "--")):
                m = (mask[k] == value).astype(float)
                if m.any():
                    ax.contour(xx, yy, m, levels=[0.5], colors=_COLOURS[name], linestyles=style, linewidths=1.4,
                               zorder=3 if value in trained else 2)      # the trained labels on top
            d = dice_score(manual[k], auto[k], value)
            if np.isfinite(d) and value in trained:
                parts.append(f"{name} {d:.2f}")
        ax.set_title(f"slice {k}: Dice " + (", ".join(parts) if parts else "n/a"), fontsize=10)
        ax.set_xlim(zoom[0], zoom[1])
        ax.set_ylim(zoom[2], zoom[3])
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_COLOURS["tumour"], ls="-", label="tumour, manual"),
               Line2D([], [], color=_COLOURS["tumour"], ls="--", label="tumour, automatic"),
               Line2D([], [], color=_COLOURS["nodes"], ls="-", label="nodes, manual"),
               Line2D([], [], color=_COLOURS["nodes"], ls="--", label="nodes, automatic")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, bbox_to_anchor=(0.5, -0.07))
    who = f"{prov.get('arch', '?')} ({prov.get('encoder', '?')})"
    split = prov.get("patient_split")
    fig.suptitle(f"{scan.scan_id}: automatic ({who}) vs manual contours"
                 + (f" — {split} patient of the segmentation run" if split else ""), fontsize=11)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out
