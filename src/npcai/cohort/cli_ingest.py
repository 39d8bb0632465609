"""``npcai ingest`` and ``npcai validate``: hospital export -> de-identified cohort, and its check."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``ingest`` and ``validate`` to the root app."""
    app.command("ingest")(ingest_command)
    app.command("validate")(validate_command)


def ingest_command(
    export: Optional[Path] = typer.Argument(
        None, help="Folder searched recursively for DICOM series (and RTSTRUCT files). "
                   "Optional when --images is given."),
    clinical: Path = typer.Option(..., "--clinical", help="Clinical table (.csv or .xlsx) with a hospital_id "
                                  "column matching the DICOM PatientID or the <id> of volume file names."),
    out: Path = typer.Option(..., "--out", help="Cohort folder to create (written atomically; the pseudonym map "
                             "goes beside it as <OUT>.pseudonyms.csv)."),
    contours: Optional[Path] = typer.Option(None, "--contours", help="Folder of contour label maps "
                                            "<id>[_<pre|post>]_<T1|T2|T1c|CT>.nii.gz/.nrrd and/or RTSTRUCT .dcm files "
                                            "(default: EXPORT/contours when it exists)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of NIfTI/NRRD volumes "
                                          "<id>[_<pre|post>]_<T1|T2|T1c|CT>.nii.gz/.nrrd (instead of or besides DICOM)."),
    sequence_map: Optional[Path] = typer.Option(None, "--sequence-map", help="YAML 'sequence: regex' (T1c, T2, T1; "
                                                "first match wins) recognising sequences from SeriesDescription."),
    roi_map: Optional[Path] = typer.Option(None, "--roi-map", help="YAML mapping RTSTRUCT ROI names to labels, "
                                           "e.g. '1: [GTVnx, GTVp]' and '2: [GTVnd]' (case-insensitive)."),
    sheet: Optional[str] = typer.Option(None, "--sheet", help="Sheet of the Excel workbook holding the table "
                                        "(required when the workbook has several)."),
    keep_columns: Optional[str] = typer.Option(None, "--keep-columns", help="Comma-separated clinical columns "
                                               "outside the schema to keep (all others are dropped), e.g. ldh,smoker."),
    keep_ids: bool = typer.Option(False, "--keep-ids", help="Keep the hospital_id column in COHORT/clinical.csv and "
                                  "accept identifying --keep-columns (the cohort is then NOT de-identified)."),
    pseudonyms: Optional[Path] = typer.Option(None, "--pseudonyms", help="Pseudonym map of an earlier ingest "
                                              "(<COHORT>.pseudonyms.csv): its patients keep their pseudonyms, "
                                              "new patients are appended."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty --out folder."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes reading and converting in "
                                          "parallel (default: one per 100 files, at most one per free core); "
                                          "the cohort is the same for any count."),
    uncompressed: bool = typer.Option(False, "--uncompressed", help="Write .nii instead of .nii.gz: about 1.6x "
                                      "the disk space, several times faster to ingest and to read."),
) -> None:
    """Ingest a hospital export (DICOM / NIfTI / NRRD / RTSTRUCT + clinical table) into a de-identified cohort."""
    from rich.console import Console

    from npcai.cohort.ingest import ingest
    from npcai.progress import show_progress

    with show_progress():
        report = ingest(export, clinical=clinical, out=out, contours=contours, images=images,
                        sequence_map=sequence_map, keep_ids=keep_ids, sheet=sheet, overwrite=overwrite,
                        roi_map=roi_map, keep_columns=(keep_columns or "").split(","), pseudonyms=pseudonyms,
                        workers=workers, compress=not uncompressed)
    console = Console(soft_wrap=True)
    groups = ", ".join(f"{k}: {v}" for k, v in report["scans_per_group"].items())
    console.print(f"[bold]cohort[/bold] {report['out']}  ({report['modality']})")
    console.print(f"  patients {report['patients']}, scans {report['scans']} ({groups}), "
                  f"masks {report['masks']}, slices {report['slices']}, {report['seconds']} s")
    console.print(f"  endpoints/columns: {', '.join(report['endpoints']) or 'none (ids only)'}")
    if report["contours"]:
        found = "" if contours is not None else " (found in the export)"
        console.print(f"  contours: {report['contours']}{found}")
    for key, label in (("images_without_clinical", "excluded, images but no clinical row"),
                       ("clinical_without_images", "excluded, clinical row but no images"),
                       ("unmatched_contours", "contour files matching no scan"),
                       ("scans_without_contour", "scans without contour"),
                       ("skipped_files", "unreadable DICOM files skipped"),
                       ("dropped_columns", "clinical columns dropped (not in the schema; --keep-columns)")):
        if report[key]:
            items = report[key]
            console.print(f"  [yellow]{label}: {len(items)}[/yellow] ({', '.join(map(str, items[:8]))}"
                          f"{' ...' if len(items) > 8 else ''})")
    console.print(f"  pseudonym map (keep private, outside the cohort): {report['pseudonym_map']}")
    console.print(f"  next: npcai validate {report['out']}")


