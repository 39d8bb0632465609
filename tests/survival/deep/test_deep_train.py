"""The survival task through the one trainer: run folder, honest selection, evaluate, bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from npcai.survival.deep.task import OUTCOME_COLUMNS, PREDICTION_COLUMNS

SURV = ("--task", "survival", "--unit", "patient", "--backbone", "resnet18", "--no-pretrained",
        "--lr", "1e-3", "--batch-size", "8", "--bag-size", "2", "--epochs", "1")


def _config(cohort, **kw):
    from npcai.models.train import TrainConfig

    base = dict(cohort=str(cohort), roi="pre", endpoint="dfs", task="survival", unit="patient",
                backbone="resnet18", pretrained=False, lr=1e-3, batch_size=8, bag_size=2, epochs=2, seed=0)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def surv_run(train_cohort, tmp_path_factory, one_torch_thread):
    from npcai.models.train import train

    return train(_config(train_cohort), tmp_path_factory.mktemp("surv") / "run")


def test_survival_run_writes_scores_and_selects_on_val_c_index(surv_run):
    from npcai.runs import read_config
    from npcai.runs.folder import read_predictions

    run = surv_run.run_dir
    pats = read_predictions(run).patients
    for col in ("patient_id", "split", *OUTCOME_COLUMNS, *PREDICTION_COLUMNS, "n_slices"):
        assert col in pats.columns, col
    assert np.isfinite(pats[list(PREDICTION_COLUMNS)].to_numpy()).all()
    # log-hazard under each arm = g -/+ f/2 (the modified covariate coding)
    np.testing.assert_allclose(pats["log_hazard_ic_ccrt"] - pats["log_hazard_ccrt"], pats["predictive_score"],
                               rtol=1e-5, atol=1e-5)
    assert set(pats["split"]) == {"train", "val", "test"}
    assert (pats["label"] == pats["event"]).all()
    history = pd.read_csv(run / "history.csv")
    assert "val_c_index" in history.columns and len(history) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "survival" and summary["monitor"] == "val_c_index"
    assert summary["val_c_index"] == pytest.approx(history.set_index("epoch").loc[surv_run.best_epoch, "val_c_index"])
    assert read_config(run).raw["task"] == "survival"
    assert (run / "checkpoints" / "best.ckpt").is_file() and not list(run.parent.glob(".*partial*"))


def test_evaluate_survival_run(cli, surv_run):
    r = cli("evaluate", surv_run.run_dir)
    assert r.code == 0, r.stderr
    m = json.loads((surv_run.run_dir / "metrics.json").read_text())
    assert m["task"] == "survival" and list(m["cohorts"]) == ["train", "val", "test"]
    train = m["cohorts"]["train"]
    c = train["c_index_prognostic"]
    assert 0 <= c["low"] <= c["c_index"] <= c["high"] <= 1
    assert set(train["hr_per_sd"]) == {"prognostic_score", "predictive_score"}
    hr = train["hr_per_sd"]["prognostic_score"]
    assert "unavailable" in hr or hr["hr_low"] <= hr["hr"] <= hr["hr_high"]
    inter = train["interaction"]
    assert "unavailable" in inter or 0 <= inter["p"] <= 1
    assert "C-index" in r.stdout


def test_survival_cohort_metrics_against_direct_fits():
    """The per-cohort numbers are those of npcai.stats/npcai.survival on the same rows."""
    from npcai.stats.concordance import harrell_c
    from npcai.survival.cox import CoxPH
    from npcai.survival.deep.evaluate import survival_cohort_metrics

    rng = np.random.default_rng(0)
    n = 80
    d = pd.DataFrame({"time": rng.exponential(10, n).round(1) + 0.1, "event": rng.integers(0, 2, n),
                      "treatment": rng.integers(0, 2, n), "prognostic_score": rng.normal(size=n),
                      "predictive_score": rng.normal(size=n)})
    m = survival_cohort_metrics(d)
    assert m["c_index_prognostic"]["c_index"] == pytest.approx(
        harrell_c(d["time"], d["event"], d["prognostic_score"]).c_index)
    z = (d["predictive_score"] - d["predictive_score"].mean()) / d["predictive_score"].std()
    fit = CoxPH().fit(d.assign(z=z), "time", "event", ["z"])
    assert m["hr_per_sd"]["predictive_score"]["hr"] == pytest.approx(float(fit.summary_.loc["z", "hr"]))
    fit = CoxPH().fit(d, "time", "event", ["treatment*predictive_score"])
    assert m["interaction"]["p"] == pytest.approx(fit.term_test("treatment:predictive_score").p_value)
    assert survival_cohort_metrics(d.assign(treatment=1))["interaction"] == \
        {"unavailable": "one treatment only in this cohort"}


@pytest.mark.slow
def test_survival_selection_never_receives_test_patients(train_cohort, tmp_path, one_torch_thread):
    """The spy of tests/models for the survival task: only train/val rows reach the Trainer."""
    from lightning.pytorch.callbacks import Callback

    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models.train import train

    seen: dict = {}

    class Spy(Callback):
        def on_fit_start(self, trainer, pl_module):
            seen["rows"] = set(trainer.datamodule.held_rows().tolist())

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault("batch_rows", set()).update(batch[2].reshape(-1).tolist())
            seen.setdefault("target_shape", tuple(batch[1].shape))

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            seen.setdefault("val_rows", set()).update(batch[2].reshape(-1).tolist())

        def on_validation_end(self, trainer, pl_module):
            seen["val_patients"] = set(pl_module.val_patients_seen_)

    result = train(_config(train_cohort, epochs=1, seed=5), tmp_path / "spy", callbacks=[Spy()])
    split = pd.read_csv(result.run_dir / "split.csv", dtype={"patient_id": str}).set_index("patient_id")["split"]
    index = RoiDataset.open(train_cohort, "pre").index
    rows_of = lambda names: set(np.flatnonzero(index["patient_id"].map(split).isin(names).to_numpy()).tolist())  # noqa: E731
    test_rows = rows_of(["test"])
    assert test_rows
    assert seen["rows"] == rows_of(["train", "val"])
    assert not seen["batch_rows"] & test_rows and not seen["val_rows"] & test_rows
    assert seen["batch_rows"] <= rows_of(["train"]) and seen["val_rows"] == rows_of(["val"])
    assert seen["val_patients"] == set(split.index[split == "val"])
    assert seen["target_shape"][1:] == (3,)     # [time, event, T] rows


def test_survival_bad_input_one_line(cli, train_cohort, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(train_cohort, cohort)
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "a", *SURV,
            "--where", 'treatment == "CCRT"')
    assert r.code == 2 and r.stderr.strip().count("\n") == 0 and "CCRT" in r.stderr, r.stderr
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "b", *SURV[2:],
            "--task", "survival", "--unit", "image")
    assert r.code == 2 and r.stderr.strip().count("\n") == 0 and "patient" in r.stderr, r.stderr
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "d", *SURV, "--folds", "2")
    assert r.code == 2 and r.stderr.strip().count("\n") == 0 and "binary task" in r.stderr, r.stderr
    clinical = pd.read_csv(cohort / "clinical.csv")
    clinical.drop(columns=["treatment"]).to_csv(cohort / "clinical.csv", index=False)
    r = cli("train", cohort, "--roi", "pre", "--endpoint", "dfs", "--out", tmp_path / "c", *SURV)
    assert r.code == 2 and r.stderr.strip().count("\n") == 0 and "treatment" in r.stderr, r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_predict_reproduces_training_scores_and_evaluates(cli, surv_run, tmp_path):
    """`npcai predict` rebuilds the survival network from the run and gives the same scores."""
    from npcai.runs.folder import read_predictions, read_run

    run = surv_run.run_dir
    cohort = read_run(run).cohort
    r = cli("predict", run, cohort, "--out", tmp_path / "pred")
    assert r.code == 0, r.stderr
    trained = read_predictions(run).patients.set_index("patient_id").sort_index()
    again = read_predictions(tmp_path / "pred").patients.set_index("patient_id").loc[trained.index]
    for col in (*PREDICTION_COLUMNS, "time", "event", "treatment", "split"):
        if col == "split":
            assert (again[col] == trained[col]).all()
        else:
            np.testing.assert_allclose(again[col].astype(float), trained[col].astype(float), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_survival_resume_continues_with_more_epochs(cli, surv_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(surv_run.run_dir, out)
    r = cli("train", "--config", out / "config.yaml", "--out", out, "--resume", "--epochs", "3")
    assert r.code == 0, r.stderr
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    first = pd.read_csv(surv_run.run_dir / "history.csv")
    np.testing.assert_allclose(history["val_c_index"].iloc[:2], first["val_c_index"])
    assert json.loads((out / "summary.json").read_text())["task"] == "survival"
