"""A tiny end-to-end study on the session's small phantom cohort: ROI datasets, training,
statistics, Grad-CAM and the report; then the same study again reuses every finished step."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

TINY = {
    "name": "tiny", "title": "Tiny expansion study", "endpoint": "pfs-median", "layout": "expansion",
    "rois": [
        {"name": "segmented", "label": "Segmented", "variant": "segmented", "region": "both",
         "kind": "tumour-only", "expansion": 0},
        {"name": "expand2", "label": "Expand 2 px", "variant": "expand:2px", "region": "both",
         "kind": "expanded", "expansion": 2, "training": {"size": 40, "ema": 0.99}},   # its own options
    ],
    "backbones": ["resnet18"],
    "training": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001, "size": 32,
                 "pretrained": False},
    "split": {"test_fraction": 0.35, "val_fraction": 0.35, "seed": 0},
    "delong": [["expand2", "segmented"]],
    "explain": {"rois": ["segmented", "expand2"], "top": 1},
}

SECTIONS = ["summary", "methods", "cohort", "main", "figures", "delong", "oracle", "gradcam", "runs"]


@pytest.fixture(scope="module")
def tiny_study(small_cohort, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_study")
    cohort = root / "cohort"
    shutil.copytree(small_cohort, cohort)
    shutil.copy(small_cohort.parent / f"{small_cohort.name}.pseudonyms.csv", root / "cohort.pseudonyms.csv")
    study = root / "tiny.yaml"
    study.write_text(yaml.safe_dump(TINY))
    return root, cohort, study


@pytest.mark.slow
def test_tiny_study_end_to_end(tiny_study, cli, open_in_chromium):
    root, cohort, study = tiny_study
    out = root / "out"
    r = cli("study", "run", study, "--cohort", cohort, "--out", out)
    assert r.code == 0, r
    assert "report:" in r.stdout
    report = out / "report" / "report.html"
    html = report.read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html, sid
    for needle in ("Table 1", "aAUC (SD)", "DeLong", "Oracle AUC", "torch", "Grad-CAM localisation"):
        assert needle in html, needle
    assert ">nan<" not in html.lower()
    tables = {p.name for p in (out / "report" / "tables").glob("*.csv")}
    assert {"main_table.csv", "results.csv", "delong.csv", "table1.csv", "split.csv", "steps.csv"} <= tables
    figures = {p.name for p in (out / "report" / "figures").glob("*.png")}
    assert "auc_vs_expansion.png" in figures and any(f.startswith("roc_") for f in figures)
    assert any(f.startswith("gradcam_") for f in figures)
    results = pd.read_csv(out / "report" / "tables" / "results.csv")
    assert set(results["source"]) >= {"run", "tnm", "baseline", "combined"}     # clinical baseline + combined model
    assert {"baselines.csv", "baseline_delong.csv", "baseline_predictions.csv"} <= tables
    assert "Clinical baseline and combined model" in html
    runs = results[results["source"] == "run"]
    assert len(runs) == 2 and runs["n_test"].nunique() == 1        # one shared split
    splits = [pd.read_csv(out / "runs" / f"all__{n}__resnet18__image" / "split.csv") for n in ("segmented", "expand2")]
    assert splits[0].set_index("patient_id")["split"].equals(splits[1].set_index("patient_id")["split"])
    assert (out / "study.yaml").is_file() and yaml.safe_load((out / "study.yaml").read_text())["study"]["name"] == "tiny"
    # a dataset's own training options reach its run (and no other), and the methods say so
    from npcai.runs import read_run

    opts = {n: read_run(out / "runs" / f"all__{n}__resnet18__image").config.options for n in ("segmented", "expand2")}
    assert (opts["segmented"]["size"], opts["segmented"]["ema"]) == (32, 0.0)
    assert (opts["expand2"]["size"], opts["expand2"]["ema"]) == (40, 0.99)
    assert "32×32 px (Segmented) and 40×40 px (Expand 2 px)" in html
    assert "for Expand 2 px: validation, checkpoint selection and the saved network used an exponential moving " \
           "average of the weights (decay 0.99 per step)" in html

    facts = open_in_chromium(report, root / "report.png")
    assert facts["sections"] == SECTIONS
    assert len(facts["tables"]) >= 5 and all(n >= 2 for n in facts["tables"])
    assert len(facts["images"]) >= 3 and all(i["w"] > 50 and i["src"].startswith("data:image/png") for i in facts["images"])
    assert facts["external"] == []

    # the second run trains nothing: every step is reused, and the report is rewritten
    marker = json.loads((out / "steps" / "all__expand2__resnet18__image.json").read_text())
    before = (out / "runs" / "all__expand2__resnet18__image" / "predictions_patients.csv").stat().st_mtime
    r2 = cli("study", "run", study, "--cohort", cohort, "--out", out, "--no-explain")
    assert r2.code == 0, r2
    assert "0 trained, 2 reused" in r2.stdout
    assert (out / "runs" / "all__expand2__resnet18__image" / "predictions_patients.csv").stat().st_mtime == before
    assert json.loads((out / "steps" / "all__expand2__resnet18__image.json").read_text())["hash"] == marker["hash"]


def test_bad_inputs_fail_before_training(tiny_study, cli, tmp_path):
    root, cohort, study = tiny_study
    r = cli("study", "run", study, "--out", tmp_path / "o")
    assert r.code == 2 and "--cohort" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("study", "run", study, "--cohort", tmp_path / "empty", "--out", tmp_path / "o")
    assert r.code == 2 and "not an npcai cohort" in r.stderr
    bad = dict(TINY, endpoint="no_such_column")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(bad))
    r = cli("study", "run", p, "--cohort", cohort, "--out", tmp_path / "o")
    assert r.code == 2 and "no_such_column" in r.stderr


@pytest.mark.slow
def test_cross_validated_study_shares_folds_and_reports_pooled_auc(tiny_study, cli):
    """split: {folds: 3}: every run is a 3-fold CV on the first run's folds; the report shows the
    pooled out-of-fold AUC with CI per ROI dataset, and the DeLong tests pair every patient."""
    root, cohort, study = tiny_study
    data = dict(TINY, name="tiny_cv", split={"folds": 3, "val_fraction": 0.35, "seed": 0})
    path = root / "tiny_cv.yaml"
    path.write_text(yaml.safe_dump(data))
    out = root / "out_cv"
    r = cli("study", "run", path, "--cohort", cohort, "--out", out)
    assert r.code == 0, r
    runs = [out / "runs" / f"all__{n}__resnet18__image" for n in ("segmented", "expand2")]
    folds = [pd.read_csv(run / "split.csv").set_index("patient_id")["fold"].sort_index() for run in runs]
    assert folds[0].equals(folds[1]) and set(folds[0]) == {1, 2, 3}
    pred = pd.read_csv(runs[1] / "predictions_patients.csv")
    assert (pred["split"] == "oof").all() and pred["patient_id"].is_unique and len(pred) == len(folds[0])
    html = (out / "report" / "report.html").read_text()
    assert '<section id="cv">' in html and "Pooled out-of-fold AUC (95% CI)" in html
    assert "3-fold cross-validation" in html and ">nan<" not in html.lower()
    cv = pd.read_csv(out / "report" / "tables" / "cross_validation.csv")
    results = pd.read_csv(out / "report" / "tables" / "results.csv")
    from npcai.stats.auc import auc_ci

    for run, name in zip(runs, ("Segmented", "Expand 2 px")):
        p = pd.read_csv(run / "predictions_patients.csv")
        ref = auc_ci(p["label"], p["prob"])
        row = cv[cv["Dataset"] == name].iloc[0]
        assert row["Pooled out-of-fold AUC (95% CI)"] == f"{ref.auc:.3f} ({ref.low:.3f}–{ref.high:.3f})"
        assert int(row["Folds"]) == 3
        res = results[(results["roi_label"] == name) & (results["source"] == "run")].iloc[0]
        assert res["n_test"] == len(p) and res["auc"] == pytest.approx(ref.auc)
    base = results[results["source"] == "baseline"].iloc[0]
    assert base["n_test"] == len(folds[0]) and base["n_folds"] == 3     # out of fold, on the same folds
    delong = pd.read_csv(out / "report" / "tables" / "delong.csv")
    first = delong.iloc[0]
    assert first["Paired test patients"] == len(folds[0])
    assert any(f.startswith("gradcam_") for f in (p.name for p in (out / "report" / "figures").glob("*.png")))


def test_methods_name_the_schedule_and_the_weight_average():
    """A reader reproducing the training from the methods needs both (e.g. residual's cosine
    preset, or a study's ``training: {ema: 0.99}``); a constant rate without an average adds nothing."""
    from npcai.report.study import schedule_and_average_text
    from npcai.studies.schema import TrainingSpec

    text = schedule_and_average_text(TrainingSpec(schedule="cosine", epochs=10, ema=0.99))
    assert "cosine schedule over the 10 epochs" in text and "moving average of the weights (decay 0.99" in text
    assert schedule_and_average_text(TrainingSpec()) == ""
    ensemble = schedule_and_average_text(TrainingSpec(members=3))
    assert "deep ensemble of 3 networks trained independently" in ensemble and "own best validation epoch" in ensemble


def test_methods_name_a_dataset_trained_as_a_deep_ensemble():
    from npcai.report.study import _dataset_training_text
    from npcai.studies.runner import resolve_study

    s = resolve_study("peritumoral", "fast", rois=["segmented", "expand20"]).study
    s = s.model_copy(update={"rois": [r.model_copy(update={"training": {"members": 3}}) if r.name == "expand20" else r
                                      for r in s.rois]})
    text = _dataset_training_text(s)
    assert text.startswith("; for Expand 10 px") and "deep ensemble of 3 networks" in text and "members 3" not in text
