"""The learning-rate schedule option: constant keeps ``lr``; cosine anneals it over the run's epochs."""
from __future__ import annotations

import pytest
import torch

from npcai.errors import NpcaiError
from npcai.models.lightning_module import TaskModule
from npcai.models.train import TrainConfig


def _lrs(module: TaskModule, epochs: int) -> list[float]:
    conf = module.configure_optimizers()
    if isinstance(conf, torch.optim.Optimizer):
        return [conf.param_groups[0]["lr"]] * epochs
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "epoch"
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_anneals_from_lr_towards_zero_over_the_epochs():
    net = torch.nn.Linear(3, 1)
    lrs = _lrs(TaskModule(net, lr=1e-3, schedule="cosine", max_epochs=8), 8)
    assert lrs[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))                 # strictly decreasing
    assert lrs[4] == pytest.approx(1e-3 * 0.5)                        # half-way: lr / 2
    assert lrs[-1] == pytest.approx(1e-3 * (1 + torch.cos(torch.tensor(7 / 8 * torch.pi)).item()) / 2)


def test_constant_keeps_lr():
    assert _lrs(TaskModule(torch.nn.Linear(3, 1), lr=1e-3), 5) == [1e-3] * 5


def test_bad_schedule_is_one_clear_error():
    cfg = TrainConfig(cohort="c", roi="r", endpoint="pfs-median", schedule="step")
    with pytest.raises(NpcaiError, match="--schedule 'step': choose one of constant, cosine"):
        cfg.validate()
    with pytest.raises(ValueError, match="cosine needs max_epochs"):
        TaskModule(torch.nn.Linear(3, 1), schedule="cosine")
