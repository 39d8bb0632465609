"""``make demo``: the whole pipeline on the phantom in one command.

Builds the default phantom hospital export (120 patients) unless it exists, ingests it, runs
study 000's design (``npcai study run peritumoral --preset fast``) and prints where the
report is. Every stage reuses what an earlier demo left in ``--out``, so running it again is
quick. Equivalent commands::

    npcai phantom demo/export
    npcai ingest demo/export --clinical demo/export/clinical.csv --contours demo/export/contours --out demo/cohort
    npcai study run peritumoral --cohort demo/cohort --preset fast --out demo/study
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["run_demo", "main"]


def run_demo(out: str | Path = "demo", *, patients: int = 120, study: str = "peritumoral",
             preset: str = "fast", backbones: list[str] | None = None, echo=print) -> Path:
    """Phantom -> cohort -> study report under ``out``; returns the report path."""
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom
    from npcai.progress import show_progress
    from npcai.studies.runner import run_study

    out = Path(out)
    export, cohort = out / "export", out / "cohort"
    t0 = time.perf_counter()
    with show_progress():
        if (export / "clinical.csv").is_file():
            echo(f"phantom export: reusing {export}")
        else:
            echo(f"phantom export: generating {patients} patients into {export} ...")
            summary = generate_phantom(export, patients=patients)
            echo(_summary_text(summary))
        if (cohort / "cohort.json").is_file():
            echo(f"cohort: reusing {cohort}")
        else:
            echo(f"cohort: ingesting {export} into {cohort} ...")
            ingest(export / "dicom", clinical=export / "clinical.csv", out=cohort,
                   contours=export / "contours")
        echo(f"study: {study} --preset {preset} into {out / 'study'} ...")
        result = run_study(study, cohort=cohort, out=out / "study", preset=preset, backbones=backbones)
    echo(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {len(result.steps)} models "
         f"({int((result.steps['status'] == 'trained').sum())} trained)")
    for line in result.findings:
        echo(f"  - {line}")
    echo(f"report: {result.report.resolve()}")
    return result.report


def _summary_text(summary: dict) -> str:
    keys = [k for k in summary if not isinstance(summary[k], (dict, list))]
    text = ", ".join(f"{k}: {summary[k]}" for k in keys)
    oracle = summary.get("oracle")
    if isinstance(oracle, dict):
        text += "; oracle: " + ", ".join(
            f"{k} " + ", ".join(f"{m} {v:.3f}" for m, v in d.items() if m in ("auc", "c_index") and v is not None)
            for k, d in oracle.items() if isinstance(d, dict))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m npcai.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo", help="demo folder (default: demo)")
    parser.add_argument("--patients", type=int, default=120, help="phantom patients (default 120)")
    parser.add_argument("--study", default="peritumoral", help="study to run (default peritumoral)")
    parser.add_argument("--preset", default="fast", help="study preset (default fast)")
    parser.add_argument("--backbones", default=None, help="comma-separated backbones overriding the preset")
    parser.add_argument("--debug", action="store_true", help="full traceback on errors")
    args = parser.parse_args(argv)
    from npcai.cli import _configure_logging
    from npcai.errors import NpcaiError

    _configure_logging(args.debug)
    try:
        run_demo(args.out, patients=args.patients, study=args.study, preset=args.preset,
                 backbones=args.backbones.split(",") if args.backbones else None)
    except NpcaiError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
