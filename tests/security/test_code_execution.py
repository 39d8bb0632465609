"""Inputs are data, never code (issue 18): a patient filter that tries to run a shell command,
given on the command line, in a run's config.yaml or in a study YAML, runs nothing and exits 2."""
from __future__ import annotations

import yaml

from .conftest import EXPLOIT

TRAIN = ("--roi", "box", "--endpoint", "pfs-median", "--backbone", "resnet18", "--no-pretrained",
         "--epochs", "1", "--batch-size", "8")


def _refused(r) -> str:
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.code == 2 and len(errors) == 1, r
    return " ".join(r.stderr.split())


def test_where_exploit_on_the_command_line_runs_nothing(cli, roi_cohort, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("train", roi_cohort, *TRAIN, "--out", tmp_path / "run", "--where", EXPLOIT)
    assert not (tmp_path / "pwned").exists()
    assert "patient filter" in _refused(r) and "not valid syntax" in r.stderr
    assert not (tmp_path / "run").exists()


def test_where_exploit_in_a_run_config_is_refused_before_anything_runs(cli, roi_cohort, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "shared_run"
    run.mkdir()
    options = {"cohort": str(roi_cohort), "roi": "box", "endpoint": "pfs-median", "backbone": "resnet18",
               "pretrained": False, "epochs": 1, "batch_size": 8, "where": EXPLOIT}
    (run / "config.yaml").write_text(yaml.safe_dump({"format": "npcai-run/1", "kind": "train", "options": options}))
    r = cli("train", "--config", run / "config.yaml", "--out", tmp_path / "again")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "again").exists()
    assert "patient filter" in _refused(r)


def test_where_exploit_in_a_study_subset_is_refused_when_the_study_loads(cli, roi_cohort, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = {"name": "evil", "title": "t", "endpoint": "pfs-median",
             "rois": [{"name": "box", "variant": "bbox:2px"}], "backbones": ["resnet18"],
             "subsets": [{"name": "all", "where": EXPLOIT}]}
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(study))
    r = cli("study", "run", tmp_path / "evil.yaml", "--cohort", roi_cohort, "--out", tmp_path / "s")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "s").exists()
    assert "patient filter" in _refused(r)


def test_a_valid_filter_still_selects_patients(cli, roi_cohort, tmp_path):
    from npcai.cohort.endpoints import filter_patients
    from npcai.cohort.model import Cohort

    clin = Cohort.load(roi_cohort).clinical()
    chosen = filter_patients(clin, 'treatment in ["CCRT", "IC+CCRT"] and not t_stage < 2')
    assert len(chosen) and set(chosen["treatment"]) <= {"CCRT", "IC+CCRT"} and (chosen["t_stage"] >= 2).all()
