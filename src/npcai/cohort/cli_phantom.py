"""``npcai phantom``: write a synthetic hospital export with planted, known signal."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``npcai phantom`` to the root app."""

    @app.command("phantom")
    def phantom(
        out: Path = typer.Argument(..., help="Export folder to create (must be empty or absent unless --overwrite)."),
        patients: int = typer.Option(120, "--patients", help="Number of patients (>= 1)."),
        size: int = typer.Option(256, "--size", help="In-plane matrix in pixels (>= 64); the FOV is 230 mm."),
        slices: int = typer.Option(16, "--slices", help="Axial slices per series (5 mm each)."),
        seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes identical files."),
        centres: int = typer.Option(2, "--centres", help="Number of centres (1-4): scanner vendor, field strength, intensity and noise differ."),
        sequences: list[str] = typer.Option(["T1c"], "--sequences",
                                            help="MR sequences, any of T1c, T2, T1 (repeat the option or comma-separate)."),
        post: bool = typer.Option(False, "--post", help="Also write post-treatment scans (about 4 months after pre)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT folder."),
    ) -> None:
        """Write a phantom NPC hospital export: DICOM series, NIfTI contours, clinical.csv and truth/."""
        from rich.console import Console

        from npcai.cohort.phantom import generate_phantom, summary_table
        from npcai.progress import show_progress

        with show_progress():
            summary = generate_phantom(out, patients=patients, size=size, slices=slices, seed=seed,
                                       centres=centres, sequences=tuple(sequences), post=post,
                                       overwrite=overwrite)
        Console().print(summary_table(summary))
