"""Every consumer of a run checks the recorded cohort id and ROI input hash (issue 18 item 5)."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from npcai.errors import NpcaiError


def _moved(run, cohort, tmp_path):
    """A copy of ``run`` and of its cohort, the run's config pointing at the copy."""
    new_cohort = shutil.copytree(cohort, tmp_path / "cohort")
    new_run = shutil.copytree(run, tmp_path / "run")
    cfg = yaml.safe_load((new_run / "config.yaml").read_text())
    cfg["options"]["cohort"] = cfg["cohort"]["path"] = str(new_cohort)
    (new_run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return new_run, new_cohort


@pytest.mark.slow
def test_rebuilt_roi_cache_is_refused_by_explain_and_resume(cli, image_run, runs_cohort, tmp_path):
    from npcai.imaging.roi_cache import RoiDataset, build_roi
    from npcai.models.train import TrainConfig, train
    from npcai.runs import load_run, read_config

    run, cohort = _moved(image_run, runs_cohort, tmp_path)
    assert load_run(run).roi.input_hash == read_config(run).roi.input_hash      # unchanged: fine
    old = RoiDataset.open(cohort, "pre").input_hash
    shutil.rmtree(cohort / "roi" / "pre")
    build_roi(cohort, "pre", "segmented", size=32, min_component=(1, 1))       # same name, other variant
    new = RoiDataset.open(cohort, "pre").input_hash
    with pytest.raises(NpcaiError) as err:
        load_run(run)
    assert old[:12] in str(err.value) and new[:12] in str(err.value)
    r = cli("explain", run, "--out", tmp_path / "exp")
    assert r.code == 2 and r.stderr.strip().count("\n") == 0 and old[:12] in r.stderr
    cfg = TrainConfig(**read_config(run).options)
    with pytest.raises(NpcaiError, match=f"--resume: ROI dataset 'pre' has input hash {new[:12]}.*{old[:12]}"):
        train(cfg, run, resume=True)
    # predict on the run's own cohort does not use the changed cache: it rebuilds the recorded input
    from npcai.runs import predict_patients, read_predictions

    saved = read_predictions(run).patients.set_index("patient_id")
    got = predict_patients(run, cohort, patients=list(saved.index[:3])).patients.set_index("patient_id")
    assert (got["prob"] - saved.loc[got.index, "prob"]).abs().max() <= 1e-6


@pytest.mark.slow
def test_changed_cohort_is_refused_by_evaluate_and_split_from(cli, image_run, runs_cohort, second_cohort, tmp_path):
    from npcai.models.train import TrainConfig, train
    from npcai.runs import cohort_id, read_config, read_run
    from npcai.stats.evaluate import run_clinical

    run, cohort = _moved(image_run, runs_cohort, tmp_path)
    assert len(run_clinical(read_run(run))) == 16          # the recorded cohort: accepted
    recorded = read_config(run).cohort_id
    clinical = pd.read_csv(cohort / "clinical.csv", dtype={"patient_id": str})
    clinical.loc[0, "pfs_months"] = float(clinical.loc[0, "pfs_months"]) + 7.0   # follow-up edited
    clinical.to_csv(cohort / "clinical.csv", index=False)
    now = cohort_id(cohort)
    r = cli("evaluate", run, "--n-boot", "0", "--no-figures")
    assert r.code == 2 and r.stderr.strip().count("\n") == 0
    assert recorded[:12] in r.stderr and now[:12] in r.stderr
    # --split-from a run trained on another cohort
    from npcai.imaging.roi_cache import build_roi

    other = shutil.copytree(second_cohort, tmp_path / "second")
    build_roi(other, "pre", "bbox:5mm", size=32, min_component=(1, 1))
    cfg = TrainConfig(cohort=str(other), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, epochs=1, split_from=str(image_run))
    with pytest.raises(NpcaiError, match="--split-from .* is not the cohort run image was trained on"):
        train(cfg, tmp_path / "other")
