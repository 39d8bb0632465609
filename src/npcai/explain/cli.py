"""``npcai explain``: Grad-CAM overlays of a run's patients and where the attention goes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "explain"]


def _split_list(value: Optional[str]) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def explain(
    run: Path = typer.Argument(..., help="A run folder written by `npcai train` (with --folds: each patient is "
                                         "explained by the fold model that held it out)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: overlays/, montages, localisation tables."),
    patients: Optional[str] = typer.Option(None, "--patients", "-p",
                                           help="Comma-separated patient pseudonyms (P0001,P0002); "
                                                "default: the --top highest-risk patients of --split."),
    top: int = typer.Option(4, "--top", help="How many highest predicted-risk patients to explain "
                                             "(ignored with --patients)."),
    split: Optional[str] = typer.Option(None, "--split", help="Split the --top patients come from: train, val or "
                                                               "test (default test; oof, every patient, for a "
                                                               "cross-validated run)."),
    method: str = typer.Option("gradcam", "--method", help="CAM method: gradcam, gradcam++, scorecam "
                                                           "(slow: one forward pass per channel) or layercam."),
    target: str = typer.Option("high-risk", "--target", help="high-risk: evidence for label 1 (the logit); "
                                                             "predicted: evidence for each slice's predicted class."),
    runs: Optional[str] = typer.Option(None, "--runs", help="Comma-separated further run folders (e.g. other "
                                                            "ROI variants): one panel per run for each patient."),
    max_slices: Optional[int] = typer.Option(8, "--max-slices",
                                             help="At most N slices per patient (largest lesion area first); "
                                                  "0 for all."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    target_layer: Optional[str] = typer.Option(None, "--target-layer",
                                               help="Grad-CAM layer by module name (e.g. layer3); default: the "
                                                    "deepest stage whose map is at least 7x7 at the run's input "
                                                    "size."),
) -> None:
    """Grad-CAM of a trained run: overlays with contours, per-patient montages, and the share of
    CAM energy inside the tumour, the nodes, distance bands around them and the far field
    (vs uniform attention; on a phantom also on the planted signal band)."""
    from rich.console import Console
    from rich.table import Table

    from npcai.explain.explain import explain_run
    from npcai.explain.survival import is_survival_run
    from npcai.progress import show_progress

    if is_survival_run(run):
        return _explain_survival(run, out, top=top, split=split or "test", max_slices=max_slices,
                                 overwrite=overwrite)
    with show_progress():
        res = explain_run(run, out, patients=_split_list(patients) or None, top=top, split=split,
                          method=method, target=target, runs=_split_list(runs),
                          max_slices=max_slices or None, overwrite=overwrite, target_layer=target_layer)
    console = Console()
    console.print(f"Explained {len(res.patients)} patients ({', '.join(res.patients)}) with {method}, "
                  f"target {target}; layers: " + ", ".join(f"{k}:{v}" for k, v in res.target_layers.items()))
    table = Table(title="Mean share of CAM energy over patients (uniform attention)")
    table.add_column("region")
    runs = list(dict.fromkeys(res.summary["run"]))
    for run_name in runs:
        table.add_column(str(run_name), justify="right")
    show = [("px", "tumour"), ("px", "nodes"), ("px", "band_0_5px"), ("px", "band_5_10px"),
            ("px", "band_10_20px"), ("px", "band_20_40px"), ("px", "band_gt40px"), ("mm", "far"),
            ("signal", "signal_band")]
    by_key = res.summary.set_index(["run", "scale", "region"])
    for scale, region in show:
        if not (res.summary["region"] == region).any():
            continue
        cells = []
        for run_name in runs:
            key = (run_name, scale, region)
            if key not in by_key.index:
                cells.append("-")
                continue
            r = by_key.loc[key]
            cells.append(f"{r.share_mean:.2f} ({r.uniform_mean:.2f})")
        label = {"far": "far (>20 mm)", "signal_band": "phantom signal band"}.get(region, region)
        table.add_row(label, *cells)
    console.print(table)
    console.print(f"  {res.out} ({len(res.files)} files)")


_SHOW = [("px", "tumour"), ("px", "nodes"), ("px", "band_0_5px"), ("px", "band_5_10px"),
         ("px", "band_10_20px"), ("px", "band_20_40px"), ("px", "band_gt40px"), ("mm", "far"),
         ("signal", "signal_band")]


def _explain_survival(run: Path, out: Path, *, top: int, split: str, max_slices: Optional[int],
                      overwrite: bool) -> None:
    """A survival run: Grad-CAM of the prognostic and predictive heads (study 004 Fig. D7)."""
    from rich.console import Console
    from rich.table import Table

    from npcai.explain.survival import explain_survival_run
    from npcai.progress import show_progress

    with show_progress():
        res = explain_survival_run(run, out, top=top, split=split, max_slices=max_slices or None,
                                   overwrite=overwrite)
    console = Console()
    console.print(f"Grad-CAM of both heads on {split} patients; layers {', '.join(res.target_layers)}; groups: "
                  + "; ".join(f"{k} {len(v)}" for k, v in res.groups.items()))
    table = Table(title="Mean share of CAM energy over patients (uniform attention)")
    table.add_column("region")
    for key in res.groups:
        table.add_column(key, justify="right")
    by_key = res.summary.set_index(["run", "scale", "region"])
    for scale, region in _SHOW:
        if not (res.summary["region"] == region).any():
            continue
        cells = [f"{by_key.loc[(k, scale, region)].share_mean:.2f} ({by_key.loc[(k, scale, region)].uniform_mean:.2f})"
                 if (k, scale, region) in by_key.index else "-" for k in res.groups]
        table.add_row({"far": "far (>20 mm)", "signal_band": "phantom signal band"}.get(region, region), *cells)
    console.print(table)
    console.print(f"  {res.out} ({len(res.files)} files)")


def register(app: typer.Typer) -> None:
    """Add ``npcai explain`` to the root app."""
    app.command("explain")(explain)
