"""Bad input to the survival task (issue 14, item 8): one clear `error:` line each, no output left."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

SURV = ("--task", "survival", "--unit", "patient", "--backbone", "resnet10t", "--stacked", "--no-pretrained",
        "--batch-size", "8", "--bag-size", "2", "--epochs", "1", "--threads", "1")


def _one_line(r, *needles):
    assert r.code == 2, (r.code, r.stdout, r.stderr)
    assert r.stderr.strip().startswith("error:") and r.stderr.strip().count("\n") == 0, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


@pytest.fixture()
def cohort(train_cohort, tmp_path):
    out = tmp_path / "cohort"
    shutil.copytree(train_cohort, out)
    return out


def _edit_clinical(cohort, **columns):
    clinical = pd.read_csv(cohort / "clinical.csv")
    for k, v in columns.items():
        clinical[k] = v(clinical) if callable(v) else v
    clinical.to_csv(cohort / "clinical.csv", index=False)


def test_more_than_two_treatments(cli, cohort, tmp_path):
    _edit_clinical(cohort, treatment=lambda c: ["RT" if i % 5 == 0 else t for i, t in enumerate(c["treatment"])])
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "run", *SURV)
    _one_line(r, "more than two treatments", "RT (", "clinical.csv")
    assert not (tmp_path / "run").exists()


def test_no_event_in_the_cohort(cli, cohort, tmp_path):
    _edit_clinical(cohort, dfs_event=0)
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "run", *SURV)
    _one_line(r, "had an event", "Cox partial likelihood is undefined")
    assert not (tmp_path / "run").exists()


def test_one_treatment_only_and_no_treatment_column(cli, cohort, tmp_path):
    _edit_clinical(cohort, treatment="IC+CCRT")
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "run", *SURV)
    _one_line(r, "received IC+CCRT", "both CCRT and IC+CCRT")
    pd.read_csv(cohort / "clinical.csv").drop(columns="treatment").to_csv(cohort / "clinical.csv", index=False)
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "run", *SURV)
    _one_line(r, "no 'treatment' column")
    assert not (tmp_path / "run").exists()


def test_a_cohort_lacking_the_runs_sequence(cli, survival_run, tmp_path):
    """predict of a survival run on a cohort without the sequence its network reads."""
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    run = survival_run
    generate_phantom(tmp_path / "export", patients=3, size=64, slices=4, seed=3, centres=1, sequences=("T2",))
    ingest(tmp_path / "export" / "dicom", clinical=tmp_path / "export" / "clinical.csv", out=tmp_path / "t2",
           contours=tmp_path / "export" / "contours")
    r = cli("predict", run, tmp_path / "t2", "--out", tmp_path / "pred")
    _one_line(r, "no pre T1c scans", "needs sequences T1c")
    assert not (tmp_path / "pred").exists()
