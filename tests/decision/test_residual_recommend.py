"""Study 002's recommendation end to end on a tiny residual study: the report section, the CLI, bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from npcai.decision.residual_recommend import recommend_residual, study_runs

TINY = {
    "name": "tiny002", "title": "Residual rule check", "endpoint": "residual-tumour", "layout": "units",
    "subsets": [{"name": "ccrt", "label": "CCRT", "where": 'treatment == "CCRT"'},
                {"name": "ic_ccrt", "label": "IC + CCRT", "where": 'treatment == "IC+CCRT"'}],
    "rois": [{"name": "bbox", "label": "Rectangle", "variant": "bbox", "region": "primary", "kind": "rectangle"}],
    "backbones": ["resnet18"], "units": ["image"],
    "training": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "size": 32, "pretrained": False},
    "split": {"test_fraction": 0.3, "val_fraction": 0.3, "seed": 0},
    "explain": {"enabled": False},
}


@pytest.fixture(scope="module")
def residual_study(tmp_path_factory):
    """A 48-patient phantom (64 px, 4 slices) and a one-epoch residual study on it."""
    from npcai.cli import main
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    root = tmp_path_factory.mktemp("study002")
    export = root / "export"
    generate_phantom(export, patients=48, size=64, slices=4, seed=3, centres=1, sequences=("T1c",), post=False)
    cohort = root / "cohort"
    ingest(export / "dicom", clinical=export / "clinical.csv", out=cohort, contours=export / "contours")
    study = root / "tiny002.yaml"
    study.write_text(yaml.safe_dump(TINY))
    out = root / "study"
    assert main(["study", "run", str(study), "--cohort", str(cohort), "--out", str(out), "--threads", "1"]) == 0
    return root, cohort, out


def test_study_report_has_the_table3_section_with_truth(residual_study):
    _, _, out = residual_study
    html = (out / "report" / "report.html").read_text()
    assert "Treatment recommendation (study 002, Table 3)" in html
    assert "McNemar" in html and "best_treatment_residual" in html
    t3 = pd.read_csv(out / "report" / "tables" / "recommendation_table3.csv")
    per = pd.read_csv(out / "report" / "tables" / "recommendation_patients.csv")
    assert t3["Cases"].sum() == len(per) > 0
    assert set(per["recommendation"]) <= {"CCRT", "IC+CCRT", "IBT"}
    # every patient judged: predictions of both models, one per regimen, and the observed effect
    assert per[["prob_ccrt", "prob_ic_ccrt"]].notna().all().all()
    truth = pd.read_csv(out / "report" / "tables" / "recommendation_truth.csv")
    assert truth["Measure"].str.contains("Regret").any()


def test_both_models_predict_every_test_patient_of_both_treatments(residual_study):
    from npcai.runs import read_split

    _, cohort, out = residual_study
    result = recommend_residual(study_runs(out))
    assert set(result.models) == {"CCRT", "IC+CCRT"}
    test = set()
    for m in result.models.values():
        split = read_split(m.run)
        test |= set(split.index[split["split"] == "test"])
    assert set(result.patients.index) == test
    assert set(result.patients["treatment"]) == {"CCRT", "IC+CCRT"}
    # the rule applied to the thresholded predictions
    p = result.patients
    assert ((p["prob_ccrt"] > result.models["CCRT"].threshold) == p["residual_ccrt_pred"]).all()
    ccrt = ~p["residual_ccrt_pred"]
    assert (p.loc[ccrt, "recommendation"] == "CCRT").all()
    c = result.comparison
    assert c.model.right + c.model.wrong + c.model.undecidable == len(p)
    assert result.truth is not None and result.truth.agreement_residual.n_total == len(p)


def test_cli_writes_the_folder_and_prints_table3(residual_study, cli):
    root, _, out = residual_study
    r = cli("recommend", "residual", out, "--out", root / "rec")
    assert r.code == 0, r
    assert "Situation" in r.stdout and "McNemar" in r.stdout
    summary = json.loads((root / "rec" / "summary.json").read_text())
    assert summary["format"] == "npcai-recommendation-residual/1"
    assert summary["n_patients"] == len(pd.read_csv(root / "rec" / "patients.csv"))
    again = cli("recommend", "residual", out, "--out", root / "rec")
    assert again.code == 2 and again.stderr.strip().startswith("error:")


def _bad_cohort(cohort, dest, edit):
    shutil.copytree(cohort, dest)
    path = dest / "clinical.csv"
    clinical = pd.read_csv(path, dtype={"patient_id": str})
    edit(clinical).to_csv(path, index=False)
    return dest


@pytest.mark.parametrize("what,edit,message", [
    ("no physician_choice", lambda d: d.drop(columns="physician_choice"), "no column 'physician_choice'"),
    ("no treatment", lambda d: d.drop(columns="treatment"), "no column 'treatment'"),
    ("RT", lambda d: d.assign(treatment=["RT"] + list(d["treatment"][1:])), "has treatment 'RT'"),
])
def test_bad_cohort_is_one_line_exit_2(residual_study, cli, tmp_path, what, edit, message):
    _, cohort, out = residual_study
    bad = _bad_cohort(cohort, tmp_path / "bad", edit)
    r = cli("recommend", "residual", out, "--cohort", bad, "--out", tmp_path / "rec")
    assert r.code == 2, r
    assert r.stderr.strip().startswith("error:") and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "CCRT" in r.stderr
    assert not (tmp_path / "rec").exists()


def test_a_study_without_both_treatment_models_is_refused(residual_study, cli, tmp_path):
    _, _, out = residual_study
    only = tmp_path / "only"
    (only / "runs").mkdir(parents=True)
    run = next(p for p in study_runs(out) if p.name.startswith("ccrt"))
    shutil.copytree(run, only / "runs" / run.name)
    r = cli("recommend", "residual", only, "--out", tmp_path / "rec")
    assert r.code == 2 and "no IC+CCRT-trained residual-tumour run" in r.stderr, r


def _copy_with_edited_run(study_out: Path, dest: Path, edit) -> Path:
    """A copy of the study's runs in which ``edit(config dict)`` changed the first run's config.yaml."""
    (dest / "runs").mkdir(parents=True)
    for run in study_runs(study_out):
        shutil.copytree(run, dest / "runs" / run.name)
    cfg_path = next((dest / "runs").iterdir()) / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(yaml.safe_dump(cfg))
    return dest


def test_models_of_another_endpoint_are_refused(residual_study, cli, tmp_path):
    _, _, out = residual_study
    other = _copy_with_edited_run(out, tmp_path / "other", lambda cfg: cfg["options"].update(endpoint="pfs-median"))
    r = cli("recommend", "residual", other, "--out", tmp_path / "rec")
    assert r.code == 2 and "predicts 'pfs-median', not 'residual-tumour'" in r.stderr, r


def test_cross_validated_runs_are_refused_in_one_line(residual_study, cli, tmp_path):
    """A CV residual study has out-of-fold predictions, no test cohort both models predict."""
    _, _, out = residual_study
    cv = _copy_with_edited_run(out, tmp_path / "cv", lambda cfg: cfg.update(kind="cv"))
    r = cli("recommend", "residual", cv, "--out", tmp_path / "rec")
    assert r.code == 2 and "cross-validated" in r.stderr and "without folds" in r.stderr, r
    assert r.stderr.strip().count("\n") == 0
