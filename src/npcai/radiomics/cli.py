"""``npcai radiomics extract`` and ``npcai radiomics train``: parse, call
:mod:`npcai.radiomics`, print a short summary."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from npcai.errors import NpcaiError

__all__ = ["register", "radiomics_app"]

radiomics_app = typer.Typer(name="radiomics", no_args_is_help=True,
                            help="Handcrafted radiomics baseline: IBSI-style features on an ROI dataset and an "
                                 "elastic-net logistic model written as a run folder.")


def _c_grid(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise NpcaiError(f"--c-grid {text!r}: give numbers separated by commas, e.g. 0.01,0.1,1,10") from exc


@radiomics_app.command("extract")
def extract_cmd(
    cohort: Path = typer.Argument(..., help="An ingested cohort folder with the ROI dataset built."),
    roi: str = typer.Option(..., "--roi", help="ROI dataset name (COHORT/roi/NAME, from `npcai roi build`); its "
                                               "kept region (tumour, expanded region, whole slice) is described."),
    bin_count: int = typer.Option(32, "--bin-count", help="Grey-level bins (IBSI fixed bin number)."),
    force: bool = typer.Option(False, "--force", help="Extract again even when the cached table is up to date."),
) -> None:
    """Compute first-order, shape, GLCM, GLRLM, GLSZM, GLDM and NGTDM features per ROI slice and
    sequence (pyradiomics), averaged per patient; cached in COHORT/roi/.radiomics/NAME/."""
    from rich.console import Console

    from npcai.progress import show_progress
    from npcai.radiomics.extractor import ExtractionSettings
    from npcai.radiomics.table import extract_features

    with show_progress():
        table = extract_features(cohort, roi, settings=ExtractionSettings(bin_count=bin_count), force=force)
    m = table.meta
    con = Console()
    con.print(f"radiomics [bold]{roi}[/bold] ({m['roi']['variant']}, region {m['roi']['region']}, channels "
              f"{','.join(m['roi']['channels'])}): {m['n_features']} features x {m['n_patients']} patients "
              f"from {m['n_slices']} slices ({m['package']} {m['version']}, {m['settings']['bin_count']} bins)")
    if m["skipped"] or m["skipped_slices"]:
        con.print(f"  skipped: {len(m['skipped'])} patients, {m['skipped_slices']} slices (region too small)")
    con.print(f"  {table.path}")


@radiomics_app.command("train")
def train_cmd(
    cohort: Path = typer.Argument(..., help="Cohort folder (from `npcai ingest`)."),
    roi: str = typer.Option(..., "--roi", help="ROI dataset name; features are extracted (or reused) first."),
    endpoint: str = typer.Option(..., "--endpoint", help="pfs-median, distant-metastasis, residual-tumour, or any "
                                                         "0/1 clinical column."),
    out: Path = typer.Option(..., "--out", help="Run folder to write (evaluate and compare it like any run)."),
    split_from: Optional[Path] = typer.Option(None, "--split-from", help="Reuse this run's split (a "
                                              "cross-validated run: its folds), for paired comparisons."),
    folds: Optional[int] = typer.Option(None, "--folds", help="Patient-level stratified K-fold cross-validation "
                                        "(OUT/folds/fold1..K, out-of-fold predictions)."),
    fold_seed: int = typer.Option(0, "--fold-seed", help="Seed of the fold assignment (--folds)."),
    folds_from: Optional[Path] = typer.Option(None, "--folds-from", help="Reuse the folds of this "
                                              "cross-validated run (with --folds)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the drawn split (as `npcai train`) and the solver."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of the training patients that choose "
                                       "the penalty and the threshold."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of all patients held out for test."),
    where: Optional[str] = typer.Option(None, "--where", help="Patient filter on clinical columns, e.g. "
                                        "'treatment == \"CCRT\"'."),
    test_where: Optional[str] = typer.Option(None, "--test-where", help="Patients matching this filter all go to "
                                             "the test cohort (split test_external)."),
    l1_ratio: float = typer.Option(0.5, "--l1-ratio", help="Elastic-net mix: 0 ridge, 1 lasso."),
    c_grid: str = typer.Option("0.01,0.03,0.1,0.3,1,3,10", "--c-grid", help="Inverse penalty strengths tried; "
                               "the validation AUC picks one."),
    max_correlation: float = typer.Option(0.9, "--max-correlation", help="Drop the later of two features with "
                                          "|r| above this on the training patients (1 keeps all)."),
    bin_count: int = typer.Option(32, "--bin-count", help="Grey-level bins of the features."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT written by npcai."),
) -> None:
    """Fit the elastic-net radiomics model on the training patients and write a run folder."""
    from rich.console import Console

    from npcai.progress import show_progress
    from npcai.radiomics.train import RadiomicsConfig, train_radiomics

    cfg = RadiomicsConfig(cohort=str(cohort), roi=roi, endpoint=endpoint, where=where, test_where=test_where,
                          seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                          split_from=str(split_from) if split_from else None, folds=folds, fold_seed=fold_seed,
                          folds_from=str(folds_from) if folds_from else None, l1_ratio=l1_ratio,
                          c_grid=_c_grid(c_grid), max_correlation=max_correlation, bin_count=bin_count)
    with show_progress():
        res = train_radiomics(cfg, out, overwrite=overwrite)
    con = Console()
    s = res.summary
    if res.kind == "cv":
        con.print(f"[bold]run[/bold] {res.run_dir}: radiomics elastic net, {s['folds']}-fold cross-validation on "
                  f"ROI {roi}, endpoint {endpoint}; {s['patients']} patients ({s['label_1']} positive)")
        con.print("per-fold AUC: " + ", ".join(f"{a:.3f}" for a in res.fold_aucs))
        con.print(f"[bold]pooled out-of-fold AUC {res.auc:.3f}[/bold] (CIs: `npcai evaluate {res.run_dir}`)")
        return
    sp, m = s["splits"], s["model"]
    con.print(f"[bold]run[/bold] {res.run_dir}: radiomics elastic net on ROI {roi}, endpoint {endpoint}")
    con.print("patients train/val/test: " + " / ".join(
        f"{sp[k]['patients']} ({sp[k]['label_1']} positive)" for k in ("train", "val", "test"))
        + (f" / external test {sp['test_external']['patients']}" if "test_external" in sp else "")
        + f"; excluded {s['excluded']['count']}")
    f = m["features"]
    con.print(f"features {f['input']} -> {f['after_variance_filter']} (variance) -> "
              f"{f['after_correlation_filter']} (correlation) -> {f['selected']} selected; C {m['C']:g} "
              f"(validation AUC {s['val_auc']:.3f})")
    con.print(f"[bold]test AUC {res.auc:.3f}[/bold] (n = {res.n_test} patients; CIs: `npcai evaluate {res.run_dir}`)")


def register(app: typer.Typer) -> None:
    """Add ``radiomics extract|train`` to the root app."""
    app.add_typer(radiomics_app)
