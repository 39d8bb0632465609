"""Where a study's independent training steps run: in this process, in N local processes,
or as one SLURM job array.

A study is a fixed grid of trainings (ROI datasets x backbones x units x subsets). The
runner hands each *wave* of independent steps to an executor and waits for all of them:

- ``local`` (default): one after another in this process (today's behaviour).
- ``local:N``: N steps at a time in N worker processes (``spawn``); :func:`threads_per_step`
  gives each an equal share of this process's CPU cores.
- ``slurm``: one job array submitted through submitit; each array task is one training
  step with its own CPUs (and GPUs). A preempted or timed-out task is requeued by submitit
  and continues the run from its last checkpoint (the step is re-called with
  ``resume=True``). Job ids and log folders are logged and returned.

Each step function must be a picklable module-level callable (it is sent to another
process or node). Results come back in the order of the jobs.

Examples:
    >>> spec = parse_executor("local:2")
    >>> spec.kind, spec.workers
    ('processes', 2)
    >>> run_jobs(pow, [(2, 3), (3, 2)], spec).results          # doctest: +SKIP
    [8, 9]
"""
from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npcai.errors import NpcaiError
from npcai.threads import available_cores

__all__ = ["EXECUTOR_KINDS", "SlurmOptions", "ExecutorSpec", "JobRecord", "JobsResult", "parse_executor", "run_jobs",
           "slurm_reachable", "threads_per_step"]

log = logging.getLogger(__name__)

