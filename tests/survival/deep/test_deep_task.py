"""The survival task: loss, validation C-index, prediction columns, summary."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from npcai.stats.concordance import harrell_c
from npcai.survival.deep.losses import cox_loss
from npcai.survival.deep.network import MultiTaskSurvivalNet
from npcai.survival.deep.task import PREDICTION_COLUMNS, SurvivalTask, TrainerTask

from .test_deep_network import TinyCNN


def test_task_has_the_trainer_interface():
    task = SurvivalTask()
    assert isinstance(task, TrainerTask)
    assert task.monitor == "val_c_index" and task.mode == "max"
    assert task.prediction_columns == PREDICTION_COLUMNS
    with pytest.raises(ValueError, match="ties"):
        SurvivalTask(ties="exact")


def test_loss_is_cox_of_the_modified_covariate_log_hazard():
    scores = torch.tensor([[0.3, 1.0], [0.1, -2.0], [-0.4, 0.5], [0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[5.0, 1, 1], [3.0, 1, 0], [3.0, 1, 1], [8.0, 0, 0]])
    g, f, t = scores[:, 0], scores[:, 1], targets[:, 2]
    expected = cox_loss(g + (t - 0.5) * f, targets[:, 0], targets[:, 1])
    torch.testing.assert_close(SurvivalTask().loss(scores, targets), expected)
    torch.testing.assert_close(SurvivalTask(predictive=False).loss(scores, targets),
                               cox_loss(g, targets[:, 0], targets[:, 1]))
    # a batch without events: finite zero, still connected to the scores
    loss = SurvivalTask().loss(scores, targets * torch.tensor([1.0, 0, 1]))
    loss.backward()
    assert loss.item() == 0.0 and scores.grad is not None


def test_validate_averages_items_of_a_patient_and_scores_harrell_c():
    rng = np.random.default_rng(0)
    n = 30
    g, f = rng.normal(size=n), rng.normal(size=n)
    time, event, treat = rng.exponential(10, n).round(), (rng.random(n) < 0.6).astype(float), rng.integers(0, 2, n)
    patients = np.array([f"P{i:02d}" for i in range(n)])
    # every patient appears twice with scores around its own (mean = g, f)
    outputs = np.concatenate([np.c_[g - 0.1, f + 0.2], np.c_[g + 0.1, f - 0.2]]).astype(np.float32)
    targets = np.tile(np.c_[time, event, treat], (2, 1)).astype(np.float32)
    val_loss, c = SurvivalTask().validate(outputs, targets, np.concatenate([patients, patients]), None)
    lh = g + (treat - 0.5) * f
    assert c == pytest.approx(harrell_c(time, event, lh).c_index, abs=1e-6)
    expected = cox_loss(torch.tensor(lh), torch.tensor(time), torch.tensor(event))
    assert val_loss == pytest.approx(float(expected), abs=1e-5)
    assert np.isnan(SurvivalTask().validate(outputs, targets * [1, 0, 1], np.r_[patients, patients])[1])


def test_predict_and_summarise():
    torch.manual_seed(0)
    net = MultiTaskSurvivalNet([TinyCNN(), TinyCNN()], sequences=["T1", "T2"])
    images = np.random.default_rng(0).normal(size=(11, 2, 16, 16)).astype(np.float16)
    rows = pd.DataFrame({"roi_row": np.arange(11), "patient_id": ["P1"] * 4 + ["P2"] * 3 + ["P3"] * 4,
                         "slice_index": [0, 1, 2, 3, 5, 6, 7, 1, 2, 3, 4]})
    slices, patients = SurvivalTask().predict(net, images, rows, size=12)
    assert list(patients.index) == ["P1", "P2", "P3"]
    assert set(PREDICTION_COLUMNS) <= set(patients.columns) and patients["n_slices"].tolist() == [4, 3, 4]
    np.testing.assert_allclose(patients.log_hazard_ic_ccrt - patients.log_hazard_ccrt, patients.predictive_score,
                               atol=1e-6)
    # attention weights per slice and encoder, summing to 1 within a patient
    assert {"attention_T1", "attention_T2"} <= set(slices.columns) and len(slices) == 11
    np.testing.assert_allclose(slices.groupby("patient_id")["attention_T1"].sum(), 1.0, atol=1e-5)
    # the score of one patient does not depend on the others
    _, alone = SurvivalTask().predict(net, images, rows[rows.patient_id == "P2"], size=12)
    assert alone.loc["P2", "prognostic_score"] == pytest.approx(patients.loc["P2", "prognostic_score"], abs=1e-6)

    table = patients.assign(split=["test", "test", "val"], time=[5.0, 9.0, 2.0], event=[1, 1, 1], treatment=[0, 1, 1])
    summary = SurvivalTask().summarise(table)
    test = table[table.split == "test"]
    assert summary["n_test"] == 2 and summary["n_test_events"] == 2
    assert summary["test_c_index"]["c_index"] == pytest.approx(
        harrell_c(test.time, test.event, test.prognostic_score).c_index)
    none = SurvivalTask().summarise(table.assign(event=0))
    assert none["test_c_index"] == {"unavailable": "no event among the test patients"}


def test_network_per_sequence_or_stacked_from_the_run_options():
    """``stacked`` in the run options: one backbone over the channels instead of one per channel."""
    from npcai.models.train import TrainConfig, build_network

    cfg = TrainConfig(cohort="c", roi="r", endpoint="dfs", task="survival", unit="patient", backbone="resnet10t",
                      pretrained=False)
    per_sequence = build_network(cfg, 3)
    stacked = build_network(TrainConfig(**{**cfg.__dict__, "stacked": True}), 3)
    assert len(per_sequence.backbones) == 3 and not per_sequence.stacked
    assert len(stacked.backbones) == 1 and stacked.stacked
    x = torch.zeros(2, 3, 3, 32, 32)
    assert per_sequence(x).shape == stacked(x).shape == (2, 2)
