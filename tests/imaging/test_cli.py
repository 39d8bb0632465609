"""`npcai roi build` and `npcai roi preview` end to end on the shared small phantom cohort."""
from __future__ import annotations

import shutil

import numpy as np

from npcai.imaging.roi_cache import RoiDataset


def test_roi_build_and_preview_on_small_cohort(small_cohort, tmp_path, cli):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    r = cli("roi", "build", cohort, "--variant", "expand:3mm", "--name", "nodes3mm",
            "--region", "nodes", "--size", "32", "--min-component", "3x3")
    assert r.code == 0, r
    ds = RoiDataset.open(cohort, "nodes3mm")
    assert f"{len(ds)} slices from {ds.params['n_patients']} patients" in r.stdout
    assert len(ds) > 0 and ds.images.shape[1:] == (1, 32, 32)
    assert (ds.index.region == "nodes").all() and (ds.index.nodes_area_px > 0).all()
    assert np.isfinite(np.asarray(ds.images, np.float32)).all()

    r = cli("roi", "build", cohort, "--variant", "bbox", "--name", "both_max1", "--region", "both",
            "--slices", "max-area:1", "--timepoint", "post", "--size", "32", "--min-component", "0")
    assert r.code == 0, r
    both = RoiDataset.open(cohort, "both_max1")
    assert both.index.groupby("patient_id").size().max() == 1
    assert (both.index.timepoint == "post").all()

    r = cli("roi", "build", cohort, "--variant", "expand:5", "--name", "bad")
    assert r.code == 2 and "error: variant 'expand:5' is not valid" in r.stderr
    assert not (cohort / "roi" / "bad").exists()

    pid = ds.index.patient_id.iloc[0]
    r = cli("roi", "preview", cohort, "--patient", pid, "--variants", "original,segmented,expand:5px",
            "--size", "64", "--min-component", "3x3")
    assert r.code == 0, r
    png = cohort / "roi" / "previews" / f"{pid}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    r = cli("roi", "preview", cohort, "--patient", "P9999")
    assert r.code == 2 and "P9999" in r.stderr