EXECUTOR_KINDS = ("local", "local:N", "slurm")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each array task (``sbatch`` options)."""

    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    time_minutes: int = 240
    max_parallel: int = 32

    def __post_init__(self) -> None:
        checks = [(self.gpus_per_task >= 0, "GPUs per task must be >= 0"),
                  (self.cpus_per_task >= 1, "CPUs per task must be >= 1"),
                  (self.time_minutes >= 1, "the time limit must be at least 1 minute"),
                  (self.max_parallel >= 1, "the number of parallel array tasks must be >= 1")]
        for ok, msg in checks:
            if not ok:
                raise NpcaiError(f"SLURM options: {msg}")


@dataclass(frozen=True)
class ExecutorSpec:
    """How a wave of steps is run: ``kind`` is ``local``, ``processes`` or ``slurm``."""

    kind: str = "local"
    workers: int = 1
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    log_dir: Path | None = None


@dataclass(frozen=True)
class JobsResult:
    """What :func:`run_jobs` returns: the results in job order and, for SLURM, the jobs."""

    results: list[Any]
    records: list["JobRecord"] = field(default_factory=list)


@dataclass(frozen=True)
class JobRecord:
    """One submitted SLURM array task: its job id and where its output is."""

    job_id: str
    index: int
    stdout: Path
    stderr: Path


def parse_executor(text: str, slurm: SlurmOptions | None = None, log_dir: str | Path | None = None) -> ExecutorSpec:
    """``local``, ``local:N`` or ``slurm`` -> :class:`ExecutorSpec` (one-line error otherwise)."""
    value = (text or "local").strip().lower()
    if value == "local":
        return ExecutorSpec("local", 1, slurm or SlurmOptions(), Path(log_dir) if log_dir else None)
    if value.startswith("local:"):
        n = value.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise NpcaiError(f"executor {text!r}: local:N needs a whole number of processes >= 1, e.g. local:2")
        workers = int(n)
        return ExecutorSpec("processes" if workers > 1 else "local", workers, slurm or SlurmOptions(),
                            Path(log_dir) if log_dir else None)
    if value == "slurm":
        return ExecutorSpec("slurm", 1, slurm or SlurmOptions(), Path(log_dir) if log_dir else None)
    raise NpcaiError(f"executor {text!r}: choose one of {', '.join(EXECUTOR_KINDS)}")


def slurm_reachable() -> bool:
    """True when ``sinfo`` answers (a SLURM controller is configured and up)."""
    import shutil
    import subprocess

    if shutil.which("sinfo") is None:
        return False
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def _call(fn: Callable, job: Any) -> Any:
    """``fn(**job)`` for a dict, ``fn(*job)`` for a tuple, else ``fn(job)``."""
    if isinstance(job, dict):
        return fn(**job)
    return fn(*job) if isinstance(job, tuple) else fn(job)


def threads_per_step(spec: ExecutorSpec, requested: int | None = None) -> int:
    """Torch threads for one step: ``requested`` when given, else the free cores (local), an
    equal share of them (``local:N``) or the CPUs of an array task (SLURM). Recorded in every
    run, since results are reproducible for the same seed, thread count and hardware."""
    if requested is not None:
        return int(requested)
    if spec.kind == "slurm":
        return spec.slurm.cpus_per_task
    return max(1, available_cores() // max(1, spec.workers))


def run_jobs(fn: Callable, jobs: Sequence[Any], spec: ExecutorSpec, *, description: str = "Running steps") -> JobsResult:
    """Run ``fn(**job)`` (dict), ``fn(*job)`` (tuple) or ``fn(job)`` for every job with the
    executor ``spec``; results in job order. A dict job with a ``resume`` key is re-called
    with ``resume=True`` when SLURM requeues it. Raises :class:`NpcaiError` naming the
    failed job and where its log is."""
    jobs = list(jobs)
    if not jobs:
        return JobsResult([])
    if spec.kind == "local" or len(jobs) == 1 and spec.kind == "processes":
        from npcai.progress import track

        return JobsResult([_call(fn, job) for job in track(jobs, description)])
    if spec.kind == "processes":
        return JobsResult(_run_processes(fn, jobs, spec.workers))
    if spec.kind == "slurm":
        return _run_slurm(fn, jobs, spec)
    raise NpcaiError(f"executor {spec.kind!r}: choose one of {', '.join(EXECUTOR_KINDS)}")


def _run_processes(fn: Callable, jobs: list[Any], workers: int) -> list[Any]:
    workers = min(workers, len(jobs))
    log.info("running %d steps in %d processes", len(jobs), workers)
    ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_call, fn, job) for job in jobs]
        return [f.result() for f in futures]


def _exception_line(trace: str) -> str:
    """The last ``SomeError: message`` line of a remote traceback."""
    import re

    hits = [ln.strip() for ln in trace.splitlines() if re.match(r"\s*[\w.]+(Error|Exception|Interrupt)\b", ln)]
    return hits[-1] if hits else ""


class _Requeueable:
    """A step that submitit requeues after preemption or timeout, then calls again with
    ``resume=True`` so training continues from its last checkpoint."""

    def __init__(self, fn: Callable, job: Any):
        self.fn, self.job = fn, job

    def __call__(self, resume: bool = False) -> Any:
        if resume and isinstance(self.job, dict) and "resume" in self.job:
            return self.fn(**{**self.job, "resume": True})
        return _call(self.fn, self.job)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(_Requeueable(self.fn, self.job), True)


def _run_slurm(fn: Callable, jobs: list[Any], spec: ExecutorSpec) -> JobsResult:
    try:
        import submitit
    except ImportError as exc:  # pragma: no cover - a dependency
        raise NpcaiError("SLURM executor: the submitit package is missing; pip install submitit") from exc
    if not slurm_reachable():
        raise NpcaiError("SLURM executor: no SLURM controller answers `sinfo` on this machine; run on a "
                         "cluster login node (or set SLURM_CONF), or use the local executor")
    folder = (spec.log_dir or Path.cwd() / "slurm").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    opts = spec.slurm
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
    params: dict[str, Any] = {"timeout_min": opts.time_minutes, "cpus_per_task": opts.cpus_per_task,
                              "slurm_array_parallelism": opts.max_parallel, "name": "npcai-study",
                              "slurm_additional_parameters": {"requeue": True}}
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.gpus_per_task:
        params["slurm_gpus_per_task"] = opts.gpus_per_task
    executor.update_parameters(**params)
    tasks = [_Requeueable(fn, job) for job in jobs]
    with executor.batch():
        submitted = [executor.submit(task) for task in tasks]
    records = [JobRecord(j.job_id, i, Path(j.paths.stdout), Path(j.paths.stderr)) for i, j in enumerate(submitted)]
    for r in records:
        log.info("SLURM job %s (step %d of %d): output in %s", r.job_id, r.index + 1, len(records), r.stdout.parent)
    results = []
    for job, rec in zip(submitted, records):
        try:
            results.append(job.result())
        except Exception as exc:  # submitit raises UncompletedJobError / FailedJobError with the remote traceback
            last = _exception_line(str(exc)) or type(exc).__name__
            raise NpcaiError(f"SLURM job {rec.job_id} failed ({last}); its log is {rec.stderr}") from exc
    return JobsResult(results, records)
