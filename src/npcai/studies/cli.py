"""``npcai study run|init|list``: run a seed study's design on a cohort and write its report."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]

study_app = typer.Typer(help="Run the seed studies' designs (peritumoral, prepost, residual, metastasis) "
                             "and write a paper-like HTML report; `study init` fits a design to a cohort.",
                        no_args_is_help=True)


def _split_list(text: Optional[str]) -> list[str] | None:
    if not text:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


@study_app.command("run")
def run(
    study: str = typer.Argument(..., help="peritumoral (seed 000), prepost (001), residual (002), "
                                          "metastasis (003), decision (004), or the path of a study YAML."),
    cohort: Optional[Path] = typer.Option(None, "--cohort", help="An ingested cohort folder (npcai ingest)."),
    export: Optional[Path] = typer.Option(None, "--export", help="A hospital export to ingest first "
                                                                "(into OUT/cohort); use with --clinical."),
    clinical: Optional[Path] = typer.Option(None, "--clinical", help="Clinical CSV/XLSX of the export "
                                                                    "(default: EXPORT/clinical.csv)."),
    contours: Optional[Path] = typer.Option(None, "--contours", help="Contour folder of the export "
                                                                    "(default: EXPORT/contours when present)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Study folder (default: study_<STUDY>). Finished "
                                                          "steps inside it are reused."),
    preset: Optional[str] = typer.Option(None, "--preset", help="paper = the seed's settings (the default "
                                                               "when the study has it); fast = small backbones "
                                                               "and resolution for a CPU; fast-cv = fast with "
                                                               "5-fold cross-validation (peritumoral)."),
    backbones: Optional[str] = typer.Option(None, "--backbones", help="Comma-separated timm backbones, "
                                                                     "overriding the preset (e.g. resnet18,efficientnet_b0)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Override the preset's maximum epochs."),
    size: Optional[int] = typer.Option(None, "--size", min=16, help="Override the ROI and network input size (px)."),
    members: Optional[int] = typer.Option(None, "--members", min=1, max=16, help="Train every run as a deep "
                                          "ensemble of K networks (seeds S..S+K-1, each selected at its own best "
                                          "epoch; the run predicts their mean probability): K times the training."),
    folds: Optional[int] = typer.Option(None, "--folds", min=2, help="Cross-validate every run on K patient-level "
                                                                   "folds (shared by all runs) instead of one test split."),
    rois: Optional[str] = typer.Option(None, "--rois", help="Comma-separated ROI dataset names to keep "
                                                           "(e.g. original,segmented,expand20)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Override the study's endpoint "
                                                                   "(pfs-median, ... or any 0/1 clinical column)."),
    sequences: Optional[str] = typer.Option(None, "--sequences", help="Comma-separated MRI sequences (channels) "
                                                                     "of every ROI dataset, e.g. T1c,T2."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained",
                                              help="Use ImageNet weights from the timm hub (default: as the preset says)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local pretrained weights file for the "
                                                                  "backbone (offline transfer learning)."),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted training runs from their last "
                                                       "checkpoint (finished steps are always reused)."),
    explain: bool = typer.Option(True, "--explain/--no-explain", help="Run Grad-CAM on the study's chosen runs."),
    executor: Optional[str] = typer.Option(None, "--executor", help="Where the training runs go: local (one "
                                           "after another; the default), local:N (N processes sharing the cores) "
                                           "or slurm (one job array through submitit; ensembles, Grad-CAM and "
                                           "the report follow here). Default: the study's cluster: block."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Torch threads per training run "
                                          "(default: the free cores, shared among local:N processes; a SLURM "
                                          "task's CPUs). Same seed + same threads = same tables."),
    slurm_partition: Optional[str] = typer.Option(None, "--slurm-partition", help="SLURM partition (default: "
                                                  "the cluster: block's, else the cluster's default)."),
    slurm_gpus_per_task: Optional[int] = typer.Option(None, "--slurm-gpus-per-task", min=0,
                                                      help="GPUs per array task (default 0)."),
    slurm_cpus_per_task: Optional[int] = typer.Option(None, "--slurm-cpus-per-task", min=1,
                                                      help="CPUs per array task (default 2)."),
    slurm_time: Optional[int] = typer.Option(None, "--slurm-time", min=1, help="Time limit per array task, "
                                             "minutes (default 240; a task that reaches it is requeued and "
                                             "resumes from its last checkpoint)."),
    slurm_max_parallel: Optional[int] = typer.Option(None, "--slurm-max-parallel", min=1,
                                                     help="Array tasks running at once (default 32)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the steps (and with --cohort the patients "
                                                         "each run labels, excludes and loses) and exit."),
) -> None:
    """Run a study: ROI datasets x backbones x units, statistics, Grad-CAM, report."""
    from rich.console import Console
    from rich.table import Table

    from npcai.progress import show_progress
    from npcai.studies.runner import plan_study, resolve_study, run_study

    console = Console()
    from npcai.decision.design import is_decision_study

    if is_decision_study(study):
        from npcai.decision.cli_decision import run_decision_cli

        unsupported = {"--folds": folds, "--rois": rois, "--members": members}
        if executor != "local":
            unsupported["--executor"] = executor
        run_decision_cli(console, study, cohort=cohort, export=export, clinical=clinical, contours=contours,
                         out=out, preset=preset, backbones=_split_list(backbones), epochs=epochs, size=size,
                         sequences=_split_list(sequences), pretrained=pretrained, weights=weights, resume=resume,
                         threads=threads, dry_run=dry_run, endpoint=endpoint,
                         unsupported={k: v for k, v in unsupported.items() if v})
        return
    resolved = resolve_study(study, preset, backbones=_split_list(backbones), epochs=epochs,
                             pretrained=pretrained, size=size, folds=folds, rois=_split_list(rois),
                             endpoint=endpoint, sequences=_split_list(sequences), members=members)
    out = out or Path(f"study_{resolved.study.name}")
    if dry_run:
        pre = None
        if cohort is not None:
            from npcai.studies.preflight import preflight

            pre = preflight(resolved, cohort)      # refuses an absent endpoint or sequence first
        plan = plan_study(resolved)
        table = Table(title=f"{resolved.study.name} ({resolved.preset}): {len(plan)} runs")
        cols = ("step", "variant", "region", "slices", "timepoint", "size", "backbone", "unit")
        for col in cols:
            table.add_column(col)
        for _, r in plan.iterrows():
            table.add_row(*(f"{r[c]} px" if c == "size" else str(r[c]) for c in cols))
        console.print(table)
        if resolved.radiomics_rois():
            console.print(f"+ {resolved.study.radiomics.label} on "
                          f"{', '.join(r.name for r in resolved.radiomics_rois())} (features and an elastic net, on "
                          "the split of each subset's first run; seconds, no training)")
        if pre is not None:
            from npcai.studies.preflight import baseline_plan

            _print_preflight(console, resolved, pre)
            console.print(baseline_plan(resolved, cohort))
        return
    # the study's cluster: block, each option overridden by its flag when given
    spec = resolved.study.cluster.executor_spec(executor=executor, partition=slurm_partition,
                                                gpus_per_task=slurm_gpus_per_task, cpus_per_task=slurm_cpus_per_task,
                                                time=slurm_time, max_parallel=slurm_max_parallel)
    with show_progress():
        result = run_study(resolved, out=out, cohort=cohort, export=export, clinical=clinical,
                           contours=contours, weights=weights, resume=resume, explain=explain,
                           executor=spec, threads=threads)
    trained = int((result.steps["status"] == "trained").sum())
    console.print(f"[bold]{resolved.study.name}[/bold] ({resolved.preset}): {len(result.steps)} models "
                  f"({trained} trained, {len(result.steps) - trained} reused) in {result.seconds / 60:.1f} min")
    for line in result.findings:
        console.print(f"  • {line}")
    console.print(f"report: {result.report}")


def _print_preflight(console, resolved, pre) -> None:
    """The patients each run will use, exclude and lose (``--dry-run --cohort``)."""
    from rich.table import Table

    table = Table(title=f"Patients per run ({resolved.study.endpoint}; every backbone and unit uses the same)")
    heads = {"subset": "subset", "roi": "ROI", "labelled": "labelled", "label_1": "label 1",
             "lost_sequence": "lost: no sequence", "lost_mask": "lost: no mask", "trainable": "used",
             "external_test": "external test"}
    cols = [c for c in heads if c != "external_test" or resolved.study.split.test_where]
    for c in cols:
        table.add_column(heads[c])
    for _, r in pre.iterrows():
        table.add_row(*(str(r[c]) for c in cols))
    console.print(table)
    for subset, reasons in pre.groupby("subset", sort=False)["excluded"].first().items():
        console.print(f"subset {subset}: excluded (no label): {reasons}")


@study_app.command("init")
def init(
    cohort: Path = typer.Argument(..., help="An ingested cohort folder (npcai ingest)."),
    design: str = typer.Option("peritumoral", "--design", help="The shipped design to start from: peritumoral "
                               "(seed 000), metastasis (003), residual (002) or prepost (001)."),
    out: Path = typer.Option(..., "--out", help="The study YAML to write (e.g. my_study.yaml)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file (never an input)."),
) -> None:
    """Write a study YAML fitted to a cohort: its endpoint, the sequences most patients have, its
    centres (external test centre or cross-validation), its clinical covariates; commented."""
    from rich.console import Console

    from npcai.studies.init import draft_study, write_study

    console = Console()
    draft = draft_study(cohort, design)
    path = write_study(draft, out, force=force, inputs=(cohort,))
    console.print(f"[bold]{path}[/bold]: study {draft.data['name']} from design {design}, fitted to {cohort}")
    for line in draft.choices:
        console.print(f"  • {line}")
    console.print(f"next: npcai study run {path} --cohort {cohort} --dry-run")


@study_app.command("list")
def list_() -> None:
    """List the shipped studies with their presets and number of runs."""
    from rich.console import Console
    from rich.table import Table

    from npcai.studies.schema import list_studies, load_study

    table = Table(title="Shipped studies")
    for col in ("study", "seed", "endpoint", "title", "runs (paper / fast)"):
        table.add_column(col)
    from npcai.decision.design import is_decision_study, load_decision_study

    for name in list_studies():
        s = load_decision_study(name) if is_decision_study(name) else load_study(name)
        counts = " / ".join(str(len(s.resolve(p).steps())) if p in s.presets else "–" for p in ("paper", "fast"))
        table.add_row(name, s.seed_paper or "", s.endpoint, s.title, counts)
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``npcai study`` to the root app."""
    app.add_typer(study_app, name="study")
