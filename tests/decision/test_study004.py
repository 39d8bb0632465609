"""Study 004 end to end on a tiny phantom: `npcai study run` of a decision study, its report, and
`npcai recommend decision` on the same patients; bad inputs."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

TINY = """\
kind: decision
name: tiny_decision
title: "Tiny decision study"
endpoint: dfs
roi: {name: tumour, variant: "bbox:10mm", region: primary, slices: tumour, sequences: [T1c]}
backbone: resnet18
training: {task: survival, epochs: 1, patience: 1, batch_size: 16, bag_size: 2, lr: 0.001, size: 32,
           pretrained: false, augment: false}
split: {test_where: 'centre == "C2"', test_fraction: 0.25, val_fraction: 0.3, seed: 0}
matching: {caliper: null, exact: []}
decision: {calibration_boot: 0, calibration_group_size: 10, n_boot: 20, thresholds: [0, 2, 5],
           subgroups: [sex, age, tumour_volume, centre, field_strength]}
"""


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    root = tmp_path_factory.mktemp("decision")
    generate_phantom(root / "export", patients=70, size=64, slices=4, seed=4, centres=2, sequences=("T1c",))
    ingest(root / "export" / "dicom", clinical=root / "export" / "clinical.csv", out=root / "cohort",
           contours=root / "export" / "contours")
    (root / "tiny.yaml").write_text(TINY)
    return root


@pytest.fixture(scope="module")
def tiny_study(tiny_cohort, one_torch_thread):
    from npcai.decision.study004 import run_decision_study

    root = tiny_cohort
    result = run_decision_study(root / "tiny.yaml", out=root / "study", cohort=root / "cohort", threads=1)
    return root, result


def test_decision_study_end_to_end(tiny_study):
    root, result = tiny_study
    out = root / "study"
    html = result.report.read_text()
    for section in ("Cohorts, matching and exclusions", "The CPTDN nomogram", "CPTDN vs clinical models",
                    "Risk stratification", "Treatment recommendation by the DFS difference", "Second endpoints",
                    "C-for-benefit", "Scored against the truth (phantom)", "Runs and reproducibility"):
        assert section in html, section
    figs = {p.name for p in (out / "report" / "figures").glob("*.png")}
    assert {"fig2a_nomogram.png", "fig3_cindex.png", "fig4_risk_groups.png", "fig5_preferred_0pp.png",
            "fig5_preferred_5pp.png"} <= figs
    a = result.analysis
    # the CPTDN is fitted on training patients only and keeps the treatment x Predictive-score term
    assert "treatment:predictive_score" in a.cptdn.terms
    assert a.cptdn.n == len(a.cohorts["Training"])
    assert set(a.cindex["model"]) == {"CPTDN", "Model_clin_all", "Model_clin_ccrt", "Model_clin_ict+ccrt",
                                      "Model_clin+prog"}
    # matched 1:1, external test = centre C2 only
    matched = pd.read_csv(out / "matching" / "matched.csv")["patient_id"]
    assert set(a.table.index) <= set(matched)
    ext = a.table[a.table["cohort"] == "External test"]
    assert len(ext) and (ext["centre"] == "C2").all()
    assert not (a.table[a.table["cohort"] != "External test"]["centre"] == "C2").any()
    # the recommendation columns follow the rule on the table's own differences
    pt = pd.read_csv(out / "report" / "tables" / "patients.csv")
    for t in (0, 2, 5):
        expected = ["IC+CCRT" if d > t else "CCRT" for d in pt["difference_pp"]]
        assert pt[f"recommended_{t}pp"].tolist() == expected
    assert {"true_dfs5_ccrt", "true_best"} <= set(pt.columns)
    assert not pt["patient_id"].str.startswith(("ZS", "FS")).any()        # pseudonyms only
    doc = json.loads((out / "model" / "cptdn.json").read_text())
    assert doc["format"] == "npcai-cptdn/1" and set(doc["score_scaling"]) == {"prognostic_score", "predictive_score"}
    assert any("field_strength" in n for n in a.notes)     # a subgroup factor the cohort lacks is named
    # truth scores next to their baselines (physicians, one treatment for all), at each threshold
    assert {"physicians' choices", "always CCRT", "always IC+CCRT", "CPTDN, difference > 2 pp"} <= set(a.truth["policy"])
    assert (a.truth["n"] > 0).all() and a.truth["rate"].between(0, 1).all()
    assert a.oracle is not None and a.oracle["oracle_c_index"].between(0, 1).all()


def test_rerun_reuses_the_deep_run(tiny_study):
    from npcai.decision.study004 import run_decision_study

    root, first = tiny_study
    again = run_decision_study(root / "tiny.yaml", out=root / "study", cohort=root / "cohort", threads=1)
    assert again.status == "reused"
    pd.testing.assert_frame_equal(again.analysis.cindex, first.analysis.cindex)


def test_recommend_applies_the_study_to_patients(tiny_study, cli):
    root, result = tiny_study
    pt = pd.read_csv(root / "study" / "report" / "tables" / "patients.csv").set_index("patient_id")
    some = list(pt.index[:4])
    r = cli("recommend", "decision", root / "study", "--cohort", root / "cohort", "--patients", ",".join(some),
            "--threshold", "2", "--out", root / "rec")
    assert r.code == 0, r.stderr
    rec = pd.read_csv(root / "rec" / "recommendations.csv").set_index("patient_id")
    assert list(rec.index) == some
    # the same numbers as the study's own table: deep scores re-predicted, nomogram applied
    for col in ("dfs_ccrt", "dfs_ic_ccrt", "difference_pp"):
        pd.testing.assert_series_equal(rec[col], pt.loc[some, col], check_names=False, atol=1e-4)
    assert rec["recommended"].tolist() == pt.loc[some, "recommended_2pp"].tolist()


@pytest.mark.parametrize("args, msg", [
    (["--threshold", "150"], "between 0 and 100"),
    (["--threshold", "-2"], "between 0 and 100"),
])
def test_recommend_bad_threshold(tiny_study, cli, args, msg):
    root, _ = tiny_study
    r = cli("recommend", "decision", root / "study", "--cohort", root / "cohort", "--out", root / "bad", *args)
    assert r.code == 2 and msg in r.stderr and len([x for x in r.stderr.splitlines() if x.strip()]) == 1
    assert not (root / "bad").exists()


def test_recommend_refuses_a_folder_that_is_not_a_decision_study(tiny_study, cli):
    root, _ = tiny_study
    r = cli("recommend", "decision", root / "cohort", "--cohort", root / "cohort", "--out", root / "bad2")
    assert r.code == 2 and "not a finished decision study" in r.stderr


def test_cohort_without_treatment_column(tiny_study, cli, tmp_path):
    root, _ = tiny_study
    cohort = tmp_path / "cohort"
    shutil.copytree(root / "cohort", cohort)
    shutil.copy(root / "cohort.pseudonyms.csv", tmp_path / "cohort.pseudonyms.csv")
    clin = pd.read_csv(cohort / "clinical.csv").drop(columns=["treatment"])
    clin.to_csv(cohort / "clinical.csv", index=False)
    r = cli("study", "run", root / "tiny.yaml", "--cohort", cohort, "--out", tmp_path / "s")
    assert r.code == 2 and "no 'treatment' column" in r.stderr
    assert not (tmp_path / "s").exists()


def test_dry_run_and_list(cli):
    r = cli("study", "run", "decision", "--preset", "fast", "--dry-run")
    assert r.code == 0 and "1 deep survival run" in r.stdout
    r = cli("study", "list")
    assert r.code == 0 and "decision" in r.stdout


def test_calibration_findings_name_the_cohorts_the_test_rejects():
    from npcai.decision.study004 import _calibration_findings

    cal = pd.DataFrame({"cohort": ["Training", "Internal test", "External test", "Training"],
                        "months": [60, 60, 60, 36], "ici": [0.010, 0.242, 0.225, 0.002],
                        "gof_p": [0.751, 0.003, 0.0002, 0.64]})
    lines = _calibration_findings(cal)
    assert len(lines) == 2 and lines[0].startswith("Calibration of the predicted 36-month DFS")
    assert "rejects calibration in no cohort" in lines[0]
    assert ("training ICI 0.010 (D'Agostino-Nam p = 0.751); internal test ICI 0.242 (D'Agostino-Nam p = 0.003); "
            "external test ICI 0.225 (D'Agostino-Nam p < 0.001)") in lines[1]
    assert "rejects calibration in the internal test and external test cohorts (p < 0.05)" in lines[1]
    assert _calibration_findings(pd.DataFrame()) == []
