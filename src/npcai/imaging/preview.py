"""A labelled montage of one patient's slice under several ROI variants (like study 000's Fig. 2).

Each panel is exactly what a network would be given (same code path as ``build_roi``), drawn
in grey with the tumour (red) and node (yellow) contours, the edge of the kept region
(cyan, dashed), a 10 mm scale bar, and the variant as title. Pixels outside the kept region
(zero for the network) are drawn black.

Examples:
    >>> preview_montage("cohort", "P0001", ["original", "segmented", "expand:20px"])  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from npcai.fsutil import save_figure
from npcai.cohort.model import Cohort
from npcai.errors import NpcaiError
from npcai.imaging.masks import drop_small_components, parse_min_component, region_mask
from npcai.imaging.normalise import normalise_volume, parse_normalisation
from npcai.imaging.roi_cache import MIN_SIZE
from npcai.limits import check_image_side
from npcai.imaging.variants import apply_variant, parse_variant
from npcai.imaging.volume_io import load_stack, plan_patient

__all__ = ["preview_montage"]


def _scale_bar(ax, pixel_mm: float, size: int) -> None:
    """Draw a horizontal scale bar (a round length near 1/6 of the field) in the lower left;
    ``pixel_mm`` is the column (horizontal) pixel size."""
    field_mm = pixel_mm * size
    length_mm = next(L for L in (1, 2, 5, 10, 20, 50, 100, 200, 500) if L >= field_mm / 6)
    px = length_mm / pixel_mm
    y = size * 0.93
    ax.plot([size * 0.05, size * 0.05 + px], [y, y], color="white", lw=3, solid_capstyle="butt")
    ax.text(size * 0.05, y - size * 0.03, f"{length_mm} mm", color="white", fontsize=8)


def preview_montage(cohort_dir: str | Path, patient_id: str, variants: list[str], *,
                    region: str = "both", slice_: str | int = "largest", sequence: str = "T1c",
                    timepoint: str = "pre", mask: str = "manual", size: int = 224,
                    min_component: str | tuple[int, int] = (10, 10), frame: str | None = None,
                    normalise: str = "robust", out: str | Path | None = None) -> Path:
    """Write the montage PNG and return its path (default ``COHORT/roi/previews/<patient>.png``).

    Raises:
        NpcaiError: unknown patient/variant, no mask, empty region, or a slice out of range.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    parsed = [parse_variant(v) for v in variants if v.strip()]
    if not parsed:
        raise NpcaiError("--variants is empty; give e.g. original,segmented,expand:20px")
    check_image_side(size, what="--size", minimum=MIN_SIZE, hint="224 is typical")
    if timepoint not in ("pre", "post"):
        raise NpcaiError(f"--timepoint {timepoint!r}: preview shows one timepoint; use pre or post")
    cohort = Cohort.load(cohort_dir)
    cohort.patient(patient_id)
    plan = plan_patient(cohort, patient_id, sequences=(sequence,), timepoint=timepoint, mask=mask)
    if isinstance(plan, str):
        raise NpcaiError(f"patient {patient_id}: {plan}; choose another --sequence/--timepoint")
    if plan.mask_scan is None:
        raise NpcaiError(f"patient {patient_id}: no {mask} mask for {plan.scans[0].scan_id}; "
                         "add contours (`npcai ingest --contours`) or use --mask auto")
    stack = load_stack(cohort, plan)
    labels = drop_small_components(stack.labels, parse_min_component(min_component))
    reg = region_mask(labels, region)
    areas = reg.reshape(reg.shape[0], -1).sum(axis=1)
    if str(slice_) == "largest":
        if areas.max() == 0:
            raise NpcaiError(f"patient {patient_id}: the {region} region is empty on every slice; "
                             "choose another --region or lower --min-component")
        k = int(np.argmax(areas))
    else:
        try:
            k = int(slice_)
        except ValueError:
            raise NpcaiError(f"--slice {slice_!r}: give a slice index or 'largest'") from None
        if not 0 <= k < reg.shape[0]:
            raise NpcaiError(f"--slice {k}: patient {patient_id} has slices 0..{reg.shape[0] - 1}")
    norm = normalise_volume(stack.image[0], parse_normalisation(normalise))
    shown = norm[k]
    vmin, vmax = np.percentile(shown, [1, 99])

    n = len(parsed)
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.7 * nrows + 0.8), squeeze=False)
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="black")
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, v in zip(axes.flat, parsed):
        roi = apply_variant(norm[k][None], labels[k], reg[k], v, size=size, pixel_mm=stack.pixel_mm,
                            frame=frame)
        img = np.ma.masked_where(~roi.kept, roi.image[0])
        # aspect = row_mm / col_mm: panels are drawn in physical proportions
        ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                  aspect=stack.pixel_mm[0] / stack.pixel_mm[1])
        for lab, colour in ((1, "red"), (2, "yellow")):
            if (roi.labels == lab).any():
                ax.contour(roi.labels == lab, levels=[0.5], colors=colour, linewidths=1.0)
        if v.uses_mask and roi.kept.any() and not roi.kept.all():
            ax.contour(roi.kept, levels=[0.5], colors="cyan", linewidths=0.8, linestyles="--")
        pixel_mm = roi.crop[2] * stack.pixel_mm[1] / size
        _scale_bar(ax, pixel_mm, size)
        ax.set_title(f"{v}\n{roi.crop[2]} px window, {pixel_mm:.2f} mm/px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], color="red", label="primary tumour (label 1)"),
               Line2D([], [], color="yellow", label="nodes (label 2)"),
               Line2D([], [], color="cyan", ls="--", label="edge of kept region")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Patient {patient_id}, {timepoint} {sequence}, slice z={k} "
                 f"({stack.positions_mm[k]:.1f} mm), region {region}: what each network sees",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))

    out = Path(out) if out is not None else Path(cohort_dir) / "roi" / "previews" / f"{patient_id}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, dpi=110)
    return out
