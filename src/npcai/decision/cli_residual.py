"""``npcai recommend residual STUDY_DIR --out DIR``: seed 002's rule with a residual study's models.

Thin: parse options, call :func:`npcai.decision.residual_recommend.recommend_study`, print the
sentences of :func:`npcai.report.recommendation.summary_lines`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "residual"]


def residual(
    study: Path = typer.Argument(..., help="A finished residual study folder (npcai study run residual): its "
                                           "CCRT- and IC+CCRT-trained runs, chosen by validation AUC."),
    out: Path = typer.Option(..., "--out", help="Output folder: patients.csv, table3.csv, summary.json."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help="Cohort to recommend for (default: the study's "
                                                                 "cohort, its test patients)."),
    patients: Optional[str] = typer.Option(None, "--patients", help="Comma-separated pseudonyms (default: all, or "
                                                                    "the test patients of the study's cohort)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an output folder npcai wrote."),
) -> None:
    """Recommend CCRT, IC+CCRT or IBT (seed 002) and judge it against the physicians (Table 3).

    Needs clinical columns treatment, physician_choice (CCRT or IC+CCRT) and residual_tumour.
    Research use only.

    Example: npcai recommend residual study002 --out rec002
    """
    from rich.console import Console

    from npcai.decision.residual_recommend import recommend_study
    from npcai.progress import show_progress
    from npcai.report.recommendation import summary_lines

    ids = [p.strip() for p in patients.split(",") if p.strip()] if patients else None
    with show_progress():
        result = recommend_study(study, out, cohort=cohort, patients=ids, overwrite=overwrite)
    con = Console()
    for t, m in result.models.items():
        con.print(f"{t} model: {m.run.name} ({m.selection}); residual if prob > {m.threshold:.3f} "
                  f"({m.threshold_source})", markup=False, highlight=False)
    con.print(result.table3.to_string(index=False), markup=False, highlight=False)
    for line in summary_lines(result) + result.notes:
        con.print(line, markup=False, highlight=False)
    con.print(f"wrote {out}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("residual")(residual)
