"""`npcai evaluate`, `npcai compare`, `npcai table1` on fake run folders (docs/contracts.md)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from npcai.stats import auc_ci, compare_runs, evaluate_run, youden_threshold

from .conftest import make_run


def test_evaluate_writes_metrics_and_figures(cli, fake_runs, tmp_path):
    run = shutil.copytree(fake_runs["segmented_efficientnet_b0"], tmp_path / "run")
    r = cli("evaluate", run, "--n-boot", "200")
    assert r.code == 0, r
    assert "AUC, patients" in r.stdout and "Youden's J on" in r.stdout
    m = json.loads((run / "metrics.json").read_text())
    preds = pd.read_csv(run / "predictions_patients.csv")
    test, val = preds[preds.split == "test"], preds[preds.split == "val"]
    # patient-level AUC and DeLong CI on the test patients only
    a = auc_ci(test.label, test.prob)
    assert m["patient"]["auc"]["auc"] == pytest.approx(a.auc)
    assert m["patient"]["auc"]["low"] == pytest.approx(a.low)
    assert m["n_patients"] == len(test)
    # the threshold comes from the validation patients, never from the test patients
    assert m["threshold"]["value"] == pytest.approx(youden_threshold(val.label, val.prob).threshold)
    pred = (test.prob > m["threshold"]["value"]).astype(int)
    cm = m["binary"]["confusion"]
    assert cm["tp"] == int(((pred == 1) & (test.label == 1)).sum())
    assert cm["tp"] + cm["fp"] + cm["tn"] + cm["fn"] == len(test)
    assert m["binary"]["f1_ci"]["low"] <= m["binary"]["f1"] <= m["binary"]["f1_ci"]["high"]
    # survival C-index against pfs_months/pfs_event of the cohort
    assert m["c_index"]["kind"] == "survival" and "pfs_months" in m["c_index"]["survival"]
    assert 0.5 < m["c_index"]["c_index"] < 1
    assert m["slice"]["n_slices"] == 3 * len(test)
    assert {row["score"] for row in m["tnm"]["table"]} == {"T stage", "N stage", "Overall stage"}
    assert len(m["tnm"]["delong"]) == 3
    assert "slope" in m["calibration"]
    assert "NaN" not in (run / "metrics.json").read_text()
    for name in ("roc.png", "confusion.png"):
        assert (run / "figures" / name).stat().st_size > 10_000


def test_evaluate_residual_endpoint_has_binary_c_index(fake_cohort, tmp_path):
    run = make_run(tmp_path / "dm", fake_cohort, roi="segmented", backbone="resnet50",
                   endpoint="distant-metastasis")
    m = evaluate_run(run, n_boot=0, figures=False)
    # the fake cohort has no dmfs columns: the C-index is the binary one, and says why
    assert m["c_index"]["kind"].startswith("binary")
    assert "dmfs_months" in m["c_index"]["survival"]
    assert m["c_index"]["c_index"] == pytest.approx(m["patient"]["auc"]["auc"])


def test_undefined_npv_is_null_not_nan_in_metrics(fake_runs):
    from npcai.stats import evaluate_predictions

    p = pd.read_csv(fake_runs["segmented_efficientnet_b0"] / "predictions_patients.csv")
    test = p[p.split == "test"].set_index("patient_id")
    m = evaluate_predictions(test, threshold=-1.0, n_boot=0)    # every patient predicted 1
    assert m["binary"]["npv"]["value"] is None
    assert "no patient predicted 0" in m["binary"]["npv"]["undefined"]
    assert m["binary"]["sensitivity"]["value"] == 1.0


def test_evaluate_with_a_moved_cohort_still_reports_auc(fake_runs, tmp_path):
    import yaml

    run = shutil.copytree(fake_runs["segmented_efficientnet_b0"], tmp_path / "run")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["options"]["cohort"] = cfg["cohort"]["path"] = str(tmp_path / "gone")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    m = evaluate_run(run, n_boot=0, figures=False)
    assert m["patient"]["auc"]["auc"] > 0.5
    assert "not found" in m["tnm"]["unavailable"] and "not found" in m["c_index"]["survival"]


def test_evaluate_single_class_test_split_is_one_line(cli, fake_runs, tmp_path):
    run = shutil.copytree(fake_runs["segmented_efficientnet_b0"], tmp_path / "run")
    p = pd.read_csv(run / "predictions_patients.csv")
    p = p[(p.split != "test") | (p.label == 1)]
    p.to_csv(run / "predictions_patients.csv", index=False)
    r = cli("evaluate", run, "--no-figures")
    assert r.code == 2
    assert "AUC is undefined: all" in r.stderr and "have label 1" in r.stderr
    assert "Traceback" not in r.stderr and not (run / "metrics.json").exists()


def test_evaluate_nan_probability_names_the_patient(cli, fake_runs, tmp_path):
    run = shutil.copytree(fake_runs["segmented_efficientnet_b0"], tmp_path / "run")
    p = pd.read_csv(run / "predictions_patients.csv", dtype={"patient_id": str})
    pid = p.loc[p.split == "test", "patient_id"].iloc[0]
    p.loc[p.patient_id == pid, "prob"] = np.nan
    p.to_csv(run / "predictions_patients.csv", index=False)
    r = cli("evaluate", run, "--no-figures")
    assert r.code == 2 and pid in r.stderr and "NaN" in r.stderr


def test_compare_two_rois_by_two_backbones(cli, fake_runs, tmp_path):
    runs = list(fake_runs.values())
    out = tmp_path / "cmp"
    r = cli("compare", *runs, "--out", out, "--group-by", "roi")
    assert r.code == 0, r
    t3 = pd.read_csv(out / "table3.csv")
    assert len(t3) == 4 and set(t3.dataset) == {"segmented", "expand20"}
    for _dataset, g in t3.groupby("dataset"):
        # table3.csv keeps 6 significant digits
        assert g["aauc"].dropna().iloc[0] == pytest.approx(g["auc"].mean(), rel=1e-5)
        assert g["aauc_sd"].dropna().iloc[0] == pytest.approx(g["auc"].std(ddof=1), rel=1e-4)
    d = pd.read_csv(out / "delong.csv")
    assert len(d) == 2 and (d.model_a == d.model_b).all() and (d.dataset_a != d.dataset_b).all()
    assert d.paired.all() and d.p_value.between(0, 1).all()
    assert (out / "roc_segmented.png").is_file() and (out / "roc_expand20.png").is_file()
    tnm = pd.read_csv(out / "tnm.csv")
    assert len(tnm) == 4 * 3 and set(tnm.score) == {"T stage", "N stage", "Overall stage"}
    assert tnm.p_value.between(0, 1).all() and tnm.c_index.notna().all()
    # by backbone: datasets are backbones, pairs are same ROI across backbones
    res = compare_runs(runs, group_by="backbone")
    assert set(res.table3.dataset) == {"efficientnet_b0", "ecaresnet50t"}
    assert (res.delong.model_a == res.delong.model_b).all()


def test_compare_refuses_different_patients_and_offers_unpaired(cli, fake_cohort, fake_runs, tmp_path):
    other = make_run(tmp_path / "other", fake_cohort, roi="segmented", backbone="resnet50", drop_test=2)
    a = fake_runs["segmented_efficientnet_b0"]
    r = cli("compare", a, other, "--out", tmp_path / "c1", "--pairs", f"{a.name}:other")
    assert r.code == 2 and "different test patients" in r.stderr and "--unpaired" in r.stderr
    assert not (tmp_path / "c1").exists()
    r = cli("compare", a, other, "--out", tmp_path / "c2", "--pairs", f"{a.name}:other", "--unpaired")
    assert r.code == 0, r
    d = pd.read_csv(tmp_path / "c2" / "delong.csv")
    assert not d.paired.iloc[0] and d.df.iloc[0] > 0


def test_compare_includes_localisation_when_explained(fake_runs, tmp_path):
    runs = {k: shutil.copytree(v, tmp_path / k) for k, v in fake_runs.items()}
    one = runs["segmented_efficientnet_b0"]
    (one / "explain").mkdir()
    pd.DataFrame({"run": one.name, "scale": ["px", "px", "mm"], "region": ["tumour", "band_0_5px", "far"],
                  "share_mean": [0.4, 0.3, 0.1]}).to_csv(one / "explain" / "localisation_summary.csv",
                                                         index=False)
    res = compare_runs(list(runs.values()))
    row = res.table3.set_index("run").loc[one.name]
    assert row["loc_tumour"] == 0.4 and row["loc_band_0_5px"] == 0.3 and "loc_far" not in res.table3


def test_table1_of_run_and_cohort(cli, fake_runs, fake_cohort, tmp_path):
    run = fake_runs["segmented_efficientnet_b0"]
    out = tmp_path / "t1.csv"
    r = cli("table1", run, "--by", "split", "--out", out)
    assert r.code == 0, r
    t = pd.read_csv(out)
    assert list(t.columns[2:5]) == ["train", "val", "test"]
    n = t[t.variable == "Patients"].iloc[0]
    split = pd.read_csv(run / "split.csv")
    assert int(n["test"]) == int((split.split == "test").sum())
    r = cli("table1", fake_cohort, "--by", "label", "--endpoint", "pfs-median")
    assert r.code == 0 and "label 1" in r.stdout
    r = cli("table1", fake_cohort)
    assert r.code == 2 and "a cohort has no split" in r.stderr


def test_evaluate_ensemble_takes_cohort_from_members(fake_runs, tmp_path):
    from npcai.models.ensemble import ensemble_runs

    members = [fake_runs["segmented_efficientnet_b0"], fake_runs["expand20_efficientnet_b0"]]
    ens = tmp_path / "ens"
    ensemble_runs(members, out=ens)
    m = evaluate_run(ens, n_boot=0, figures=False)
    assert m["roi"] == "segmented+expand20" and m["backbone"] == "efficientnet_b0"
    assert m["c_index"]["kind"] == "survival" and "table" in m["tnm"]
    assert "slice" not in m          # ensembles have no slice predictions


def test_table1_on_the_phantom_cohort(cli, small_cohort, tmp_path):
    """The real clinical.csv written by `npcai ingest` (integer stages, M/F, treatments)."""
    out = tmp_path / "t1.csv"
    r = cli("table1", small_cohort, "--by", "centre", "--out", out)
    assert r.code == 0, r
    t = pd.read_csv(out)
    assert {"age", "sex", "t_stage"} <= set(t.variable)
    assert t[t.variable == "t_stage"]["level"].str.fullmatch(r"T[1-4]").all()
    assert not t.drop(columns=["p_value"]).isna().all(axis=1).any()
