"""``npcai survival ...`` end to end: on the phantom cohort, on a CSV table, and on a run's predictions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory) -> Path:
    """The R fixture cox.csv as a clinical table with patient ids and dfs columns."""
    d = pd.read_csv(FIX / "cox.csv")
    d.insert(0, "patient_id", [f"P{i:04d}" for i in range(1, len(d) + 1)])
    d = d.rename(columns={"time": "dfs_months", "event": "dfs_event"})
    d["split"] = np.where(np.arange(len(d)) % 3 == 0, "test", "train")
    path = tmp_path_factory.mktemp("table") / "clinical.csv"
    d.to_csv(path, index=False)
    return path


def test_km_on_the_phantom_cohort_writes_tables_and_figure(cli, small_cohort, tmp_path):
    out = tmp_path / "km"
    r = cli("survival", "km", small_cohort, "--endpoint", "dfs", "--by", "treatment", "--at", "12", "--out", out)
    assert r.code == 0, r
    assert "log-rank chi2" in r.stdout
    for f in ("km_summary.csv", "km_table.csv", "logrank.csv", "hazard_ratios.csv", "km.png", "summary.json"):
        assert (out / f).is_file(), f
    summary = pd.read_csv(out / "km_summary.csv")
    assert summary.n.sum() == 16
    assert {"S(12)", "S(12)_low", "S(12)_high"} <= set(summary.columns)


def test_cox_with_interaction_writes_the_interaction_test(cli, table_csv, tmp_path):
    out = tmp_path / "cox"
    r = cli("survival", "cox", table_csv, "--endpoint", "dfs", "--covariates", "age,ebv,treatment*score",
            "--at", "36,60", "--out", out)
    assert r.code == 0, r
    tests = pd.read_csv(out / "cox_tests.csv")
    inter = tests[tests.test == "Wald: treatment:score"]
    assert len(inter) == 1 and inter.p_value.iloc[0] < 0.05
    assert set(pd.read_csv(out / "cox_zph.csv").term) >= {"age", "GLOBAL"}
    assert {"S(36)", "S(60)"} <= set(pd.read_csv(out / "cox_predictions.csv").columns)
    assert len(pd.read_csv(out / "cox_univariate.csv")) == 4


def test_stepwise_nomogram_and_calibrate(cli, table_csv, tmp_path):
    r = cli("survival", "stepwise", table_csv, "--time", "dfs_months", "--event", "dfs_event", "--covariates",
            "age,sex,C(t_stage),ebv,noise,treatment*score", "--out", tmp_path / "step")
    assert r.code == 0, r
    final = json.loads((tmp_path / "step" / "summary.json").read_text())["final_terms"]
    assert "treatment:score" in final
    r = cli("survival", "nomogram", table_csv, "--endpoint", "dfs", "--covariates", "age,ebv,treatment*score",
            "--out", tmp_path / "nomo")
    assert r.code == 0, r
    nom = json.loads((tmp_path / "nomo" / "nomogram.json").read_text())
    assert nom["format"] == "npcai-nomogram/1"
    assert {a["label"] for a in nom["axes"]} >= {"score (treatment=CCRT)", "score (treatment=IC+CCRT)"}
    points = pd.read_csv(tmp_path / "nomo" / "nomogram_points.csv")
    assert len(points) == 160 and points["S(60)"].between(0, 1).all()
    r = cli("survival", "calibrate", table_csv, "--endpoint", "dfs", "--covariates", "age,ebv,treatment*score",
            "--at", "36", "--m", "40", "--n-boot", "5", "--out", tmp_path / "cal")
    assert r.code == 0, r
    assert "ICI" in r.stdout and (tmp_path / "cal" / "calibration_36.png").is_file()
    groups = pd.read_csv(tmp_path / "cal" / "calibration_36.csv")
    assert len(groups) == 4 and groups.km_corrected.notna().all()


def test_risk_groups_fix_the_threshold_on_the_training_split(cli, table_csv, tmp_path):
    out = tmp_path / "risk"
    r = cli("survival", "risk-groups", table_csv, "--endpoint", "dfs", "--score", "score", "--out", out)
    assert r.code == 0, r
    s = json.loads((out / "summary.json").read_text())
    d = pd.read_csv(table_csv)
    assert s["threshold"] == pytest.approx(d[d.split == "train"].score.median())
    assert {c["cohort"] for c in s["cohorts"]} == {"train", "test"}
    assert (out / "km_test.png").is_file()


def test_risk_groups_from_a_saved_nomogram_cut_at_the_training_mean(cli, table_csv, tmp_path):
    assert cli("survival", "nomogram", table_csv, "--endpoint", "dfs", "--covariates", "age,ebv,treatment*score",
               "--out", tmp_path / "nomo").code == 0
    out = tmp_path / "risk"
    r = cli("survival", "risk-groups", table_csv, "--endpoint", "dfs", "--nomogram", tmp_path / "nomo" / "nomogram.json",
            "--rule", "mean", "--out", out)
    assert r.code == 0, r
    groups = pd.read_csv(out / "risk_groups.csv")
    train = groups[groups.split == "train"]
    assert json.loads((out / "summary.json").read_text())["threshold"] == pytest.approx(train.total_points.mean())
    points = pd.read_csv(tmp_path / "nomo" / "nomogram_points.csv")
    assert np.allclose(groups.total_points, points.total_points)


def test_subgroups_and_cindex(cli, table_csv, tmp_path):
    r = cli("survival", "subgroups", table_csv, "--endpoint", "dfs", "--by", "treatment", "--factors", "sex,age",
            "--out", tmp_path / "sub")
    assert r.code == 0, r
    assert pd.read_csv(tmp_path / "sub" / "subgroups.csv").p_interaction.notna().sum() == 4
    r = cli("survival", "cindex", table_csv, "--endpoint", "dfs", "--scores", "score,ebv", "--n-boot", "50",
            "--out", tmp_path / "cidx")
    assert r.code == 0, r
    assert len(pd.read_csv(tmp_path / "cidx" / "cindex_pairs.csv")) == 1


@pytest.fixture(scope="module")
def phantom_clinical_csv(tmp_path_factory) -> Path:
    """The default phantom's clinical table (``npcai phantom`` defaults: 120 patients, seed 0) as ingest
    reads it (stages as numbers), without images, as a CSV."""
    from npcai.cohort.clinical_schema import validate_clinical
    from npcai.cohort.phantom.clinical import CLINICAL_COLUMNS, simulate_patients

    d = validate_clinical(simulate_patients(120, seed=0)[CLINICAL_COLUMNS]).drop(columns="hospital_id")
    d.insert(0, "patient_id", [f"P{i:04d}" for i in range(1, len(d) + 1)])
    path = tmp_path_factory.mktemp("phantom") / "clinical.csv"
    d.to_csv(path, index=False)
    return path


def test_match_balances_the_default_phantom(cli, phantom_clinical_csv, tmp_path):
    # issue 13's done-when: every |SMD| < 0.1 after matching with the default recipe
    out = tmp_path / "match"
    r = cli("survival", "match", phantom_clinical_csv, "--treatment", "treatment", "--covariates",
            "age,t_stage,n_stage,ebv_dna", "--out", out)
    assert r.code == 0, r
    assert "SMD after" in r.stdout and "patients per arm" in r.stdout and "warning" not in r.stderr
    bal = pd.read_csv(out / "balance.csv").set_index("covariate")
    assert list(bal.index) == ["propensity (logit)", "age", "t_stage", "n_stage", "ebv_dna"]
    assert (bal.smd_before.abs() > 0.5).sum() >= 3                   # physicians confound by stage
    assert (bal.smd_after.abs() < 0.1).all()
    counts = pd.read_csv(out / "counts.csv").set_index("arm")
    pairs = pd.read_csv(out / "pairs.csv")
    assert counts.matched.tolist() == [len(pairs)] * 2 and (counts["all"] == counts.matched + counts.unmatched).all()
    ids = (out / "matched_patients.txt").read_text().split()
    assert len(ids) == 2 * len(pairs) == len(set(ids))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["balanced"] and summary["exact"] == ["t_stage", "n_stage"]


def test_matchits_default_leaves_imbalance_and_says_so_in_one_line(cli, phantom_clinical_csv, tmp_path):
    out = tmp_path / "match"
    r = cli("survival", "match", phantom_clinical_csv, "--treatment", "treatment", "--covariates",
            "age,t_stage,n_stage,ebv_dna", "--distance", "propensity", "--caliper", "none", "--ps-scale",
            "probability", "--exact", "none", "--covariate-caliper", "none", "--out", out)
    assert r.code == 0, r
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning: balance not reached")]
    assert len(warnings) == 1 and "t_stage" in warnings[0]
    assert json.loads((out / "summary.json").read_text())["balanced"] is False
    assert len(pd.read_csv(out / "pairs.csv")) == 57                 # every treated patient, no caliper


@pytest.mark.parametrize("args,message", [
    (["--caliper", "wide"], "--caliper 'wide'"),
    (["--covariate-caliper", "age=x"], "--covariate-caliper 'age=x'"),
    (["--covariate-caliper", "sex=0.2"], "caliper on 'sex', which is not a covariate"),
    (["--distance", "euclid"], "distance 'euclid'"),
    (["--caliper", "1e-9"], "no treated patient has an eligible"),
])
def test_bad_match_options_are_one_error_line(cli, phantom_clinical_csv, tmp_path, args, message):
    r = cli("survival", "match", phantom_clinical_csv, "--treatment", "treatment", "--covariates",
            "age,t_stage,n_stage,ebv_dna", *args, "--out", tmp_path / "o")
    assert r.code == 2, r
    lines = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


def test_subgroups_by_scan_facts_of_the_cohort_in_one_command(cli, small_cohort, tmp_path):
    # study 004's Fig. D3/D6 factors: clinical columns and the cohort's per-patient scan facts
    from npcai.cohort.model import Cohort
    from npcai.survival.io import load_table, scan_facts

    facts = scan_facts(Cohort.load(small_cohort))
    assert facts.manufacturer.notna().all() and set(facts.field_strength_t) <= {1.5, 3.0}
    assert (facts.tumour_volume_ml > 0).all() and (facts.slice_thickness_mm > 0).all()
    table = load_table(small_cohort)
    assert {"manufacturer", "field_strength_t", "tumour_volume_ml"} <= set(table.columns)
    assert table.centre.tolist() == pd.read_csv(small_cohort / "clinical.csv").centre.tolist()   # clinical wins
    out = tmp_path / "sub"
    factors = "sex,age,tumour_volume_ml,centre,field_strength_t,manufacturer"
    r = cli("survival", "subgroups", small_cohort, "--endpoint", "dfs", "--by", "treatment", "--factors", factors,
            "--cuts", "age=45", "--out", out)
    assert r.code == 0, r
    tab = pd.read_csv(out / "subgroups.csv")
    assert set(tab.factor) == {"All patients", "sex", "age (cut 45)", "tumour_volume_ml (median cut)", "centre",
                               "field_strength_t", "manufacturer"}
    by_maker = tab[tab.factor == "manufacturer"].set_index("subgroup").n
    assert by_maker.to_dict() == facts.manufacturer.value_counts().to_dict()
    assert (out / "forest.png").is_file()
    r = cli("survival", "subgroups", small_cohort / "clinical.csv", "--endpoint", "dfs", "--by", "treatment",
            "--factors", "manufacturer", "--out", tmp_path / "o")
    assert r.code == 2 and "scan facts are joined from a cohort folder" in r.stderr


def test_a_runs_prob_joins_as_a_covariate(cli, small_cohort, tmp_path):
    clin = pd.read_csv(small_cohort / "clinical.csv", dtype={"patient_id": str})
    run = tmp_path / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame({"patient_id": clin.patient_id, "split": ["train"] * 10 + ["test"] * 6, "label": 0,
                  "prob": rng.uniform(size=len(clin)), "n_slices": 4}).to_csv(run / "predictions_patients.csv",
                                                                               index=False)
    r = cli("survival", "cox", small_cohort, "--run", run, "--endpoint", "dfs", "--covariates", "prob",
            "--out", tmp_path / "cox")
    assert r.code == 0, r
    assert pd.read_csv(tmp_path / "cox" / "cox_coefficients.csv").term.tolist() == ["prob"]
    r = cli("survival", "risk-groups", small_cohort, "--run", run, "--endpoint", "dfs", "--out", tmp_path / "rg")
    assert r.code == 0, r


@pytest.mark.parametrize("args,message", [
    (["km", "--endpoint", "nope", "--by", "treatment"], "endpoint 'nope' is not one of"),
    (["km", "--by", "treatment"], "no survival outcome"),
    (["cox", "--endpoint", "dfs", "--covariates", "age,missing_col"], "column 'missing_col' not found"),
    (["km", "--endpoint", "dfs", "--by", "treatment", "--at", "3x"], "--at '3x'"),
    (["match", "--treatment", "sex", "--covariates", "age"], None),
])
def test_bad_input_is_one_error_line_exit_2(cli, small_cohort, tmp_path, args, message):
    r = cli("survival", args[0], small_cohort, *args[1:], "--out", tmp_path / "o")
    if message is None:          # sex has two values: a valid (if odd) matching request
        assert r.code == 0, r
        return
    assert r.code == 2, r
    lines = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "o").exists()


def test_output_folder_is_never_overwritten_silently(cli, small_cohort, tmp_path):
    out = tmp_path / "km"
    assert cli("survival", "km", small_cohort, "--endpoint", "dfs", "--out", out).code == 0
    r = cli("survival", "km", small_cohort, "--endpoint", "dfs", "--out", out)
    assert r.code == 2 and "not empty" in r.stderr


def test_help_lists_every_command_with_an_example(cli):
    r = cli("survival", "--help")
    for c in ("km", "cox", "stepwise", "nomogram", "calibrate", "risk-groups", "subgroups", "match", "cindex"):
        assert c in r.stdout
        sub = cli("survival", c, "--help")
        assert sub.code == 0 and "Example: npcai survival " + c in " ".join(sub.stdout.split())
