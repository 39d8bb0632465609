"""The study YAML's ``cluster:`` block and device options: parsed, checked, overridden by flags."""
from __future__ import annotations

import pytest
import yaml

from npcai.errors import NpcaiError
from npcai.studies.schema import ClusterSpec, load_study


def _study_file(tmp_path, **extra):
    data = load_study("peritumoral").model_dump(mode="json")
    data.update(extra)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cluster_block_is_read_and_checked(tmp_path):
    block = {"executor": "slurm", "partition": "gpu", "gpus_per_task": 1, "cpus_per_task": 8, "time": 90,
             "max_parallel": 4}
    study = load_study(_study_file(tmp_path, cluster=block))
    spec = study.cluster.executor_spec()
    assert spec.kind == "slurm"
    assert (spec.slurm.partition, spec.slurm.gpus_per_task, spec.slurm.cpus_per_task, spec.slurm.time_minutes,
            spec.slurm.max_parallel) == ("gpu", 1, 8, 90, 4)
    assert load_study("peritumoral").cluster.executor_spec().kind == "local"     # no block: local
    for bad, word in [({"executor": "cluster"}, "executor"), ({"cpus_per_task": 0}, "cpus_per_task"),
                      ({"gpus": 1}, "gpus")]:                                     # extra keys are refused
        with pytest.raises(NpcaiError, match=word):
            load_study(_study_file(tmp_path, cluster=bad))


def test_flags_override_the_block():
    block = ClusterSpec(executor="slurm", partition="gpu", cpus_per_task=8, time=90)
    spec = block.executor_spec(executor="local:2", cpus_per_task=4)
    assert (spec.kind, spec.workers) == ("processes", 2)
    assert (spec.slurm.partition, spec.slurm.cpus_per_task, spec.slurm.time_minutes) == ("gpu", 4, 90)


def test_study_cli_passes_block_and_flags(cli, tmp_path, monkeypatch):
    import npcai.studies.runner as runner

    seen = {}

    def fake_run_study(resolved, **kwargs):
        seen.update(kwargs)
        raise NpcaiError("stopped by the test")

    monkeypatch.setattr(runner, "run_study", fake_run_study)
    path = _study_file(tmp_path, cluster={"executor": "local:2", "partition": "p1", "cpus_per_task": 4})
    r = cli("study", "run", path, "--cohort", tmp_path / "cohort", "--out", tmp_path / "s",
            "--slurm-cpus-per-task", "6")
    assert r.code == 2 and "stopped by the test" in r.stderr
    spec = seen["executor"]
    assert (spec.kind, spec.workers, spec.slurm.partition, spec.slurm.cpus_per_task) == ("processes", 2, "p1", 6)
    cli("study", "run", path, "--cohort", tmp_path / "cohort", "--out", tmp_path / "s", "--executor", "local")
    assert seen["executor"].kind == "local"


def test_device_options_in_the_training_block(tmp_path):
    study = load_study(_study_file(tmp_path, training={**load_study("peritumoral").training.model_dump(),
                                                       "accelerator": "gpu", "precision": "bf16-mixed"}))
    assert (study.training.accelerator, study.training.precision) == ("gpu", "bf16-mixed")
    training = {**load_study("peritumoral").training.model_dump(), "precision": 32}     # unquoted in YAML
    assert load_study(_study_file(tmp_path, training=training)).training.precision == "32"
    training = {**load_study("peritumoral").training.model_dump(), "accelerator": "cpu", "precision": "16-mixed"}
    with pytest.raises(NpcaiError, match="16-mixed"):
        load_study(_study_file(tmp_path, training=training))
    training = {**load_study("peritumoral").training.model_dump(), "devices": 2}
    with pytest.raises(NpcaiError, match="devices 2 x num_nodes 1: a study trains each run in one process"):
        load_study(_study_file(tmp_path, training=training))
