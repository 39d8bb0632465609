"""A custom study YAML with the default ``generic`` layout runs end to end and gets a report
(issue 18: it trained every run, then crashed with KeyError 'all_models' and left no report)."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

GENERIC = {
    "name": "custom", "title": "A custom study", "endpoint": "pfs-median",     # no layout: generic
    "rois": [{"name": "box", "label": "Bounding box", "variant": "bbox:2px", "region": "both"}],
    "backbones": ["resnet18"],
    "training": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "size": 32,
                 "pretrained": False},
    "split": {"test_fraction": 0.35, "val_fraction": 0.35, "seed": 0},
    "explain": {"enabled": False},
}


@pytest.mark.slow
def test_custom_generic_study_writes_a_report(small_cohort, tmp_path, cli):
    import torch

    torch.set_num_threads(1)
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    shutil.copy(small_cohort.parent / f"{small_cohort.name}.pseudonyms.csv", tmp_path / "cohort.pseudonyms.csv")
    study = tmp_path / "custom.yaml"
    study.write_text(yaml.safe_dump(GENERIC))
    out = tmp_path / "out"
    r = cli("study", "run", study, "--cohort", cohort, "--out", out)
    assert r.code == 0, r
    html = (out / "report" / "report.html").read_text()
    assert '<section id="main">' in html and "Performance of every model in the test cohort" in html
    main = pd.read_csv(out / "report" / "tables" / "main_table.csv")
    assert main["Model"].iloc[0] == "Bounding box"        # the one trained model, then the TNM baselines
    assert (out / "report" / "tables" / "results.csv").is_file()
