"""CLI of study 004: ``npcai study run decision`` (called by the study command when the study is
``kind: decision``) and ``npcai recommend decision STUDY_DIR --cohort COHORT --out DIR``.
Thin: parse, call :mod:`npcai.decision.study004` / :mod:`npcai.decision.apply`, print."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["run_decision_cli", "register"]


def run_decision_cli(console, study: str, *, cohort, export, clinical, contours, out, preset, backbones, epochs,
                     size, sequences, pretrained, weights, resume, threads, dry_run, endpoint,
                     unsupported: dict) -> None:
    """``npcai study run decision ...``."""
    from npcai.errors import NpcaiError
    from npcai.progress import show_progress
    from npcai.decision.study004 import resolve_decision_study, run_decision_study

    if unsupported:
        raise NpcaiError(f"{', '.join(unsupported)}: not available for a decision study (one deep survival run "
                         "on one split); leave it out")
    if backbones and len(backbones) > 1:
        raise NpcaiError(f"--backbones {','.join(backbones)}: a decision study trains one network; give one backbone")
    resolved = resolve_decision_study(study, preset, backbone=backbones[0] if backbones else None, epochs=epochs,
                                      size=size, pretrained=pretrained, sequences=sequences, endpoint=endpoint)
    out = out or Path(f"study_{resolved.study.name}")
    if dry_run:
        s = resolved.study
        console.print(f"[bold]{s.name}[/bold] ({resolved.preset}): 1 deep survival run ({s.backbone}, "
                      f"{'+'.join(s.roi.sequences)} {s.roi.variant} at {s.training.size or 224} px, at most "
                      f"{s.training.epochs} epochs), matching on {', '.join(s.matching.covariates)}, external test "
                      f"{s.split.test_where!r}, thresholds {', '.join(f'{t:g}' for t in s.decision.thresholds)} pp")
        if cohort is not None:
            from npcai.cohort.model import Cohort
            from npcai.decision.study004 import match_treatments

            m = match_treatments(Cohort.load(cohort).clinical(), resolved)
            console.print(f"matching: {m.eligible} eligible, {len(m.patients)} matched ("
                          + ", ".join(f"{k} {v}" for k, v in m.per_treatment.items()) + "); excluded: "
                          + ("; ".join(f"{n} {k}" for k, n in m.excluded.items()) or "none"))
        return
    with show_progress():
        result = run_decision_study(resolved, out=out, cohort=cohort, export=export, clinical=clinical,
                                    contours=contours, weights=weights, resume=resume, threads=threads)
    console.print(f"[bold]{resolved.study.name}[/bold] ({resolved.preset}): deep run {result.status}; "
                  f"{result.seconds / 60:.1f} min")
    for line in result.findings:
        console.print(f"  • {line}")
    console.print(f"report: {result.report}")


def recommend_decision(
    study_dir: Path = typer.Argument(..., help="A finished decision study folder (npcai study run decision)."),
    cohort: Path = typer.Option(..., "--cohort", help="An ingested cohort with the patients to recommend for "
                                                     "(T1, T2, T1c scans, tumour masks and the clinical factors)."),
    out: Path = typer.Option(..., "--out", help="Output folder: recommendations.csv and summary.json."),
    patients: Optional[str] = typer.Option(None, "--patients", help="Comma-separated pseudonyms (default: all)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="DFS-difference threshold in percentage "
                                              "points, 0-100 (default: the study's first, e.g. 0)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an output folder npcai wrote."),
) -> None:
    """Recommend CCRT or IC+CCRT by the CPTDN's predicted 5-year DFS difference (research use only)."""
    from rich.console import Console

    from npcai.decision.apply import recommend_cohort, write_recommendations
    from npcai.progress import show_progress

    ids = [p.strip() for p in patients.split(",") if p.strip()] if patients else None
    with show_progress():
        rec = recommend_cohort(study_dir, cohort, patients=ids, threshold=threshold)
        write_recommendations(rec, out, study=study_dir, cohort=cohort, overwrite=overwrite)
    con = Console()
    counts = rec.table["recommended"].value_counts().to_dict()
    con.print(f"{len(rec.table)} patients at threshold {rec.threshold:g} pp: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for _, r in rec.table.head(10).iterrows():
        con.print(f"  {r['patient_id']}: 5-year DFS CCRT {r['dfs_ccrt']:.1%}, IC+CCRT {r['dfs_ic_ccrt']:.1%} "
                  f"(difference {r['difference_pp']:+.1f} pp) -> {r['recommended']}")
    con.print(f"written: {Path(out) / 'recommendations.csv'}")


def register(app: typer.Typer) -> None:
    """Add ``decision`` to ``npcai recommend``."""
    app.command("decision")(recommend_decision)
