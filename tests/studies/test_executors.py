"""The study executors: in-process, local processes and a real SLURM job array."""
from __future__ import annotations

import os
import time

import pytest

from npcai.errors import NpcaiError
from npcai.studies.executors import (ExecutorSpec, SlurmOptions, parse_executor, run_jobs, slurm_reachable,
                                     threads_per_step)


def _square_and_pid(x: int) -> tuple[int, int]:
    """Module-level so that spawn workers and SLURM tasks can unpickle it."""
    time.sleep(0.2)
    return x * x, os.getpid()


def _step(value: int, resume: bool = False) -> dict:
    return {"value": value, "resume": resume}


@pytest.mark.parametrize("text,kind,workers", [("local", "local", 1), ("local:1", "local", 1),
                                                ("local:3", "processes", 3), ("slurm", "slurm", 1),
                                                (" LOCAL:2 ", "processes", 2)])
def test_parse_executor(text, kind, workers):
    spec = parse_executor(text)
    assert (spec.kind, spec.workers) == (kind, workers)


@pytest.mark.parametrize("text", ["local:0", "local:x", "cluster", "local:-1"])
def test_parse_executor_refuses_with_one_line(text):
    with pytest.raises(NpcaiError, match="executor") as err:
        parse_executor(text)
    assert "\n" not in str(err.value)


def test_slurm_options_fail_fast():
    with pytest.raises(NpcaiError, match="CPUs per task"):
        SlurmOptions(cpus_per_task=0)


def test_local_runs_in_this_process_in_order():
    out = run_jobs(_square_and_pid, [3, 1, 2], parse_executor("local"))
    assert [r[0] for r in out.results] == [9, 1, 4]
    assert {r[1] for r in out.results} == {os.getpid()}
    assert out.records == []


def test_processes_run_elsewhere_in_order():
    out = run_jobs(_square_and_pid, [4, 5, 6, 7], parse_executor("local:2"))
    assert [r[0] for r in out.results] == [16, 25, 36, 49]
    pids = {r[1] for r in out.results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_threads_per_step_share_the_cores(monkeypatch):
    import npcai.studies.executors as ex

    monkeypatch.setattr(ex, "available_cores", lambda: 8)
    assert threads_per_step(parse_executor("local")) == 8
    assert threads_per_step(parse_executor("local:3")) == 2
    assert threads_per_step(parse_executor("local:16")) == 1
    assert threads_per_step(parse_executor("slurm", SlurmOptions(cpus_per_task=4))) == 4
    assert threads_per_step(ExecutorSpec("processes", 2), requested=1) == 1


def test_dict_jobs_are_keyword_calls():
    out = run_jobs(_step, [{"value": 1, "resume": False}], parse_executor("local"))
    assert out.results == [{"value": 1, "resume": False}]


@pytest.mark.slurm
def test_slurm_job_array_runs_every_step(tmp_path):
    if not slurm_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("CI: no SLURM controller answers `sinfo`; .ci/run starts one with .ci/slurm-up")
        pytest.skip("no SLURM controller reachable (start one with .ci/slurm-up DIR)")
    spec = parse_executor("slurm", SlurmOptions(cpus_per_task=1, time_minutes=5, max_parallel=2),
                          log_dir=tmp_path / "slurm")
    # a library function: the job unpickles it by reference on the node
    out = run_jobs(pow, [(2, 2), (3, 2), (4, 2)], spec)
    assert out.results == [4, 9, 16]
    assert len(out.records) == 3 and len({r.job_id for r in out.records}) == 3
    assert all(r.stdout.parent.is_dir() for r in out.records)


@pytest.mark.slurm
def test_slurm_failure_names_the_job_and_its_log(tmp_path):
    if not slurm_reachable():
        pytest.skip("no SLURM controller reachable")
    spec = parse_executor("slurm", SlurmOptions(cpus_per_task=1, time_minutes=5), log_dir=tmp_path / "slurm")
    with pytest.raises(NpcaiError, match=r"SLURM job \S+ failed \(ZeroDivisionError.*its log is") as err:
        run_jobs(divmod, [(1, 0)], spec)
    assert "\n" not in str(err.value)


def test_slurm_unreachable_is_one_line(monkeypatch, tmp_path):
    import npcai.studies.executors as ex

    monkeypatch.setattr(ex, "slurm_reachable", lambda: False)
    with pytest.raises(NpcaiError, match="no SLURM controller"):
        run_jobs(_square_and_pid, [1, 2], parse_executor("slurm", log_dir=tmp_path))


def test_a_requeued_step_resumes_from_its_checkpoint():
    """submitit calls checkpoint() on preemption/timeout and resubmits what it returns."""
    from npcai.studies.executors import _Requeueable

    step = _Requeueable(_step, {"value": 7, "resume": False})
    assert step() == {"value": 7, "resume": False}
    again = step.checkpoint()
    assert again.function(*again.args, **again.kwargs) == {"value": 7, "resume": True}
