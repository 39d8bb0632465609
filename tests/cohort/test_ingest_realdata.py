"""Real anatomy: OpenKBP head-and-neck CT (NIfTI volumes + target-volume contours, no outcomes)."""
from __future__ import annotations


import pandas as pd
import pytest

from npcai.cohort.clinical_schema import require_columns
from npcai.cohort.model import Cohort
from npcai.cohort.validate import cohort_summary
from npcai.errors import NpcaiError

from shared_data import SHARED, require_shared

KBP = SHARED / "realdata" / "openkbp-hn-ct"


@pytest.fixture(autouse=True, scope="module")
def _real_data():
    """Skip without the OpenKBP sample; under CI fail instead."""
    require_shared(KBP, "the OpenKBP CT sample")


def test_openkbp_ct_ingests_with_ids_only_and_validates(tmp_path, cli):
    ids = ["pt1", "pt2", "pt4"]
    (tmp_path / "ids.csv").write_text("hospital_id\n" + "\n".join(ids) + "\n")
    out = tmp_path / "cohort"
    r = cli("ingest", "--images", KBP / "images", "--contours", KBP / "contours",
            "--clinical", tmp_path / "ids.csv", "--out", out)
    assert r.code == 0, r
    assert "patients 3, scans 3" in r.stdout and "images but no clinical row: 37" in r.stdout
    c = Cohort.load(out)
    assert c.modality == "CT" and c.endpoints == []
    # slices with label 1 (PTV70) and label 2 (elective) match the dataset's own counts
    truth = pd.read_csv(KBP / "patients.csv").set_index("patient_id").loc[ids]
    stats = [c.scan(f"P000{i}_pre_CT").mask_stats for i in (1, 2, 3)]
    assert [s["slices_tumour"] for s in stats] == list(truth["ptv70_slices"])
    assert [s["slices_nodes"] for s in stats] == list(truth["elective_slices"])
    scan = c.scan("P0001_pre_CT")
    assert scan.size == [128, 128, 128] and scan.spacing == pytest.approx([3.906, 3.906, 2.5], abs=1e-3)
    assert c.read_array(scan).min() == -1024
    r = cli("validate", out)
    assert r.code == 0, r
    assert "no endpoints" in r.stdout
    summary = cohort_summary(out)
    assert summary.patients == 3 and int(summary.scans.loc["CT", "pre"]) == 3 and summary.endpoints.empty
    with pytest.raises(NpcaiError, match="needs column 'pfs_months'"):
        require_columns(c.clinical(), ["pfs_months", "pfs_event"], "endpoint pfs-median")
