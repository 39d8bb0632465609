"""``npcai roi build`` and ``npcai roi preview``: build an ROI dataset, look at the variants."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "roi_app"]

roi_app = typer.Typer(name="roi", no_args_is_help=True,
                      help="ROI datasets: the part of each slice a network sees (study variants), "
                           "cached for fast training.")


@roi_app.command("build")
def build(
    cohort: Path = typer.Argument(..., help="An ingested cohort folder (from `npcai ingest`)."),
    variant: str = typer.Option(..., "--variant", "-v",
                                help="original, segmented, expand:Npx, expand:Nmm, bbox, bbox:M(px|mm), "
                                     "bbox-expand:N(px|mm)."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name: written to COHORT/roi/NAME/."),
    region: str = typer.Option("primary", help="Mask region: primary (label 1), nodes (label 2) or both."),
    slices: str = typer.Option("tumour", help="Slices: tumour (region present), max-area:K (K largest "
                                              "region areas per scan) or all."),
    sequences: str = typer.Option("T1c", help="Comma-separated sequences stacked as channels, e.g. "
                                              "T1c or T1c,T2,T1 (resampled onto the first one's grid)."),
    timepoint: str = typer.Option("pre", help="pre, post, or both (pre and post as channels; their "
                                              "grids must match)."),
    mask: str = typer.Option("manual", help="manual contours, or auto masks from `npcai segment predict`."),
    size: int = typer.Option(224, help="Output side in pixels (>= 32)."),
    min_component: str = typer.Option("10x10", help="Drop per-slice mask components whose bounding box "
                                                    "is smaller than HxW px in both directions; 0 keeps all."),
    frame: Optional[str] = typer.Option(None, help="slice (whole slice; default) or bbox (square crop "
                                                   "around the kept region; always used by bbox variants)."),
    normalise: str = typer.Option("robust", help="Per-scan intensity normalisation: robust "
                                                 "(0.5-99.5 percentile clip of body voxels, then z-score), "
                                                 "robust:LOW-HIGH, window:CENTRE,WIDTH (e.g. CT 40,400) or none."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace COHORT/roi/NAME when it was built with "
                                                              "other parameters (runs trained on it go stale)."),
) -> None:
    """Build COHORT/roi/NAME: slices at training size (memory-mapped), index.csv, variant.json."""
    from rich.console import Console

    from npcai.imaging.roi_cache import RoiDataset, build_roi
    from npcai.progress import show_progress

    with show_progress():
        out = build_roi(cohort, name, variant, region=region, slices=slices, sequences=sequences,
                        timepoint=timepoint, mask=mask, size=size, min_component=min_component,
                        frame=frame, normalise=normalise, overwrite=overwrite)
    meta = RoiDataset.open(cohort, name).params
    console = Console()
    console.print(f"ROI [bold]{name}[/bold] ({meta['variant']}, region {meta['region']}, "
                  f"slices {meta['slices']}, frame {meta['frame']}, {meta['size']} px, "
                  f"channels {','.join(meta['channels'])})")
    console.print(f"  {meta['n_slices']} slices from {meta['n_patients']} patients; "
                  f"{meta['n_skipped']} skipped" +
                  (f": {', '.join(sorted(meta['skipped'])[:10])}" + (" ..." if meta['n_skipped'] > 10 else "")
                   if meta["n_skipped"] else ""))
    console.print(f"  {out}")


@roi_app.command("preview")
def preview(
    cohort: Path = typer.Argument(..., help="An ingested cohort folder."),
    patient: str = typer.Option(..., "--patient", "-p", help="Patient pseudonym, e.g. P0001."),
    variants: str = typer.Option("original,segmented,expand:5px,expand:10px,expand:20px,expand:40px,"
                                 "expand:60px", help="Comma-separated variants, one panel each."),
    region: str = typer.Option("both", help="Mask region: primary, nodes or both."),
    slice_: str = typer.Option("largest", "--slice", help="Slice index (z), or 'largest' (largest region area)."),
    sequence: str = typer.Option("T1c", help="Sequence to show."),
    timepoint: str = typer.Option("pre", help="pre or post."),
    mask: str = typer.Option("manual", help="manual or auto mask."),
    size: int = typer.Option(224, help="Panel size in pixels (>= 32), as the network would see it."),
    min_component: str = typer.Option("10x10", help="Small-component rule, as for `roi build`."),
    frame: Optional[str] = typer.Option(None, help="slice or bbox, as for `roi build`."),
    normalise: str = typer.Option("robust", help="Intensity normalisation, as for `roi build`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="PNG to write (default COHORT/roi/previews/<patient>.png)."),
) -> None:
    """Write one labelled PNG montage, one panel per variant, with tumour and node contours."""
    from rich.console import Console

    from npcai.imaging.preview import preview_montage
    from npcai.progress import show_progress

    if out is not None and out.suffix.lower() != ".png":   # never write a picture over a cohort's file
        from npcai.errors import NpcaiError

        raise NpcaiError(f"--out {out}: a preview is a PNG file; give a path ending in .png")
    with show_progress():
        path = preview_montage(cohort, patient, variants.split(","), region=region, slice_=slice_,
                               sequence=sequence, timepoint=timepoint, mask=mask, size=size,
                               min_component=min_component, frame=frame, normalise=normalise, out=out)
    Console().print(f"preview of {patient}: {path}")


@roi_app.command("landmarks")
def landmarks(
    cohort: Path = typer.Argument(..., help="An ingested cohort folder."),
    split_from: Path = typer.Option(..., "--split-from", help="A split.csv (patient_id, split), e.g. RUN/split.csv: "
                                                              "the landmarks are learnt on its training patients only."),
    out: Path = typer.Option(..., "--out", "-o", help="Landmarks JSON to write; then build with "
                                                      "--normalise histogram:FILE."),
    sequences: str = typer.Option("T1c", help="Comma-separated sequences, one reference each."),
    split: str = typer.Option("train", help="Which split of --split-from learns the landmarks."),
    timepoint: str = typer.Option("pre", help="pre or post scans."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing landmarks file."),
) -> None:
    """Learn Nyúl–Udupa histogram landmarks per sequence on the training patients (for --normalise histogram:FILE)."""
    from rich.console import Console

    from npcai.errors import NpcaiError
    from npcai.imaging.histogram import fit_cohort_standardisers, read_split_patients, save_standardisers
    from npcai.progress import show_progress

    if out.exists() and not overwrite:
        raise NpcaiError(f"{out}: exists; choose another --out or pass --overwrite")
    patients = read_split_patients(split_from, split)
    seqs = [s.strip() for s in sequences.split(",") if s.strip()]
    with show_progress():
        stds = fit_cohort_standardisers(cohort, patients, seqs, timepoint=timepoint)
    save_standardisers(out, stds)
    Console().print(f"histogram landmarks of {', '.join(seqs)} from {len(patients)} {split} patients: {out}")


def register(app: typer.Typer) -> None:
    """Add ``npcai roi build|preview|landmarks`` to the root app."""
    app.add_typer(roi_app, name="roi")
