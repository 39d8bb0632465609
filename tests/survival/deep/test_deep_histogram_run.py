"""Histogram standardisation learnt inside a run (``normalise: histogram``): training patients
only, kept with the run, applied identically by ``npcai predict`` on any cohort."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from npcai.survival.deep.task import PREDICTION_COLUMNS


@pytest.fixture(scope="module")
def hist_run(train_cohort, tmp_path_factory, one_torch_thread):
    """A survival run with normalise=histogram on a private copy of the cohort, and the scans
    whose histograms the landmarks were learnt from (a spy on HistogramStandardiser.fit)."""
    from npcai.imaging.histogram import HistogramStandardiser
    from npcai.models.train import TrainConfig, train

    root = tmp_path_factory.mktemp("hist")
    cohort = root / "cohort_a"
    shutil.copytree(train_cohort, cohort)
    fitted: list[str] = []
    original = HistogramStandardiser.fit

    def spy(self, volumes, masks=None, names=None):
        fitted.extend(names or [])
        return original(self, volumes, masks, names)

    cfg = TrainConfig(cohort=str(cohort), roi="pre", endpoint="dfs", task="survival", unit="patient",
                      backbone="resnet18", pretrained=False, lr=1e-3, batch_size=8, bag_size=2, epochs=1,
                      seed=3, normalise="histogram")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HistogramStandardiser, "fit", spy)
        result = train(cfg, root / "run")
    return result.run_dir, cohort, fitted


def test_landmarks_learnt_on_training_patients_only_and_kept_with_the_run(hist_run):
    from npcai.cohort.model import Cohort
    from npcai.fsutil import file_sha256
    from npcai.imaging.histogram import load_standardisers
    from npcai.runs import LANDMARKS, read_config, read_split

    run, cohort, fitted = hist_run
    split = read_split(run)["split"]
    patient_of = {s.scan_id: s.patient_id for s in Cohort.load(cohort).scans()}
    learnt_from = {patient_of[scan] for scan in fitted}
    assert learnt_from == set(split.index[split == "train"])       # every training patient ...
    assert not learnt_from & set(split.index[split.isin(["val", "test"])])   # ... and nobody else
    assert len(fitted) == len(learnt_from)                          # one T1c scan each
    config = read_config(run)
    stds = load_standardisers(run / LANDMARKS)
    assert list(stds) == ["T1c"] and stds["T1c"].n_volumes_ == len(learnt_from)
    assert config.options["normalise"] == "histogram"
    assert config.raw["histogram"]["n_patients"] == len(learnt_from)
    normalisation = config.roi.params["normalisation"]
    assert normalisation.startswith("histogram:") and normalisation.endswith("#" + file_sha256(run / LANDMARKS)[:16])
    assert config.roi.name.startswith("pre-hist-")
    from npcai.runs import load_run

    assert load_run(run).roi.root.name == config.roi.name      # explain and serve open the run's own input


def test_predict_on_a_moved_cohort_rebuilds_with_the_runs_landmarks(hist_run, cli, tmp_path):
    """The training cohort moved and its ROI caches and landmarks deleted: predict rebuilds the
    input with the run's own landmarks and reproduces the saved test predictions."""
    from npcai.imaging.roi_cache import RoiDataset, list_rois
    from npcai.runs import LANDMARKS, read_config, read_predictions

    run, cohort, _ = hist_run
    moved = tmp_path / "cohort_b"
    shutil.copytree(cohort, moved)
    shutil.rmtree(moved / "roi")
    saved = read_predictions(run).patients.set_index("patient_id")
    test = saved.index[saved["split"] == "test"]
    r = cli("predict", run, moved, "--out", tmp_path / "pred", "--patients", ",".join(test))
    assert r.code == 0, r.stderr
    again = read_predictions(tmp_path / "pred").patients.set_index("patient_id").loc[test]
    assert (again["split"] == "test").all()
    np.testing.assert_allclose(again[list(PREDICTION_COLUMNS)].astype(float),
                               saved.loc[test, list(PREDICTION_COLUMNS)].astype(float), rtol=1e-4, atol=1e-5)
    (built,) = list_rois(moved)
    params = RoiDataset.open(moved, built).params
    assert params["normalisation"].startswith(f"histogram:{(run / LANDMARKS).resolve()}#")
    assert params["normalisation"].endswith(read_config(run).roi.params["normalisation"].rsplit("#")[1])


def test_predict_refuses_changed_landmarks(hist_run, cli, tmp_path):
    from npcai.runs import LANDMARKS

    run, cohort, _ = hist_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    text = (copy / LANDMARKS).read_text()
    (copy / LANDMARKS).write_text(text.replace('"n_volumes": ', '"n_volumes": 1', 1))
    moved = tmp_path / "cohort_c"
    shutil.copytree(cohort, moved)
    shutil.rmtree(moved / "roi")
    r = cli("predict", copy, moved, "--out", tmp_path / "pred")
    assert r.code == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "not the ones run" in r.stderr and LANDMARKS in r.stderr
    assert not (tmp_path / "pred").exists()


def test_normalise_option_is_checked(train_cohort, cli, tmp_path):
    r = cli("train", train_cohort, "--roi", "pre", "--endpoint", "dfs", "--task", "survival", "--unit", "patient",
            "--no-pretrained", "--normalise", "zscore", "--out", tmp_path / "run")
    assert r.code == 2 and "--normalise 'zscore'" in r.stderr and not (tmp_path / "run").exists()
