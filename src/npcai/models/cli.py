"""``npcai train`` and ``npcai ensemble``: parse, call :mod:`npcai.models`, print a short summary."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from npcai.errors import NpcaiError

# CLI parameter name -> TrainConfig field (identical except where noted)
_CONFIG_PARAMS = ("cohort", "roi", "endpoint", "backbone", "unit", "optimizer", "lr", "weight_decay",
                  "schedule", "ema", "batch_size", "epochs", "patience", "dropout", "members", "size", "seed", "val_fraction",
                  "test_fraction", "split_from", "where", "test_where", "folds", "fold_seed", "aggregate", "pooling", "bag_size", "augment",
                  "num_workers", "task", "stacked", "normalise", "accelerator", "devices", "precision", "strategy",
                  "num_nodes")


def _set_threads(threads: int | None, *, recorded: int | None = None) -> int:
    """Torch threads for a training run: ``--threads``, else the count a reproduced run's
    config recorded (same seed + same threads = same numbers), else torch's own choice
    capped at the cores free to this process."""
    import torch

    from npcai.threads import available_cores, configure_threads

    if threads is None and recorded is not None:
        threads = int(recorded)
    if threads is None and torch.get_num_threads() <= available_cores():
        return torch.get_num_threads()
    return configure_threads(threads)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``ensemble`` and ``predict`` to the root app."""

    @app.command("train")
    def train_cmd(
        ctx: typer.Context,
        cohort: Optional[Path] = typer.Argument(None, help="Cohort folder (from `npcai ingest`); "
                                                "optional with --config."),
        out: Path = typer.Option(..., "--out", help="Run folder to write (config, split, predictions, checkpoints)."),
        roi: Optional[str] = typer.Option(None, "--roi", help="ROI cache name (COHORT/roi/NAME, from `npcai roi build`)."),
        endpoint: Optional[str] = typer.Option(None, "--endpoint", help="pfs-median, distant-metastasis, "
                                               "residual-tumour, or any 0/1 clinical column."),
        backbone: str = typer.Option("efficientnet_b0", "--backbone", help="Seed backbone (inception_resnet_v2, "
                                     "ecaresnet50t, efficientnet_b0, efficientnet_b3, resnet50, legacy_xception, "
                                     "seresnet50) or any timm model name."),
        unit: str = typer.Option("image", "--unit", help="image: every slice carries its patient's label; "
                                 "patient: bags of slices with mean/attention pooling (study 002)."),
        pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained", help="ImageNet weights "
                                                  "from timm's hub (default; fails offline) or random init."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Local backbone weights (state dict or "
                                               ".safetensors) instead of the hub."),
        optimizer: str = typer.Option("adam", "--optimizer", help="adam, sgd (momentum 0.9) or rmsprop."),
        lr: float = typer.Option(1e-4, "--lr", help="Learning rate."),
        weight_decay: float = typer.Option(0.0, "--weight-decay", help="L2 weight decay."),
        schedule: str = typer.Option("constant", "--schedule", help="Learning rate over the epochs: constant, "
                                     "or cosine (annealed from --lr towards 0 by the last of --epochs)."),
        ema: float = typer.Option(0.0, "--ema", help="Decay of a moving average of the weights, updated every "
                                  "step (0 = off; e.g. 0.99); validation and the saved model use the average."),
        batch_size: int = typer.Option(32, "--batch-size", help="Slices (image unit) or bags (patient unit) per step."),
        epochs: int = typer.Option(40, "--epochs", help="Maximum epochs."),
        patience: int = typer.Option(10, "--patience", help="Early stopping: epochs without a better validation AUC."),
        dropout: float = typer.Option(0.5, "--dropout", help="Dropout before the linear head."),
        members: int = typer.Option(1, "--members", help="A deep ensemble: K networks trained one after "
                                    "another with seeds SEED..SEED+K-1 on the same split, each selected at its "
                                    "own best epoch; the run predicts their mean probability (K times the time)."),
        size: Optional[int] = typer.Option(None, "--size", help="Network input side in px (default: the ROI cache's)."),
        seed: int = typer.Option(0, "--seed", help="Seed of split, shuffling, augmentation and initialisation."),
        val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of the training patients used for "
                                           "validation (model selection)."),
        test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of all patients held out for test."),
        split_from: Optional[Path] = typer.Option(None, "--split-from", help="Reuse this run's split.csv "
                                                  "(same test patients, for comparisons and ensembles)."),
        where: Optional[str] = typer.Option(None, "--where", help="Patient filter on clinical columns: "
                                            "== != < <= > >=, in [..], and/or/not, e.g. 'treatment == \"CCRT\"'."),
        test_where: Optional[str] = typer.Option(None, "--test-where", help="Patient filter whose matching "
                                                 "patients all go to the test cohort (split test_external) and "
                                                 "none to training or validation, e.g. 'centre != \"C1\"'."),
        folds: Optional[int] = typer.Option(None, "--folds", help="Patient-level stratified K-fold "
                                            "cross-validation: OUT/folds/fold1..K and out-of-fold predictions "
                                            "of every patient (no test split)."),
        fold_seed: int = typer.Option(0, "--fold-seed", help="Seed of the fold assignment (--folds)."),
        folds_from: Optional[Path] = typer.Option(None, "--folds-from", help="Reuse the folds of this "
                                                  "cross-validated run (paired comparisons)."),
        aggregate: str = typer.Option("mean", "--aggregate", help="Image unit: patient probability from slices: "
                                      "mean, max or area-weighted (tumour area)."),
        pooling: str = typer.Option("mean", "--pooling", help="Patient unit: mean or attention pooling."),
        bag_size: int = typer.Option(8, "--bag-size", help="Patient unit: slices per training bag (sampled with "
                                     "replacement when fewer)."),
        augment: bool = typer.Option(True, "--augment/--no-augment", help="Flips, small affine and intensity "
                                     "jitter on training batches."),
        num_workers: int = typer.Option(0, "--num-workers", help="DataLoader worker processes."),
        task: Optional[str] = typer.Option(None, "--task", help="binary (default: a 0/1 endpoint) or survival "
                                           "(deep Cox on a time/event endpoint such as dfs, pfs, os, dmfs; "
                                           "--unit patient; prognostic and predictive heads)."),
        stacked: Optional[bool] = typer.Option(None, "--stacked/--per-sequence", help="Survival task: one "
                                               "backbone over all sequences as channels, or one backbone per "
                                               "sequence (default, study 004)."),
        normalise: Optional[str] = typer.Option(None, "--normalise", help="histogram: learn Nyúl–Udupa "
                                                "landmarks on this run's training patients only, rebuild the "
                                                "ROI with them and keep them in the run (predict applies the "
                                                "same). Default: the ROI cache's own normalisation."),
        accelerator: str = typer.Option("auto", "--accelerator", help="auto (a CUDA GPU when torch sees one, "
                                        "else the CPU), cpu or gpu (fails in one line where none is visible)."),
        devices: int = typer.Option(1, "--devices", help="Devices per node; more than one trains with DDP (one "
                                    "process per device; --batch-size is per device). On a CPU: processes "
                                    "sharing its cores."),
        precision: str = typer.Option("32", "--precision", help="32, 16-mixed (fp16 autocast; GPU only) or "
                                      "bf16-mixed (recent GPUs and CPUs)."),
        strategy: str = typer.Option("auto", "--strategy", help="auto (DDP when more than one device or node) "
                                     "or ddp. Validation AUC / C-index is computed over all validation "
                                     "patients gathered from every process."),
        num_nodes: int = typer.Option(1, "--num-nodes", help="Machines taking part in DDP (launch the same "
                                      "command on each, e.g. with srun)."),
        config: Optional[Path] = typer.Option(None, "--config", help="Reproduce a run: read options from its "
                                              "config.yaml (options given here override)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT's checkpoints/last.ckpt "
                                    "(an interrupted run, or more --epochs)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
        mlflow: bool = typer.Option(False, "--mlflow", help="Also log metrics to MLflow (needs mlflow installed)."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: the cores "
                                              "free to this process); recorded in the run. Same seed + same "
                                              "threads + same hardware = same numbers."),
    ) -> None:
        """Train a classifier on an ROI cache and write a run folder; prints the test patients' AUC."""
        from rich.console import Console

        from npcai.models.train import TrainConfig, train
        from npcai.runs import CONFIG, read_config
        from npcai.progress import show_progress

        given = {k: v for k, v in locals().items() if k in _CONFIG_PARAMS}
        for k in ("cohort", "split_from"):
            if given[k] is not None:
                given[k] = str(given[k])
        for key in ("task", "stacked"):    # defaults of TrainConfig; a --config run keeps its own
            if given[key] is None:
                del given[key]
        if weights is not None and pretrained is not None:
            raise NpcaiError("pass exactly one of --pretrained, --weights PATH, --no-pretrained")
        recorded_threads = None
        if config is not None:
            if Path(config).name != CONFIG and not Path(config).is_dir():
                raise NpcaiError(f"--config {config}: expected a run's {CONFIG} (or its run folder)")
            cfg_doc = read_config(Path(config).parent if Path(config).name == CONFIG else config)
            if cfg_doc.kind not in ("train", "cv"):
                raise NpcaiError(f"--config {config}: not a training run's config (kind {cfg_doc.kind!r})")
            base = dict(cfg_doc.options)
            recorded_threads = (cfg_doc.raw.get("resolved") or {}).get("torch_threads")
            for k, v in given.items():
                source = ctx.get_parameter_source(k)
                if v is not None and getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT"):
                    base[k] = v
            if weights is not None or pretrained is not None:
                base["weights"] = str(weights) if weights is not None else None
                base["pretrained"] = bool(pretrained) if weights is None else False
            opts = base
        else:
            missing = [f"--{k}" if k != "cohort" else "COHORT" for k in ("cohort", "roi", "endpoint")
                       if given[k] is None]
            if missing:
                raise NpcaiError(f"npcai train: missing {', '.join(missing)} (or pass --config RUN/config.yaml)")
            opts = dict(given, weights=str(weights) if weights is not None else None,
                        pretrained=(pretrained if pretrained is not None else weights is None))
        cfg = TrainConfig.from_dict(opts)
        _set_threads(threads, recorded=recorded_threads)
        con = Console()
        if cfg.folds:
            from npcai.models.folds import train_folds

            with show_progress():
                cv = train_folds(cfg, out, resume=resume, overwrite=overwrite, mlflow=mlflow,
                                 folds_from=folds_from)
            con.print(f"[bold]run[/bold] {cv.run_dir}: {cfg.folds}-fold cross-validation, {cfg.backbone}, "
                      f"{cfg.unit} unit, endpoint {cfg.endpoint}; {cv.n_patients} patients "
                      f"({cv.n_positive} positive)")
            con.print("per-fold AUC: " + ", ".join(f"{a:.3f}" for a in cv.fold_aucs))
            con.print(f"[bold]pooled out-of-fold AUC {cv.oof_auc:.3f}[/bold] (CIs: `npcai evaluate {cv.run_dir}`)")
            return
        if folds_from is not None:
            raise NpcaiError("--folds-from needs --folds K")
        with show_progress():
            result = train(cfg, out, resume=resume, overwrite=overwrite, mlflow=mlflow)
        if result.rank != 0:      # a DDP worker process: rank 0 writes and reports the run
            return
        s = result.summary["splits"]
        if result.summary.get("task") == "survival":
            from npcai.survival.deep.report import print_train_result

            print_train_result(con, cfg, result)
            return
        con.print(f"[bold]run[/bold] {result.run_dir}: {cfg.backbone}, {cfg.unit} unit, endpoint {cfg.endpoint}")
        con.print("patients train/val/test: " + " / ".join(
            f"{s[k]['patients']} ({s[k]['label_1']} positive)" for k in ("train", "val", "test"))
            + (f" / external test {s['test_external']['patients']} ({s['test_external']['label_1']} positive)"
               if "test_external" in s else "")
            + f"; excluded {result.summary['excluded']['count']}")
        for m in result.summary.get("members", []):
            con.print(f"member seed {m['seed']}: selected epoch {m['best_epoch'] + 1} of {m['epochs_run']} "
                      f"(validation AUC {m['val_auc']:.3f})")
        if cfg.members > 1:
            con.print(f"deep ensemble of {cfg.members}: validation AUC {result.val_auc:.3f}")
        else:
            con.print(f"selected epoch {result.best_epoch + 1} of {result.epochs_run} "
                      f"(validation AUC {result.val_auc:.3f})")
        con.print(f"[bold]test AUC {result.test_auc:.3f}[/bold] (n = {result.n_test} patients; "
                  f"CIs: `npcai evaluate {result.run_dir}`)")

    @app.command("ensemble")
    def ensemble_cmd(
        runs: list[Path] = typer.Argument(..., help="Two or more run folders sharing their test patients."),
        out: Path = typer.Option(..., "--out", help="Ensemble run folder to write."),
        weights: Optional[str] = typer.Option(None, "--weights", help="Comma-separated weights, one per run "
                                              "(default equal), e.g. 0.6,0.4."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    ) -> None:
        """Soft-voting ensemble (study 001): average the runs' patient probabilities."""
        from rich.console import Console

        from npcai.models.ensemble import ensemble_runs
        from npcai.progress import show_progress

        w = None
        if weights:
            try:
                w = [float(v) for v in weights.split(",")]
            except ValueError as exc:
                raise NpcaiError(f"--weights {weights!r}: give numbers separated by commas, e.g. 0.5,0.5") from exc
            if len(w) != len(runs):
                raise NpcaiError(f"--weights {weights!r}: {len(w)} weights for {len(runs)} runs")
        with show_progress():
            result = ensemble_runs(runs, out, weights=w, overwrite=overwrite)
        Console().print(f"[bold]ensemble[/bold] {result.run_dir} of {len(runs)} runs "
                        f"(weights {', '.join(f'{x:.2f}' for x in result.weights)}): "
                        f"[bold]test AUC {result.test_auc:.3f}[/bold] (n = {result.n_test} patients)")


    @app.command("predict")
    def predict_cmd(
        run: Path = typer.Argument(..., help="A run folder (`npcai train`, also with --folds: the soft vote of "
                                             "its fold models) or an ensemble (`npcai ensemble`)."),
        cohort: Path = typer.Argument(..., help="Any ingested cohort with the sequences, timepoint and masks "
                                        "the run needs (e.g. another centre's)."),
        out: Path = typer.Option(..., "--out", help="Prediction folder to write (run-folder format, "
                                 "split = external); evaluate it with `npcai evaluate OUT`."),
        patients: Optional[str] = typer.Option(None, "--patients", help="Comma-separated pseudonyms to predict, "
                                               "e.g. P0003,P0007 (default: every patient)."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best (selected on validation) or last."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    ) -> None:
        """Apply a trained run to a cohort: rebuild its ROI input from the recorded spec (cached in
        COHORT/roi/), predict every slice and patient, write OUT (split = external). A cross-validated
        run predicts with the mean probability of its K fold models and OUT records its threshold: the
        mean of the fold models' validation thresholds."""
        from rich.console import Console

        from npcai.progress import show_progress
        from npcai.runs import predict_patients, write_predictions

        chosen = [p.strip() for p in patients.split(",") if p.strip()] if patients else None
        if patients is not None and not chosen:
            raise NpcaiError("--patients is empty; give pseudonyms separated by commas, e.g. P0003,P0007")
        try:
            with show_progress():
                preds = predict_patients(run, cohort, chosen, checkpoint=checkpoint)
                write_predictions(out, run, cohort, preds, overwrite=overwrite)
        except NpcaiError as exc:
            if "no automatic masks" in str(exc):
                raise NpcaiError(f"{exc}: `npcai segment predict {cohort} --model SEGRUN`") from exc
            raise
        p = preds.patients
        labelled = p["label"].notna()
        con = Console()
        con.print(f"[bold]predictions[/bold] {out}: {len(p)} patients of {cohort} by run {Path(run).name}"
                  + (f" ({int(labelled.sum())} with a label: {int((p['label'] == 1).sum())} positive)"
                     if labelled.any() else f" ({preds.info.get('labels') or 'no labels'})"))
        if preds.info.get("skipped"):
            con.print(f"not predicted: {len(preds.info['skipped'])} patients (see {out}/summary.json)")
        thr = preds.info.get("threshold")
        if thr is not None:
            con.print(f"{preds.info.get('vote')}; threshold {thr['value']:.4f} = {thr['source']}")
        if labelled.any():
            con.print(f"evaluate with `npcai evaluate {out}` (threshold fixed on the run's validation patients"
                      + (", the mean over its folds)" if thr is not None else ")"))
