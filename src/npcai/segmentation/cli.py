"""``npcai segment train|evaluate|compare|predict|overlay``: U-Net / DeepLabV3 on the cohort's contours."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "segment_app"]

segment_app = typer.Typer(name="segment", no_args_is_help=True,
                          help="Segment tumour and nodes (U-Net, DeepLabV3): train, evaluate, compare, "
                               "predict automatic masks, draw overlays.")


def _console():
    from rich.console import Console

    return Console()


def _set_threads(threads: int | None) -> None:
    from npcai.threads import configure_threads

    configure_threads(threads)


def _fmt(d: dict) -> str:
    if d.get("estimate") is None:
        return "n/a"
    if d.get("low") is None:
        return f"{d['estimate']:.3f}"
    return f"{d['estimate']:.3f} ({d['low']:.3f}-{d['high']:.3f})"


@segment_app.command("train")
def train(
    cohort: Path = typer.Argument(..., help="An ingested cohort folder (from `npcai ingest`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write (SEGRUN)."),
    arch: str = typer.Option("unet", help="Architecture: unet or deeplabv3."),
    encoder: str = typer.Option("resnet34", help="Encoder: an smp name (resnet34, resnet18, efficientnet-b0) "
                                                 "or a timm model as tu-<name>."),
    encoder_depth: int = typer.Option(5, help="Encoder stages used (5 as in the papers; 3 = a light model)."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained",
                                              help="ImageNet encoder weights from the model hub, or random "
                                                   "initialisation. One of --pretrained, --weights, "
                                                   "--no-pretrained is required."),
    weights: Optional[Path] = typer.Option(None, help="Local weights file (segmenter or encoder state dict)."),
    optimizer: str = typer.Option("rmsprop", help="rmsprop (the papers) or adam."),
    lr: float = typer.Option(1e-3, help="Initial learning rate."),
    batch_size: int = typer.Option(32, help="Slices per batch."),
    epochs: Optional[int] = typer.Option(None, help="Maximum epochs (default 40; with --resume: the new maximum)."),
    patience: int = typer.Option(10, help="Early stopping: epochs without a better validation Dice."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop training after this many minutes (CPU budget)."),
    size: int = typer.Option(256, help="Model grid in px (multiple of 32); slices are padded square and resized."),
    labels: str = typer.Option("tumour,nodes", help="Labels to segment: tumour,nodes / tumour / nodes."),
    sequence: Optional[str] = typer.Option(None, help="Scans to train on (default T1c for MR, CT for CT)."),
    timepoint: str = typer.Option("pre", help="pre, post or all."),
    normalise: Optional[str] = typer.Option(None, help="Per-scan normalisation (default robust for MR, "
                                                       "window:40,400 for CT); see `npcai roi build --help`."),
    split_seed: int = typer.Option(0, help="Seed of the patient split (test 1/5, validation 1/5 of the rest)."),
    seed: int = typer.Option(0, help="Seed of weights initialisation and batch order."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Left-right flips and intensity jitter."),
    spatial_augment: bool = typer.Option(False, "--spatial-augment/--no-spatial-augment",
                                         help="Also rotate (+-15 deg), scale (0.85-1.15) and shift (+-8%) each "
                                              "training slice and its labels at random."),
    context_slices: int = typer.Option(0, "--context-slices", help="2.5D input: this many neighbour slices "
                                       "each side as extra channels (edge slices repeated); 0 = one slice. "
                                       "Saved in the run; evaluate and predict build the same input."),
    negative_fraction: float = typer.Option(0.0, "--negative-fraction", help="Share of each epoch's training "
                                            "slices drawn (afresh each epoch) from slices WITHOUT the target, "
                                            "so the model learns to leave them empty; 0 = only slices with the "
                                            "target (the papers). With > 0 validation also scores every slice "
                                            "without the target (a false alarm counts as Dice 0)."),
    crop_mm: Optional[float] = typer.Option(None, "--crop-mm", help="The network sees the centred square of "
                                            "this side (mm) of each slice, at the model grid --size; outside "
                                            "it evaluate/predict write background. Default: the whole slice."),
    min_component: str = typer.Option("10x10", "--min-component", help="Post-processing saved in the run "
                                      "(evaluate/predict apply it): drop per-slice components smaller than "
                                      "HxW px; 0 keeps all."),
    keep_largest_3d: bool = typer.Option(False, "--keep-largest-3d/--no-keep-largest-3d",
                                         help="Post-processing saved in the run: keep only the largest 3D "
                                              "connected component of each label (one target such as a PTV; "
                                              "not for several separate nodes)."),
    accelerator: str = typer.Option("auto", "--accelerator", help="auto (a CUDA GPU when torch sees one, "
                                    "else the CPU), cpu or gpu."),
    devices: int = typer.Option(1, "--devices", help="Devices per node; more than one trains with DDP (one "
                                "process each; --batch-size per device; validation Dice over all ranks' slices)."),
    precision: str = typer.Option("32", "--precision", help="32, 16-mixed (GPU only) or bf16-mixed."),
    strategy: str = typer.Option("auto", "--strategy", help="auto (DDP when more than one device or node) or ddp."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Machines taking part in DDP."),
    resume: bool = typer.Option(False, "--resume", help="Continue an unfinished run in --out from last.ckpt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: the cores free to this "
                                                     "process; 1 is fastest on a busy shared machine)."),
) -> None:
    """Train a segmenter on the slices with tumour or nodes; early stopping on validation Dice."""
    _set_threads(threads)
    import logging

    from npcai.errors import NpcaiError
    from npcai.progress import show_progress
    from npcai.segmentation.train import train_segmenter

    # Lightning resets its loggers to INFO on import (after the CLI configured logging): keep it quiet
    if logging.getLogger().level > logging.DEBUG:
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)

    if not resume and weights is None and pretrained is None:
        raise NpcaiError("segment train: say how to initialise the encoder: --pretrained (model hub), "
                         "--weights PATH (local file) or --no-pretrained")
    with show_progress():
        run = train_segmenter(cohort, out, resume=resume, overwrite=overwrite, arch=arch, encoder=encoder,
                              encoder_depth=encoder_depth, pretrained=bool(pretrained),
                              weights=str(weights) if weights else None, optimizer=optimizer, lr=lr,
                              batch_size=batch_size, epochs=epochs, patience=patience, max_minutes=max_minutes,
                              size=size, labels=labels, sequence=sequence,
                              timepoint=None if timepoint == "all" else timepoint, normalise=normalise,
                              split_seed=split_seed, seed=seed, augment=augment, spatial_augment=spatial_augment,
                              context=context_slices,
                              negative_fraction=negative_fraction, crop_mm=crop_mm, min_component=min_component,
                              keep_largest_3d=keep_largest_3d, accelerator=accelerator,
                              devices=devices, precision=precision, strategy=strategy, num_nodes=num_nodes)
    if run.rank != 0:         # a DDP worker process: rank 0 writes and reports the run
        return
    s = run.summary
    per = ", ".join(f"{k} {v:.3f}" for k, v in s["val_dice_per_label"].items())
    _console().print(f"[bold]{s['arch']}[/] ({s['encoder']}): {s['epochs_run']} epochs, best epoch "
                     f"{s['best_epoch']}, validation Dice {s['val_dice']:.3f} ({per}); patients "
                     f"train/val/test {s['patients']['train']}/{s['patients']['val']}/{s['patients']['test']}; "
                     f"{s['seconds']:.0f} s -> {out}")


@segment_app.command("evaluate")
def evaluate(
    segrun: Path = typer.Argument(..., help="A finished run folder (from `npcai segment train`)."),
    cohort: Optional[Path] = typer.Option(None, help="The cohort, if it moved since training."),
    split: str = typer.Option("test", help="Patients to score: test (honest estimate) or val."),
    min_component: Optional[str] = typer.Option(None, help="Post-processing: drop components smaller than HxW "
                                                "px (default: the run's setting, 10x10 unless trained otherwise)."),
    keep_largest_3d: Optional[bool] = typer.Option(None, "--keep-largest-3d/--no-keep-largest-3d",
                                                   help="Keep each label's largest 3D component (default: the "
                                                        "run's setting)."),
    n_boot: int = typer.Option(2000, help="Bootstrap resamples (over patients) for the 95% CIs."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: the cores free to this "
                                                     "process; 1 is fastest on a busy shared machine)."),
) -> None:
    """Dice per slice and per patient (tumour, nodes, both) with 95% CI, HD95, volume error, Dice-per-epoch figure."""
    _set_threads(threads)
    from rich.table import Table

    from npcai.progress import show_progress
    from npcai.segmentation.evaluate import evaluate_segrun

    with show_progress():
        ev = evaluate_segrun(segrun, cohort=cohort, split=split, min_component=min_component,
                             keep_largest_3d=keep_largest_3d, n_boot=n_boot)
    m = ev.metrics
    t = Table(title=f"{m['arch']} ({m['encoder']}) on {m['n_patients']} {split} patients, {m['n_slices']} slices")
    for col in ("region", "Dice per slice", "Dice per patient", "HD95 (mm)", "|volume error| (rel.)"):
        t.add_column(col)
    for region in m["slice"]:
        p = m["patient"][region]
        t.add_row(region, _fmt(m["slice"][region]["dice"]), _fmt(p["dice"]), _fmt(p["hd95_mm"]),
                  _fmt(p["abs_volume_rel_error"]))
    con = _console()
    con.print(t)
    con.print(f"95% CIs: patient bootstrap. Written: {ev.path}/metrics.json, slices.csv, patients.csv, "
              f"dice_per_epoch.png")


@segment_app.command("compare")
def compare(
    segrun1: Path = typer.Argument(..., help="First run folder."),
    segrun2: Path = typer.Argument(..., help="Second run folder (same cohort and split seed)."),
    target: str = typer.Option("mean", help="Dice compared: mean (of the labels), tumour, nodes or both."),
    out: Optional[Path] = typer.Option(None, help="Also write the comparison as JSON here."),
    n_boot: int = typer.Option(2000, help="Bootstrap resamples for the 95% CIs."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: the cores free to this "
                                                     "process; 1 is fastest on a busy shared machine)."),
) -> None:
    """Both runs on the same test patients: mean per-patient Dice, paired Wilcoxon test, the better one."""
    _set_threads(threads)
    from npcai.progress import show_progress
    from npcai.segmentation.compare import compare_segruns

    with show_progress():
        r = compare_segruns(segrun1, segrun2, target=target, n_boot=n_boot, out=out)
    con = _console()
    con.print(f"{r.n_patients} common test patients, per-patient Dice ({target}):")
    con.print(f"  {r.run_a}: {_fmt(r.dice_a)}")
    con.print(f"  {r.run_b}: {_fmt(r.dice_b)}")
    p = "n/a (identical)" if r.p_value is None else f"{r.p_value:.3g}"
    con.print(f"  difference (2nd - 1st): {_fmt(r.difference)}; {r.test}: p = {p}")
    verdict = "significantly" if r.significant else "not significantly (p >= 0.05)"
    con.print(f"[bold]better: {r.better}[/] ({verdict} better)")


@segment_app.command("predict")
def predict(
    cohort: Path = typer.Argument(..., help="The cohort to segment (its cohort.json is updated)."),
    model: Path = typer.Option(..., "--model", "-m", help="A finished segmentation run folder (SEGRUN)."),
    sequence: Optional[str] = typer.Option(None, help="Scans to segment (default: the model's sequence)."),
    timepoint: str = typer.Option("all", help="pre, post or all."),
    min_component: Optional[str] = typer.Option(None, help="Drop per-slice components smaller than HxW px "
                                                "(default: the run's setting, 10x10 as in study 000)."),
    keep_largest_3d: Optional[bool] = typer.Option(None, "--keep-largest-3d/--no-keep-largest-3d",
                                                   help="Keep each label's largest 3D component (default: the "
                                                        "run's setting)."),
    batch_size: int = typer.Option(16, help="Slices per forward pass."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: the cores free to this "
                                                     "process; 1 is fastest on a busy shared machine)."),
) -> None:
    """Write masks/<scan>_auto.nii.gz on each scan's own grid and record provenance in cohort.json."""
    _set_threads(threads)
    from npcai.progress import show_progress
    from npcai.segmentation.predict import predict_masks

    with show_progress():
        rep = predict_masks(cohort, model, sequence=sequence, timepoint=None if timepoint == "all" else timepoint,
                            min_component=min_component, keep_largest_3d=keep_largest_3d,
                            batch_size=batch_size)
    _console().print(f"{rep['scans']} scans ({rep['slices']} slices) segmented with "
                     f"{rep['provenance']['arch']}: tumour found in {rep['with_tumour']}, nodes in "
                     f"{rep['with_nodes']}; masks in {cohort}/masks/*_auto.nii.gz")


@segment_app.command("overlay")
def overlay(
    cohort: Path = typer.Argument(..., help="A cohort with automatic masks (`npcai segment predict`)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    patient: Optional[str] = typer.Option(None, help="Patient id (default: the first test patient of --model)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Segmentation run, to pick a test patient."),
    slices: int = typer.Option(3, help="Number of slices shown (largest manual lesion area)."),
    timepoint: str = typer.Option("pre", help="pre or post."),
) -> None:
    """Draw automatic (dashed) vs manual (solid) contours of one patient's slices."""
    from npcai.errors import NpcaiError
    from npcai.segmentation.overlay import overlay_contours
    from npcai.segmentation.train import load_segrun

    if patient is None:
        if model is None:
            raise NpcaiError("segment overlay: give --patient ID, or --model SEGRUN to show its first test patient")
        tests = load_segrun(model, load_model=False).patients("test")
        if not tests:
            raise NpcaiError(f"{model}/split.csv: no test patients")
        patient = tests[0]
    path = overlay_contours(cohort, patient, out, n_slices=slices, timepoint=timepoint)
    _console().print(f"overlay of {patient} written to {path}")


def register(app: typer.Typer) -> None:
    """Add ``npcai segment ...`` to the root app."""
    app.add_typer(segment_app)
