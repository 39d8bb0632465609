"""A study with a ``radiomics:`` block: the baseline is trained on the first run's split, listed
in the results and the main table, and tested against the best deep model (paired DeLong)."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from npcai.errors import NpcaiError

STUDY = {
    "name": "tinyrad", "title": "Tiny study with a radiomics row", "endpoint": "pfs-median", "layout": "expansion",
    "rois": [{"name": "expand2", "label": "Expand 2 px", "variant": "expand:2px", "region": "both",
              "kind": "expanded", "expansion": 2, "min_component": [1, 1]},
             {"name": "expand6", "label": "Expand 6 px", "variant": "expand:6px", "region": "both",
              "kind": "expanded", "expansion": 6, "min_component": [1, 1]}],
    "backbones": ["resnet18"],
    "training": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "size": 32, "pretrained": False},
    "split": {"test_fraction": 0.4, "val_fraction": 0.35, "seed": 0},
    "tnm_baseline": False, "baseline": [],
    "explain": {"enabled": False},
    "radiomics": {"rois": ["expand2"]},
}


def test_schema_radiomics_block():
    from npcai.studies.schema import Study

    s = Study(**STUDY)
    assert [r.name for r in s.resolve(None).radiomics_rois()] == ["expand2"]
    with pytest.raises(Exception, match="radiomics names unknown ROI"):
        Study(**{**STUDY, "radiomics": {"rois": ["nope"]}})
    off = Study(**{**STUDY, "presets": {"quick": {"radiomics": False}}}).resolve("quick")
    assert off.radiomics_rois() == []
    assert Study(**{**STUDY, "radiomics": None}).resolve(None).radiomics_rois() == []
    from npcai.studies.schema import load_study

    assert [r.name for r in load_study("peritumoral").resolve("fast").radiomics_rois()] == ["expand20"]
    with pytest.raises(NpcaiError):
        load_study("peritumoral").resolve("fast", rois=["nope"])
    # keeping only ROI datasets without radiomics leaves the baseline out
    assert load_study("peritumoral").resolve("fast", rois=["original"]).radiomics_rois() == []


def test_dry_run_names_the_radiomics_baseline(cli):
    r = cli("study", "run", "peritumoral", "--preset", "fast", "--dry-run")
    assert r.code == 0, r
    assert "Radiomics (elastic net) on expand20" in " ".join(r.stdout.split())


@pytest.mark.slow
def test_study_with_a_radiomics_row(small_cohort, tmp_path, cli):
    import torch

    torch.set_num_threads(1)
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    shutil.copy(small_cohort.parent / f"{small_cohort.name}.pseudonyms.csv", tmp_path / "cohort.pseudonyms.csv")
    study = tmp_path / "tinyrad.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "out"
    r = cli("study", "run", study, "--cohort", cohort, "--out", out, "--threads", "1")
    assert r.code == 0, r
    results = pd.read_csv(out / "report" / "tables" / "results.csv")
    rad = results[results["source"] == "radiomics"]
    assert len(rad) == 1 and rad["model"].iloc[0] == "Radiomics (elastic net)"
    deep = results[results["source"] == "run"]
    assert rad["n_test"].iloc[0] == deep["n_test"].iloc[0]                  # the same test patients
    run = out / "runs" / "all__expand2__radiomics-elasticnet__patient"
    first = out / "runs" / "all__expand2__resnet18__image"
    from npcai.runs import read_split

    assert read_split(run)["split"].equals(read_split(first)["split"])
    delong = pd.read_csv(out / "report" / "tables" / "delong.csv")
    row = delong[delong["Model A"] == "Radiomics (elastic net)"]
    assert len(row) == 1 and "best deep model" in row["Model B"].iloc[0]
    # the rival is the deep model of highest validation AUC, never chosen on the test patients
    from npcai.studies.analysis import validation_auc

    val = deep.assign(val=[validation_auc(out / r) for r in deep["run"]])
    rival = val.loc[val["val"].idxmax(), "model"]
    assert row["Model B"].iloc[0] == f"{rival} (best deep model)"
    html = (out / "report" / "report.html").read_text()
    assert "Radiomics (elastic net)" in html and "elastic net on Expand 2 px features" in html
    assert "elastic-net logistic regression (L1 ratio 0.5) fitted on the training patients only" in html
    assert "Radiomics against the best deep model" in " ".join(r.stdout.split())
    # run again: the radiomics step is reused
    r2 = cli("study", "run", study, "--cohort", cohort, "--out", out, "--threads", "1")
    assert r2.code == 0, r2
    assert "0 trained" in r2.stdout
