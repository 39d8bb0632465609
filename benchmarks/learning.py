"""Learning benchmark: how much of the phantom's signal each study's recipe extracts.

For each shipped study, on the default phantom (``--post`` phantom for prepost), runs the
study's preset (default ``fast``) under patient-level K-fold cross-validation (default 5) plus
the handcrafted radiomics baseline on the same folds, and prints per model (ROI variant,
subset, unit) the pooled out-of-fold AUC with its 95% DeLong CI, the oracle AUC (the
phantom's true probability of the endpoint) on the *same* patients, and their ratio. The
ratio is what a recipe change should raise; the oracle is the ceiling no model can beat on
average.

Everything is cached under ``--work``: the phantoms and cohorts are generated once, and the
study runner reuses every finished step whose options are unchanged, so a rerun after changing
one preset retrains only what changed. The tables are also written to
``WORK/learning-<label>.md`` so a before/after pair can be compared.

``--phantom-seed N`` runs everything on another phantom (other patients, other images, same
planted signals and oracle definition), in its own folders. A preset change chosen by reading
this benchmark's out-of-fold results on the default phantom (seed 0) has been chosen on those
very patients; confirm it on a phantom it has not seen before calling it better.

Usage::

    .venv/bin/python benchmarks/learning.py [--work /tmp/npcai-bench-learning] \
        [--studies peritumoral,metastasis,residual,prepost] [--folds 5] [--preset fast] \
        [--threads 1] [--label after] [--phantom-seed 1] [--members 3] [--executor local:2]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STUDIES = ("peritumoral", "metastasis", "residual", "prepost")


@dataclass
class LearningRow:
    """One model of one study: pooled out-of-fold AUC against the oracle on the same patients."""

    study: str
    model: str
    n: int
    n_pos: int
    auc: float
    auc_low: float
    auc_high: float
    oracle: float
    oracle_low: float
    oracle_high: float

    @property
    def ratio(self) -> float:
        return self.auc / self.oracle if self.oracle else float("nan")


def _cohort(work: Path, *, post: bool, seed: int = 0) -> Path:
    """The default phantom (120 patients, 256 px, 16 slices; ``seed`` 0 unless asked), ingested
    once into WORK."""
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    name = ("phantom-post" if post else "phantom") + (f"-seed{seed}" if seed else "")
    cohort = work / name / "cohort"
    if (cohort / "cohort.json").is_file():
        return cohort
    export = work / name / "export"
    t = time.perf_counter()
    generate_phantom(export, post=post, seed=seed, overwrite=True)
    ingest(export / "dicom", clinical=export / "clinical.csv", out=cohort, contours=export / "contours",
           overwrite=True)
    print(f"{name}: generated and ingested in {time.perf_counter() - t:.0f} s", flush=True)
    return cohort


#: the ROI datasets of the radiomics baseline where the study ships no ``radiomics:`` block
RADIOMICS_ROIS = {"metastasis": ["both-peri", "primary-intra"], "residual": ["bbox"], "prepost": ["pre", "post"]}


def _with_radiomics(resolved):
    """The resolved study with a radiomics block when it has none (:data:`RADIOMICS_ROIS`)."""
    from npcai.studies.schema import RadiomicsBlock

    name = resolved.study.name
    if resolved.study.radiomics is not None or name not in RADIOMICS_ROIS:
        return resolved
    study = resolved.study.model_copy(update={"radiomics": RadiomicsBlock(rois=RADIOMICS_ROIS[name])})
    return dataclasses.replace(resolved, study=study)


def _rows(study: str, out: Path, cohort: Path, results: pd.DataFrame, endpoint: str) -> list[LearningRow]:
    from npcai.errors import NpcaiError
    from npcai.runs import read_predictions
    from npcai.stats.auc import auc_ci
    from npcai.studies.backend import oracle_scores

    score, _ = oracle_scores(cohort, endpoint)
    rows = []
    for r in results.itertuples():
        if r.source not in ("run", "radiomics", "ensemble"):      # TNM and clinical rows: no phantom image signal
            continue
        pred = read_predictions(out / r.run).patients
        oof = pred[pred["split"] == "oof"]
        if oof.empty:
            raise SystemExit(f"{out / r.run}: no out-of-fold predictions; run with --folds")
        sc = score.reindex(oof["patient_id"]).to_numpy(dtype=float)
        ok = np.isfinite(sc)
        try:
            o = auc_ci(oof["label"].to_numpy()[ok].astype(int), sc[ok])
            oracle = (o.auc, o.low, o.high)
        except NpcaiError:
            oracle = (math.nan, math.nan, math.nan)
        rows.append(LearningRow(study, r.model, int(r.n_test), int(r.n_pos), float(r.auc), float(r.auc_low),
                                float(r.auc_high), *oracle))
    return rows


def _table(rows: list[LearningRow]) -> str:
    lines = ["| study | model | patients (events) | pooled OOF AUC (95% CI) | oracle AUC, same patients | ratio |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.study} | {r.model} | {r.n} ({r.n_pos}) | {r.auc:.3f} ({r.auc_low:.3f}–{r.auc_high:.3f}) "
                     f"| {r.oracle:.3f} ({r.oracle_low:.3f}–{r.oracle_high:.3f}) | {r.ratio:.2f} |")
    return "\n".join(lines)


def _verdicts(rows: list[LearningRow], *, partial: bool = False) -> list[str]:
    """The issue's targets: peritumoral best deep model >= 0.9 x oracle; metastasis and residual
    best model with a CI above 0.5. ``partial``: only some ROI datasets ran (``--rois``), so
    the verdict is about those alone."""
    out = []
    for study in dict.fromkeys(r.study for r in rows):
        deep = [r for r in rows if r.study == study and "Radiomics" not in r.model]
        if not deep:
            continue
        best = max(deep, key=lambda r: r.auc)
        line = (f"{study}: best deep model {best.model} AUC {best.auc:.3f} ({best.auc_low:.3f}–{best.auc_high:.3f}), "
                f"{best.ratio:.2f} x oracle {best.oracle:.3f}")
        if study == "peritumoral":
            line += f" -> target >= 0.90 x oracle {'met' if best.ratio >= 0.9 else 'NOT met'}"
        elif study in ("metastasis", "residual"):
            line += f" -> target CI above 0.5 {'met' if best.auc_low > 0.5 else 'NOT met'}"
        if partial:
            line += " (judged on the datasets run here only: --rois)"
        out.append(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/npcai-bench-learning"))
    ap.add_argument("--studies", default=",".join(STUDIES))
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per training run (default: free cores)")
    ap.add_argument("--label", default="run", help="names the written table WORK/learning-LABEL.md")
    ap.add_argument("--rois", default=None, help="only these ROI datasets (one study; e.g. to spend a small CPU "
                                                 "budget on the variants that matter)")
    ap.add_argument("--phantom-seed", type=int, default=0, help="another phantom (other patients) to confirm "
                                                                "a preset change on; default 0, the default phantom")
    ap.add_argument("--members", type=int, default=None, help="train every run as a deep ensemble of K networks "
                                                               "(K times the training)")
    ap.add_argument("--executor", default=None, help="local:N trains N runs side by side (e.g. local:2 with "
                                                     "--threads 1 on two cores); default: one after another")
    args = ap.parse_args()
    if args.rois and "," in args.studies:
        ap.error("--rois needs exactly one study in --studies")

    from npcai.studies.runner import resolve_study, run_study

    args.work.mkdir(parents=True, exist_ok=True)
    all_rows: list[LearningRow] = []
    timings = []
    for study in args.studies.split(","):
        cohort = _cohort(args.work, post=study == "prepost", seed=args.phantom_seed)
        resolved = _with_radiomics(resolve_study(study, args.preset, folds=args.folds, members=args.members,
                                                rois=args.rois.split(",") if args.rois else None))
        t = time.perf_counter()
        studies = "studies" + (f"-seed{args.phantom_seed}" if args.phantom_seed else "")
        res = run_study(resolved, out=args.work / studies / study, cohort=cohort, explain=False,
                        threads=args.threads, executor=args.executor)
        seconds = time.perf_counter() - t
        trained = int((res.steps["status"] == "trained").sum()) if "status" in res.steps else -1
        timings.append(f"{study}: {seconds / 60:.1f} min ({trained} steps trained, the rest reused)")
        rows = _rows(study, res.out, cohort, res.results, resolved.study.endpoint)
        all_rows += rows
        print(f"\n## {study} ({args.preset} preset, {args.folds}-fold CV): {timings[-1]}\n", flush=True)
        print(_table(rows), flush=True)
    verdicts = _verdicts(all_rows, partial=bool(args.rois))
    phantom = f"phantom seed {args.phantom_seed}" if args.phantom_seed else "default phantom"
    ensemble = f", deep ensembles of {args.members}" if args.members and args.members > 1 else ""
    text = "\n".join([f"# Learning benchmark ({args.label}): {args.preset} presets{ensemble}, {args.folds}-fold CV, "
                      f"{phantom}", "",
                      _table(all_rows), "", *[f"- {v}" for v in verdicts], "",
                      *[f"- time {t}" for t in timings], ""])
    (args.work / f"learning-{args.label}.md").write_text(text)
    print("\n" + "\n".join(verdicts))
    print("\n".join(timings))
    print(f"written: {args.work / f'learning-{args.label}.md'}")


if __name__ == "__main__":
    main()
