"""One trainer, pluggable tasks: the loop, checkpoints and selection follow the task's metric."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from npcai.models.tasks import BinaryTask, Task, aggregate_patients, register_task


def test_binary_validation_is_the_patient_auc_of_npcai_stats():
    from npcai.stats.auc import roc_auc

    rng = np.random.default_rng(0)
    patients = np.repeat([f"P{i}" for i in range(8)], 3)
    y = np.repeat([0, 1, 0, 1, 1, 0, 1, 0], 3).astype(np.float32)
    logits = (rng.normal(size=24) + y).astype(np.float32)
    loss, auc = BinaryTask("image", "mean").validate(logits, y, patients, None)
    slices = pd.DataFrame({"patient_id": patients, "prob": 1 / (1 + np.exp(-logits.astype(float)))})
    agg = aggregate_patients(slices, "mean")
    labels = pd.Series(y, index=patients).groupby(level=0).first().loc[agg.index]
    assert auc == pytest.approx(roc_auc(labels.to_numpy(), agg["prob"].to_numpy()))
    assert loss == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(y))), rel=1e-6)
    assert np.isnan(BinaryTask("image").validate(logits, np.zeros(24, np.float32), patients, None)[1])


@register_task
class BrierTask(BinaryTask):
    """A second task through the same trainer: selects the epoch with the lowest validation Brier."""

    name = "brier-test"
    monitor = "val_brier"
    mode = "min"

    def validate(self, outputs, targets, patients, weights):
        loss, _ = super().validate(outputs, targets, patients, weights)
        prob = 1 / (1 + np.exp(-outputs.astype(float)))
        return loss, float(np.mean((prob - targets) ** 2))


@pytest.mark.slow
def test_a_new_task_plugs_into_the_trainer(train_cohort, tmp_path):
    from npcai.models.train import TrainConfig, train
    from npcai.runs import predict_patients, read_config

    assert issubclass(BrierTask, Task)
    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=2, seed=2, patience=5)
    res = train(cfg, tmp_path / "brier", task=BrierTask("image", "mean"))
    history = pd.read_csv(res.run_dir / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_brier"] and len(history) == 2
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["monitor"] == "val_brier" and summary["task"] == "brier-test"
    assert summary["best_epoch"] == int(history["val_brier"].idxmin())       # mode "min" honoured
    assert read_config(res.run_dir).raw["task"] == "brier-test"
    # prediction rebuilds the recorded task and reproduces the saved test predictions
    saved = pd.read_csv(res.run_dir / "predictions_patients.csv", dtype={"patient_id": str})
    test = saved[saved["split"] == "test"].set_index("patient_id")
    got = predict_patients(res.run_dir, train_cohort, list(test.index)).patients.set_index("patient_id")
    assert np.abs(got["prob"] - test.loc[got.index, "prob"]).max() <= 1e-6