def validate_command(
    cohort: Path = typer.Argument(..., help="Cohort folder written by `npcai ingest`."),
    no_hashes: bool = typer.Option(False, "--no-hashes", help="Skip re-hashing the image files (faster)."),
) -> None:
    """Re-check a cohort (files, geometry, masks, clinical join) and print its summary; exit 2 on problems."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from npcai.cohort.validate import validate_cohort
    from npcai.errors import NpcaiError
    from npcai.progress import show_progress

    with show_progress():
        result = validate_cohort(cohort, check_hashes=not no_hashes)
    console = Console(soft_wrap=True)
    s = result.summary
    if s is not None:
        console.print(f"[bold]{cohort}[/bold]: {s.patients} patients, modality {s.modality}")
        t = Table(title="Scans per sequence and timepoint")
        t.add_column("sequence")
        for tp in s.scans.columns:
            t.add_column(tp, justify="right")
        for seq, row in s.scans.iterrows():
            t.add_row(str(seq), *[str(int(v)) for v in row])
        console.print(t)
        t = Table(title="Masks (slices with tumour / nodes; median volumes in ml)", box=box.SIMPLE_HEAD)
        for col in ("time", "seq", "scans", "masks", "slices", "tumour", "nodes", "tum. ml", "nod. ml"):
            t.add_column(col, justify="right")
        for _, r in s.masks.iterrows():
            t.add_row(r.timepoint, r.sequence, str(r.scans), str(r.with_mask), str(r.slices), str(r.slices_tumour),
                      str(r.slices_nodes), f"{r.median_tumour_ml:.2f}", f"{r.median_nodes_ml:.2f}")
        console.print(t)
        if len(s.endpoints):
            t = Table(title="Endpoints (survival: events / censored, median time; binary: 1 / 0)",
                      box=box.SIMPLE_HEAD, pad_edge=False)
            t.add_column("endpoint", no_wrap=True)
            for col in ("kind", "n", "ev/1", "cens/0", "miss", "cens%", "median"):
                t.add_column(col, justify="right")
            for _, r in s.endpoints.iterrows():
                t.add_row(r.endpoint, r.kind, str(r.n), str(r.events_or_positive), str(r.censored_or_negative),
                          str(r.missing), "" if r.censored_pct != r.censored_pct else f"{r.censored_pct:.1f}",
                          "" if r.median_time != r.median_time else f"{r.median_time:.1f}")
            console.print(t)
        else:
            console.print("no endpoints: the clinical table has ids only (commands needing one will name the column)")
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    if len(result.problems) == 1:
        raise NpcaiError(result.problems[0])
    if result.problems:
        for p in result.problems:
            typer.echo(f"problem: {p}", err=True)
        raise NpcaiError(f"{cohort}: {len(result.problems)} problem(s) listed above; fix them or re-run `npcai ingest`")
    if result.warnings:
        console.print(f"[yellow]cohort files are consistent, but check the {len(result.warnings)} warning(s) "
                      "listed above before training[/yellow]")
    else:
        console.print("[green]cohort is sound[/green]")
