"""Study preflight (`npcai study run ... --dry-run --cohort`): patients labelled, excluded and
lost per run; an absent endpoint or sequence refused in one line."""
from __future__ import annotations

import shutil

import pytest

from npcai.errors import NpcaiError
from npcai.studies.preflight import preflight
from npcai.studies.runner import resolve_study


@pytest.fixture
def damaged_cohort(small_cohort, tmp_path):
    """A copy of the small cohort where one patient lost its pre-treatment scan and another
    its manual mask."""
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.cohort.model import Cohort

    out = tmp_path / "cohort"
    shutil.copytree(small_cohort, out)
    cohort = Cohort.load(out)
    labelled = endpoint_labels(cohort.clinical(), "pfs-median").labels.index
    a, b = [p for p in cohort.patients if p.patient_id in labelled][:2]
    a.scans = [s for s in a.scans if s.timepoint != "pre"]
    for s in b.scans:
        if s.timepoint == "pre":
            s.mask = None
    cohort.save()
    return out, a.patient_id, b.patient_id


def test_preflight_counts_labelled_excluded_and_lost(damaged_cohort):
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.cohort.model import Cohort

    cohort, no_scan, no_mask = damaged_cohort
    resolved = resolve_study("peritumoral", "fast", rois=["original", "segmented"])
    table = preflight(resolved, cohort).set_index("roi")
    ep = endpoint_labels(Cohort.load(cohort).clinical(), "pfs-median")
    assert (table["labelled"] == len(ep.labels)).all() and (table["label_1"] == int(ep.labels.sum())).all()
    lost_seq, lost_mask = 1, 1
    assert (table["lost_sequence"] == lost_seq).all() and (table["lost_mask"] == lost_mask).all()
    assert (table["trainable"] == len(ep.labels) - lost_seq - lost_mask).all()
    reasons = ep.excluded_counts()
    assert table["excluded"].iloc[0] == ("; ".join(f"{n} {k}" for k, n in reasons.items()) or "none")


def test_preflight_refuses_absent_endpoint_or_sequence(small_cohort):
    with pytest.raises(NpcaiError, match="needs sequence T2") as exc:
        preflight(resolve_study("peritumoral", "fast", sequences=["T1c", "T2"]), small_cohort)
    assert "\n" not in str(exc.value)
    with pytest.raises(NpcaiError, match="no_such_column"):
        preflight(resolve_study("peritumoral", "fast", endpoint="no_such_column"), small_cohort)


def test_dry_run_prints_the_preflight(cli, small_cohort):
    r = cli("study", "run", "peritumoral", "--preset", "fast-cv", "--dry-run", "--cohort", small_cohort,
            "--rois", "segmented,expand20")
    assert r.code == 0, r
    assert "2 runs" in r.stdout and "Patients per run" in r.stdout and "excluded (no label)" in r.stdout
    r = cli("study", "run", "peritumoral", "--preset", "fast", "--dry-run", "--cohort", small_cohort,
            "--sequences", "T2")
    assert r.code == 2 and "needs sequence T2" in r.stderr and r.stderr.strip().count("\n") == 0


def test_dry_run_names_the_clinical_baseline_covariates(small_cohort, cli):
    from npcai.studies.preflight import baseline_plan

    resolved = resolve_study("peritumoral", "fast")
    line = baseline_plan(resolved, small_cohort)
    assert line.startswith("clinical baseline and combined model on: age, sex, t_stage, n_stage, stage, ebv_dna")
    assert line.endswith("TNM baseline: yes")
    named = resolved.study.model_copy(update={"baseline": ["age", "grade"]}).resolve()
    with pytest.raises(NpcaiError, match="baseline covariate 'grade' is not a column"):
        baseline_plan(named, small_cohort)
    r = cli("study", "run", "peritumoral", "--preset", "fast", "--cohort", small_cohort, "--dry-run")
    assert r.code == 0 and "clinical baseline and combined model on: age" in " ".join(r.stdout.split())
