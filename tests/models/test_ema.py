"""The weight-average option (``ema``): the average's arithmetic, validation scoring it, and the
run's saved network being the average."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from npcai.errors import NpcaiError
from npcai.models.lightning_module import TaskModule, update_ema
from npcai.models.train import TrainConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                               torch.nn.LazyLinear(1))


def test_update_ema_averages_weights_and_batchnorm_statistics_and_copies_counts():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    before = {k: v.clone() for k, v in average.state_dict().items()}
    model.train()(torch.randn(8, 3))                      # moves running stats, counts a batch
    update_ema(average, model, 0.9)
    now, raw = average.state_dict(), model.state_dict()
    for key in ("0.weight", "0.bias", "1.running_mean", "1.running_var"):
        assert torch.allclose(now[key], 0.9 * before[key] + 0.1 * raw[key])
    assert int(now["1.num_batches_tracked"]) == int(raw["1.num_batches_tracked"]) == 1


def test_validation_scores_the_average_not_the_raw_weights():
    module = TaskModule(torch.nn.Linear(3, 1), lr=1e-2, ema=0.99)
    assert module.scored_model is module.ema_model
    assert not any(p.requires_grad for p in module.ema_model.parameters())
    assert [id(p) for p in module.configure_optimizers().param_groups[0]["params"]] == \
        [id(p) for p in module.model.parameters()]                 # only the raw weights are optimised
    assert TaskModule(torch.nn.Linear(3, 1)).scored_model is not None
    assert not hasattr(TaskModule(torch.nn.Linear(3, 1)), "ema_model")


def test_bad_ema_is_one_clear_error():
    with pytest.raises(NpcaiError, match=r"--ema 1.0: the decay must be in \[0, 1\)"):
        TrainConfig(cohort="c", roi="r", endpoint="pfs-median", ema=1.0).validate()


@pytest.mark.slow
def test_a_run_trained_with_ema_saves_and_predicts_with_the_average(train_cohort, tmp_path):
    """The best checkpoint holds both networks; the run's predictions are the average's, and
    loading the run gives the average back (what predict and the web tool use)."""
    from npcai.models import load_run
    from npcai.models.train import train
    from npcai.runs.checkpoint import load_checkpoint

    cfg = TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=2, seed=0, ema=0.9)
    out = train(cfg, tmp_path / "ema").run_dir
    sd = load_checkpoint(out / "checkpoints" / "best.ckpt")["state_dict"]
    raw = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    avg = {k[len("ema_model."):]: v for k, v in sd.items() if k.startswith("ema_model.")}
    assert raw.keys() == avg.keys() and any(not torch.equal(raw[k], avg[k]) for k in raw)
    run = load_run(out)
    loaded = run.model.state_dict()
    assert all(torch.equal(loaded[k], avg[k]) for k in avg)
    patients = pd.read_csv(out / "predictions_patients.csv", dtype={"patient_id": str}).set_index("patient_id")
    slices = pd.read_csv(out / "predictions_slices.csv", dtype={"patient_id": str})
    row = slices.iloc[0]
    x = torch.from_numpy(np.asarray(run.roi.images[[int(row["roi_row"])]], dtype=np.float32))
    with torch.no_grad():
        prob = float(torch.sigmoid(run.model(x)).reshape(-1)[0])
    assert prob == pytest.approx(float(row["prob"]), abs=1e-5)
    assert patients["prob"].notna().all()
