"""A study's tables do not depend on where its training runs went (issue 17): in this process,
in two local processes, or as a SLURM job array, with the same seed and thread count."""
from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
import yaml

from npcai.studies.executors import slurm_reachable

TINY = {
    "name": "tiny", "title": "Executor check", "endpoint": "pfs-median",
    "rois": [{"name": "box", "label": "Bounding box", "variant": "bbox:2px", "region": "both"},
             {"name": "seg", "label": "Segmented", "variant": "segmented", "region": "both", "frame": "bbox"}],
    "backbones": ["resnet18"],
    "training": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "size": 32,
                 "pretrained": False},
    "split": {"test_fraction": 0.35, "val_fraction": 0.35, "seed": 0},
    "explain": {"enabled": False},
}


@pytest.fixture(scope="module")
def tiny_study(small_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("executor_study")
    cohort = root / "cohort"
    shutil.copytree(small_cohort, cohort)
    shutil.copy(small_cohort.parent / f"{small_cohort.name}.pseudonyms.csv", root / "cohort.pseudonyms.csv")
    study = root / "tiny.yaml"
    study.write_text(yaml.safe_dump(TINY))
    return study, cohort


def _run(cli, study, cohort, out, *args):
    r = cli("study", "run", study, "--cohort", cohort, "--out", out, "--threads", "1", *args)
    assert r.code == 0, r
    table = pd.read_csv(out / "report" / "tables" / "results.csv")
    return table.drop(columns=[c for c in table.columns if "second" in c or c in ("run", "path")], errors="ignore")


def _markers(out):
    return [json.loads(p.read_text()) for p in sorted((out / "steps").glob("*.json"))]


@pytest.mark.slow
def test_local_processes_give_the_tables_of_one_process(tiny_study, tmp_path, cli):
    study, cohort = tiny_study
    one = _run(cli, study, cohort, tmp_path / "local")
    two = _run(cli, study, cohort, tmp_path / "local2", "--executor", "local:2")
    pd.testing.assert_frame_equal(one, two)
    assert {m["executor"] for m in _markers(tmp_path / "local2")} == {"processes"}
    assert all(m["threads"] == 1 for m in _markers(tmp_path / "local2"))


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_job_array_gives_the_tables_of_one_process(tiny_study, tmp_path, cli):
    if not slurm_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("CI: no SLURM controller answers `sinfo`; .ci/run starts one with .ci/slurm-up")
        pytest.skip("no SLURM controller reachable (start one with .ci/slurm-up DIR)")
    study, cohort = tiny_study
    local = _run(cli, study, cohort, tmp_path / "local")
    slurm = _run(cli, study, cohort, tmp_path / "slurm", "--executor", "slurm", "--slurm-cpus-per-task", "1",
                 "--slurm-time", "10")
    pd.testing.assert_frame_equal(local, slurm)
    markers = _markers(tmp_path / "slurm")
    assert all(m["slurm_job"] for m in markers) and len({m["slurm_job"] for m in markers}) == len(markers)
    for m in markers:                      # the study log names every job and where its output is
        print(f"SLURM job {m['slurm_job']}: step {m['step']} in {m['seconds']:.1f} s, log {m['slurm_log']}")
