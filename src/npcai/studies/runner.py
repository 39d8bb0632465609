"""Run a study: ingest (optional) -> ROI caches -> training runs -> ensembles -> statistics ->
Grad-CAM -> the HTML report, through the same library functions as the CLI commands.

Folder written (``OUT``)::

    OUT/study.yaml          the resolved design (preset and overrides applied)
    OUT/cohort/             the ingested cohort when the study starts from an export
    OUT/runs/<step>/        one `npcai train` run folder per step (subset__roi__backbone__unit)
    OUT/runs/<ensemble>/    soft-voting ensembles (001)
    OUT/runs/<subset>__<roi>__radiomics-elasticnet__patient/   the radiomics baseline (``radiomics:``)
    OUT/steps/<step>.json   what each finished step was made from (its hash) and how long it took
    OUT/explain/<step>/     Grad-CAM overlays, montages and localisation tables
    OUT/report/             report.html, tables/*.csv, figures/*.png

Reuse: a step whose ``steps/<step>.json`` hash matches the resolved step (cohort, ROI
parameters, backbone, unit, training options, split source) is not trained again, so a
study can be re-run after adding a backbone, and an interrupted study continues where it
stopped. With ``resume=True`` an interrupted *training run* also continues from its last
checkpoint instead of starting over.

Every run of a subset shares the split of that subset's first run (``split_from``), so all
comparisons (DeLong) are paired on the same test patients.

Examples:
    >>> result = run_study("peritumoral", cohort="cohort", out="study", preset="fast")  # doctest: +SKIP
    >>> result.report                                                                 # doctest: +SKIP
    PosixPath('study/report/report.html')
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text, check_output_path, file_sha256, mark_output
from npcai.progress import track
from npcai.studies.executors import ExecutorSpec, parse_executor, run_jobs, threads_per_step
from npcai.studies.schema import ResolvedStudy, Step, load_study

__all__ = ["StudyResult", "run_study", "resolve_study", "plan_study"]

log = logging.getLogger(__name__)


@dataclass
class StudyResult:
    """What :func:`run_study` made: the report path, one results row per evaluated model,
    the step log (trained or reused, seconds) and the total time."""

    out: Path
    report: Path
    results: pd.DataFrame
    steps: pd.DataFrame
    seconds: float
    findings: list[str] = field(default_factory=list)


def resolve_study(study: str | Path, preset: str | None = None, **overrides) -> ResolvedStudy:
    """Load a shipped study (or a YAML path) and apply the preset and overrides (the keyword
    arguments of :meth:`npcai.studies.schema.Study.resolve`: backbones, epochs, size,
    pretrained, folds, rois, endpoint, sequences, members).

    ``preset=None`` means ``paper`` when the study defines it, else the YAML as written.
    """
    s = load_study(study)
    if preset is None and "paper" in s.presets:
        preset = "paper"
    return s.resolve(preset, **overrides)


def plan_study(resolved: ResolvedStudy) -> pd.DataFrame:
    """The steps a study will run, as a table (for ``npcai study run --dry-run`` and tests)."""
    rows = [{"step": s.key, "subset": s.subset.name, "roi": s.roi.name, "variant": s.roi.variant,
             "region": s.roi.region, "slices": s.roi.slices, "timepoint": s.roi.timepoint,
             "size": resolved.roi_params(s.roi)["size"], "backbone": s.backbone, "unit": s.unit,
             "roi_cache": resolved.roi_cache_name(s.roi)}
            for s in resolved.steps()]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- the run
def run_study(study: str | Path | ResolvedStudy, *, out: str | Path, cohort: str | Path | None = None,
              export: str | Path | None = None, clinical: str | Path | None = None,
              contours: str | Path | None = None, preset: str | None = None,
              backbones: list[str] | None = None, epochs: int | None = None,
              pretrained: bool | None = None, weights: str | Path | None = None,
              resume: bool = False, explain: bool = True, executor: ExecutorSpec | str | None = None,
              threads: int | None = None) -> StudyResult:
    """Run every step of a study and write its report.

    Args:
        study: a shipped study name (peritumoral, prepost, residual, metastasis), the path of
            a study YAML, or an already resolved study.
        out: the study folder (created; finished steps inside it are reused).
        cohort: an ingested cohort folder; or give ``export`` and ``clinical`` to ingest
            first into ``out/cohort``.
        contours: contour folder of the export (default: ``EXPORT/contours`` when present).
        preset: ``paper`` or ``fast`` (see the study YAML).
        backbones, epochs, pretrained: override the preset.
        weights: local pretrained weights for the backbone(s), passed to training.
        resume: continue interrupted training runs from their last checkpoint.
        explain: run Grad-CAM on the study's chosen runs.
        executor: where the training steps run: ``local`` (default, one after another),
            ``local:N`` (N processes) or ``slurm`` (a job array; see
            :mod:`npcai.studies.executors`), as text or an :class:`ExecutorSpec`; None: the
            study's ``cluster:`` block.
        threads: torch threads per step (default: the free cores, shared among ``local:N``
            processes; a SLURM task's CPUs). Same seed and thread count give the same tables.

    Returns:
        :class:`StudyResult`.

    Raises:
        NpcaiError: bad study, cohort or export (one line naming it).
    """
    t0 = time.perf_counter()
    resolved = study if isinstance(study, ResolvedStudy) else \
        resolve_study(study, preset, backbones=backbones, epochs=epochs, pretrained=pretrained)
    out = Path(out)
    inside = cohort is not None and (out / "study.yaml").is_file() and \
        Path(cohort).resolve() == (out / "cohort").resolve()             # re-running on the study's own ingest
    check_output_path(out, [None if inside else cohort, export, clinical, contours, weights])
    clinical = _check_sources(cohort, export, clinical)   # before OUT is created
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out)
    atomic_write_text(out / "study.yaml", yaml.safe_dump(resolved.to_dict(), sort_keys=False))

    cohort_dir = _cohort(out, cohort, export, clinical, contours)
    _check_endpoint(cohort_dir, resolved)

    roi_names = _build_rois(cohort_dir, resolved)
    if executor is None:
        spec = resolved.study.cluster.executor_spec()      # the study's cluster: block (default local)
    else:
        spec = parse_executor(executor) if isinstance(executor, str) else executor
    if spec.log_dir is None:
        spec = dataclasses.replace(spec, log_dir=out / "slurm")
    step_log = _train_steps(cohort_dir, out, resolved, roi_names, weights=weights, resume=resume,
                            executor=spec, threads=threads)
    step_log += _radiomics_steps(cohort_dir, out, resolved, roi_names, step_log)
    ens_log = _ensembles(out, resolved)

    from npcai.studies.analysis import analyse_study

    analysis = analyse_study(cohort_dir, out, resolved, step_log + ens_log, explain=explain)
    seconds = time.perf_counter() - t0
    from npcai.report.study import build_report

    steps = pd.DataFrame(step_log + ens_log)
    report = build_report(out, cohort_dir, resolved, analysis, steps, seconds)
    return StudyResult(out=out, report=report, results=analysis.results, steps=steps,
                       seconds=seconds, findings=analysis.findings)


# ---------------------------------------------------------------------------- cohort
def _check_sources(cohort, export, clinical) -> Path | None:
    """Check that the study has one readable source; returns the clinical file of an export."""
    if (cohort is None) == (export is None):
        raise NpcaiError("give either --cohort COHORT or --export DIR --clinical FILE (not both)")
    if cohort is not None:
        from npcai.cohort.model import Cohort

        Cohort.load(cohort)
        return None
    export = Path(export)
    if not export.is_dir():
        raise NpcaiError(f"{export}: export folder not found")
    if clinical is None:
        default = export / "clinical.csv"
        if not default.is_file():
            raise NpcaiError(f"{export}: no --clinical FILE given and no clinical.csv in the export")
        clinical = default
    return Path(clinical)


def _cohort(out: Path, cohort, export, clinical, contours) -> Path:
    clinical = _check_sources(cohort, export, clinical)
    if cohort is not None:
        return Path(cohort)
    export = Path(export)
    target = out / "cohort"
    if (target / "cohort.json").is_file():
        log.info("reusing the cohort ingested earlier: %s", target)
        return target
    if contours is None and (export / "contours").is_dir():
        contours = export / "contours"
        log.info("using the export's contours: %s", contours)
    from npcai.cohort.ingest import ingest

    source = export / "dicom" if (export / "dicom").is_dir() else export
    ingest(source, clinical=clinical, out=target, contours=contours)
    return target


def _check_endpoint(cohort_dir: Path, resolved: ResolvedStudy) -> None:
    """Fail before any training when the cohort lacks the endpoint or a subset is empty."""
    from npcai.cohort.endpoints import endpoint_labels, filter_patients
    from npcai.cohort.model import Cohort

    clinical = Cohort.load(cohort_dir).clinical()
    for sub in resolved.study.subsets:
        labels = endpoint_labels(filter_patients(clinical, sub.where), resolved.study.endpoint).labels
        if labels.nunique() < 2:
            raise NpcaiError(f"{cohort_dir}/clinical.csv: study {resolved.study.name}, subset {sub.name}: "
                             f"endpoint {resolved.study.endpoint} has {len(labels)} labelled patients of a "
                             f"single class; a classifier needs both classes")


# ---------------------------------------------------------------------------- ROI caches
def _build_rois(cohort_dir: Path, resolved: ResolvedStudy) -> dict[str, str]:
    from npcai.imaging.roi_cache import build_roi

    names = {}
    for roi in track(resolved.study.rois, "ROI datasets"):
        name = resolved.roi_cache_name(roi)
        params = resolved.roi_params(roi)
        build_roi(cohort_dir, name, params.pop("variant"), **params)
        names[roi.name] = name
    return names


# ---------------------------------------------------------------------------- training
def _cohort_hash(cohort_dir: Path) -> str:
    return file_sha256(Path(cohort_dir) / "cohort.json")


def _design(training) -> dict[str, Any]:
    """The training options that make a step's inputs: all but where it computes (the device
    options, like the thread count, are recorded in each run but do not make a finished step stale)."""
    from npcai.models.devices import DeviceOptions

    devices = set(DeviceOptions.__dataclass_fields__)
    return {k: v for k, v in training.model_dump().items() if k not in devices}


def _step_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _roi_input_hash(cohort_dir: Path, roi_name: str) -> str:
    from npcai.imaging.roi_cache import RoiDataset

    return RoiDataset.open(cohort_dir, roi_name).input_hash


def _finished(run_dir: Path) -> bool:
    from npcai.runs import is_finished

    return is_finished(run_dir)


def _train_steps(cohort_dir: Path, out: Path, resolved: ResolvedStudy, roi_names: dict[str, str], *,
                 weights, resume: bool, executor: ExecutorSpec | None = None,
                 threads: int | None = None) -> list[dict[str, Any]]:
    """Train every step not finished with the same inputs, in two waves through ``executor``:
    first the first run of each subset (it draws the subset's split or folds), then every
    other run (they reuse that split, so they are independent of each other)."""
    from npcai.studies.backend import train_step

    s = resolved.study
    executor = executor or parse_executor("local")
    step_threads = threads_per_step(executor, threads)
    steps = resolved.steps()
    first_of_subset: dict[str, Path] = {}
    plans = []
    for step in steps:
        run_dir = out / "runs" / step.key
        split_from = first_of_subset.setdefault(step.subset.name, run_dir)
        split_from = None if split_from == run_dir else split_from
        payload = {"cohort": _cohort_hash(cohort_dir), "roi": _roi_input_hash(cohort_dir, roi_names[step.roi.name]),
                   "backbone": step.backbone, "unit": step.unit, "training": _design(resolved.training(step.roi)),
                   "split": s.split.model_dump(), "endpoint": s.endpoint, "where": step.subset.where,
                   "split_from": split_from.name if split_from else None,
                   "weights": str(weights) if weights else None}
        digest = _step_hash(payload)
        marker = out / "steps" / f"{step.key}.json"
        previous = json.loads(marker.read_text()) if marker.is_file() else {}
        reused = _finished(run_dir) and previous.get("hash") == digest
        job = {"threads": step_threads, "cohort_dir": cohort_dir, "roi": roi_names[step.roi.name],
               "endpoint": s.endpoint, "backbone": step.backbone, "out": run_dir, "unit": step.unit,
               "training": resolved.training(step.roi), "split": s.split, "split_from": split_from, "where": step.subset.where,
               "weights": weights, "resume": resume and run_dir.exists()}
        plans.append({"step": step, "run_dir": run_dir, "payload": payload, "digest": digest, "marker": marker,
                      "reused": reused, "seconds": previous.get("seconds", 0.0), "job": job, "first": split_from is None})
    rows: dict[str, dict[str, Any]] = {}
    for wave in ([p for p in plans if p["first"]], [p for p in plans if not p["first"]]):
        for p in wave:
            if p["reused"]:
                log.info("step %s: finished earlier with the same inputs; reusing %s", p["step"].key, p["run_dir"])
            elif p["run_dir"].exists() and not resume:
                log.info("step %s: inputs changed or run incomplete; training again", p["step"].key)
        todo = [p for p in wave if not p["reused"]]
        done = run_jobs(train_step, [p["job"] for p in todo], executor,
                        description=f"Training {len(todo)} runs") if todo else None
        jobs = {i: r for i, r in enumerate(done.records)} if done else {}
        for i, p in enumerate(todo):
            p["seconds"] = float(done.results[i])
            atomic_write_text(p["marker"], json.dumps({"step": p["step"].key, "hash": p["digest"],
                                                       "payload": p["payload"], "seconds": p["seconds"],
                                                       "threads": step_threads, "executor": executor.kind,
                                                       "slurm_job": jobs[i].job_id if i in jobs else None,
                                                       "slurm_log": str(jobs[i].stdout) if i in jobs else None},
                                                      indent=1, default=str))
        for p in wave:
            row = _step_row(p["step"], p["run_dir"], "reused" if p["reused"] else "trained", p["seconds"])
            rows[p["step"].key] = row
    return [rows[p["step"].key] for p in plans]


def _step_row(step: Step, run_dir: Path, status: str, seconds: float) -> dict[str, Any]:
    return {"step": step.key, "source": "run", "subset": step.subset.name, "roi": step.roi.name,
            "backbone": step.backbone, "unit": step.unit, "status": status,
            "seconds": round(float(seconds), 1), "run": str(run_dir)}


def _radiomics_steps(cohort_dir: Path, out: Path, resolved: ResolvedStudy, roi_names: dict[str, str],
                     step_log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The radiomics baseline of every subset and radiomics ROI (:mod:`npcai.radiomics`), on the
    split or folds of the subset's first run (paired with every deep model); reused while its
    inputs (features, that split, the options) are unchanged."""
    from npcai.radiomics.extractor import package_version
    from npcai.radiomics.train import MODEL_NAME, RadiomicsConfig, train_radiomics
    from npcai.runs import SPLIT

    s = resolved.study
    rois = resolved.radiomics_rois()
    if not rois:
        return []
    first = {}
    for row in step_log:
        if row["source"] == "run":
            first.setdefault(row["subset"], Path(row["run"]))
    rows = []
    for sub in s.subsets:
        split_from = first.get(sub.name)
        if split_from is None:
            continue
        for roi in track(rois, f"Radiomics baseline ({sub.name})"):
            key = f"{sub.name}__{roi.name}__{MODEL_NAME}__patient"
            run_dir = out / "runs" / key
            cfg = RadiomicsConfig(cohort=str(cohort_dir), roi=roi_names[roi.name], endpoint=s.endpoint,
                                  where=sub.where, seed=s.split.seed, val_fraction=s.split.val_fraction,
                                  test_fraction=s.split.test_fraction, split_from=str(split_from),
                                  stratify_centre=s.split.stratify_centre, l1_ratio=s.radiomics.l1_ratio,
                                  bin_count=s.radiomics.bin_count)
            payload = {"cohort": _cohort_hash(cohort_dir), "roi": _roi_input_hash(cohort_dir, roi_names[roi.name]),
                       "split": file_sha256(split_from / SPLIT), "options": dataclasses.asdict(cfg) | {"cohort": None,
                       "split_from": split_from.name}, "package": package_version()}
            digest = _step_hash(payload)
            marker = out / "steps" / f"{key}.json"
            previous = json.loads(marker.read_text()) if marker.is_file() else {}
            t = time.perf_counter()
            if _finished(run_dir) and previous.get("hash") == digest:
                status, seconds = "reused", previous.get("seconds", 0.0)
            else:
                train_radiomics(cfg, run_dir, overwrite=True)
                status, seconds = "trained", time.perf_counter() - t
                atomic_write_text(marker, json.dumps({"step": key, "hash": digest, "payload": payload,
                                                      "seconds": seconds}, indent=1, default=str))
            rows.append({"step": key, "source": "radiomics", "subset": sub.name, "roi": roi.name,
                         "backbone": MODEL_NAME, "unit": "patient", "status": status,
                         "seconds": round(float(seconds), 1), "run": str(run_dir)})
    return rows


def _ensembles(out: Path, resolved: ResolvedStudy) -> list[dict[str, Any]]:
    from npcai.runs import PATIENTS
    from npcai.studies.backend import ensemble_runs

    s = resolved.study
    rows = []
    for ens in s.ensembles:
        for sub in s.subsets:
            for bb in s.backbones:
                for unit in s.units:
                    members = [out / "runs" / f"{sub.name}__{r}__{bb}__{unit}" for r in ens.rois]
                    key = f"{sub.name}__{ens.name}__{bb}__{unit}"
                    run_dir = out / "runs" / key
                    digest = _step_hash({m.name: file_sha256(m / PATIENTS) for m in members})
                    marker = out / "steps" / f"{key}.json"
                    status, t = "reused", time.perf_counter()
                    if not (marker.is_file() and _finished(run_dir)
                            and json.loads(marker.read_text()).get("hash") == digest):
                        ensemble_runs(members, run_dir)
                        status = "trained"
                        atomic_write_text(marker, json.dumps({"step": key, "hash": digest}, indent=1))
                    rows.append({"step": key, "source": "ensemble", "subset": sub.name, "roi": ens.name,
                                 "backbone": bb, "unit": unit, "status": status,
                                 "seconds": round(time.perf_counter() - t, 1), "run": str(run_dir)})
    return rows

