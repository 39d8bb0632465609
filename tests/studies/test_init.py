"""`npcai study init`: a commented study YAML fitted to the cohort, that validates and that
`npcai study run --dry-run` accepts; never written over an existing file without --force, and
never over an input."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from npcai.studies.init import draft_study
from npcai.studies.schema import STUDY_DIR, load_study


@pytest.fixture
def cohort(small_cohort, tmp_path):
    """A writable copy of the session's small cohort (16 patients, two centres, T1c pre + post)."""
    out = tmp_path / "cohort"
    shutil.copytree(small_cohort, out)
    return out


def _edit_clinical(cohort, fn):
    path = cohort / "clinical.csv"
    fn(pd.read_csv(path)).to_csv(path, index=False)


def test_init_writes_a_commented_study_that_validates_and_dry_runs(cohort, tmp_path, cli):
    out = tmp_path / "my.yaml"
    r = cli("study", "init", cohort, "--design", "peritumoral", "--out", out)
    assert r.code == 0, r
    assert "endpoint: pfs-median" in " ".join(r.stdout.split()) and "--dry-run" in r.stdout
    text = out.read_text()
    assert text.startswith("# Study drafted by `npcai study init` from design peritumoral")
    study = load_study(out)
    assert study.endpoint == "pfs-median" and study.layout == "expansion"
    assert all(roi.sequences == ["T1c"] for roi in study.rois)
    assert study.baseline == ["age", "sex", "t_stage", "n_stage", "stage", "ebv_dna"] and study.tnm_baseline
    assert "# T1c (the design's sequence); patients with each at pre: T1c 16 of 16" in text
    assert "# random split stratified by label and centre (no centre can be held out" in text
    assert study.split.stratify_centre and study.split.test_where is None
    assert study.radiomics is not None and study.radiomics.rois == load_study("peritumoral").radiomics.rois
    for preset in ("paper", "fast"):
        r = cli("study", "run", out, "--cohort", cohort, "--dry-run", "--preset", preset)
        assert r.code == 0, r
        assert "Patients per run" in r.stdout


def test_init_refuses_an_existing_file_without_force_and_an_input_always(cohort, tmp_path, cli):
    out = tmp_path / "my.yaml"
    out.write_text("mine\n")
    r = cli("study", "init", cohort, "--out", out)
    assert r.code == 2 and "exists" in r.stderr and "--force" in r.stderr and out.read_text() == "mine\n"
    r = cli("study", "init", cohort, "--out", out, "--force")
    assert r.code == 0, r
    assert load_study(out).name == "peritumoral_cohort"
    before = {p: p.stat().st_mtime for p in cohort.rglob("*")}
    for target in (cohort / "study.yaml", STUDY_DIR / "peritumoral.yaml"):
        r = cli("study", "init", cohort, "--out", target, "--force")
        assert r.code == 2 and r.stderr.startswith("error:"), r
    assert {p: p.stat().st_mtime for p in cohort.rglob("*")} == before
    assert load_study("peritumoral").name == "peritumoral"


def test_one_centre_and_few_patients_cross_validate(cohort):
    _edit_clinical(cohort, lambda c: c.assign(centre="C1"))
    draft = draft_study(cohort, "peritumoral")
    assert draft.data["split"]["folds"] == 5 and "test_where" not in draft.data["split"]
    assert "fast-cv" not in draft.data["presets"]
    assert draft.comments["split"][0].startswith("5-fold cross-validation")


def test_two_large_centres_hold_one_out_as_external_test(cohort):
    import npcai.studies.init as init

    draft = draft_study(cohort, "peritumoral")
    split = draft.data["split"]
    assert "folds" not in split
    # 16 patients: no centre has 10 labelled patients of both classes, so the split stays random, stratified by centre
    assert split.get("stratify_centre") is True and "test_where" not in split
    clin = pd.read_csv(cohort / "clinical.csv")
    clin["centre"] = ["C1", "C2"] * (len(clin) // 2) + ["C1"] * (len(clin) % 2)
    big = pd.concat([clin.assign(patient_id=clin["patient_id"] + suffix) for suffix in ("", "a", "b")])
    facts = init._choose_split(load_study("peritumoral"), {"seed": 0}, big.set_index("patient_id"), None,
                               "pfs-median")
    assert facts[2] and facts[0]["test_where"].startswith('centre == "C')


def test_missing_design_sequence_and_endpoint_are_replaced_by_what_the_cohort_has(cohort):
    doc = json.loads((cohort / "cohort.json").read_text())
    for p in doc["patients"]:
        for s in p["scans"]:
            s["sequence"] = "T2"
    (cohort / "cohort.json").write_text(json.dumps(doc))
    _edit_clinical(cohort, lambda c: c.drop(columns=["pfs_months", "pfs_event"]))
    draft = draft_study(cohort, "peritumoral")
    assert all(r["sequences"] == ["T2"] for r in draft.data["rois"])
    assert "the design's T1c is missing for 16 of 16 patients" in draft.comments["rois"][0]
    assert draft.data["endpoint"] == "distant-metastasis"
    assert "pfs-median is not available" in draft.comments["endpoint"][0]


def test_cohort_without_any_outcome_or_scans_for_the_design_is_refused(cohort, tmp_path, cli):
    keep = ["patient_id", "centre", "age", "sex"]
    _edit_clinical(cohort, lambda c: c[keep])
    r = cli("study", "init", cohort, "--out", tmp_path / "x.yaml")
    assert r.code == 2 and "no endpoint labels both classes" in r.stderr and not (tmp_path / "x.yaml").exists()


def test_residual_design_keeps_subsets_that_label_both_classes(cohort, tmp_path):
    draft = draft_study(cohort, "residual")
    names = [s["name"] for s in draft.data.get("subsets", [])]
    assert names and set(names) <= {"ccrt", "ic_ccrt", "all"}
    path = tmp_path / "r.yaml"
    path.write_text(draft.to_yaml())
    assert yaml.safe_load(path.read_text())["endpoint"] == "residual-tumour"
    load_study(path)


def test_prepost_design_needs_post_treatment_scans(cohort):
    draft = draft_study(cohort, "prepost")          # the small cohort has post scans
    assert {r["timepoint"] for r in draft.data["rois"]} == {"pre", "post"}
    doc = json.loads((cohort / "cohort.json").read_text())
    for p in doc["patients"]:
        p["scans"] = [s for s in p["scans"] if s["timepoint"] == "pre"]
    (cohort / "cohort.json").write_text(json.dumps(doc))
    from npcai.errors import NpcaiError

    with pytest.raises(NpcaiError, match="pre and post-treatment"):
        draft_study(cohort, "prepost")
