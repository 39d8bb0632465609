"""Device options and DDP: sharding, gathered validation, a 2-process CPU (gloo) run of `npcai train`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from npcai.errors import NpcaiError
from npcai.models.devices import DeviceOptions, launch_rank
from npcai.models.lightning_module import ShardSampler, gather_validation
from npcai.models.train import TrainConfig


# ---------------------------------------------------------------------------- options
def test_device_options_refuse_bad_values_and_combinations():
    for bad, word in [(dict(accelerator="tpu"), "accelerator"), (dict(precision="16"), "precision"),
                      (dict(strategy="fsdp"), "strategy"), (dict(devices=0), "devices"),
                      (dict(num_nodes=0), "num_nodes"), (dict(accelerator="cpu", precision="16-mixed"), "bf16")]:
        with pytest.raises(NpcaiError, match=word):
            DeviceOptions(**bad).check()
    assert DeviceOptions(accelerator="cpu", precision="bf16-mixed").check().world_size == 1
    with pytest.raises(NpcaiError, match="folds with 2 devices"):
        TrainConfig(cohort="c", roi="r", endpoint="e", folds=3, devices=2).validate()
    with pytest.raises(NpcaiError, match="accelerator 'tpu'"):
        TrainConfig(cohort="c", roi="r", endpoint="e", accelerator="tpu").validate()


def test_resolve_checks_this_machine():
    with pytest.raises(NpcaiError, match="accelerator gpu: .*train on the CPU"):
        DeviceOptions(accelerator="gpu").resolve(gpus=0)
    with pytest.raises(NpcaiError, match="devices 4: only 2 CUDA GPU"):
        DeviceOptions(accelerator="gpu", devices=4).resolve(gpus=2)
    with pytest.raises(NpcaiError, match="16-mixed.*no CUDA GPU is used here"):
        DeviceOptions(precision="16-mixed").resolve(gpus=0)      # auto on a CPU machine
    one = DeviceOptions().resolve(gpus=0)
    assert (one.accelerator, one.strategy) == ("cpu", "auto")
    assert one.trainer_kwargs() == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "precision": "32-true"}
    ddp = DeviceOptions(devices=2).resolve(gpus=2)
    assert ddp.accelerator == "gpu" and ddp.trainer_kwargs()["strategy"] == "ddp"
    assert ddp.trainer_kwargs()["use_distributed_sampler"] is False


def test_launch_rank_reads_the_launchers_variables(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert launch_rank(2) == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_rank(2) == 1
    monkeypatch.setenv("NODE_RANK", "1")
    assert launch_rank(2) == 3
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "2")
    assert launch_rank(2) == 2
    monkeypatch.setenv("RANK", "5")
    assert launch_rank(2) == 5


# ---------------------------------------------------------------------------- sharding + gathering
def test_shards_cover_every_item():
    order = [4, 0, 3, 1, 2]
    val = [list(ShardSampler(order, 5, r, 2, pad=False)) for r in range(2)]
    assert sorted(val[0] + val[1]) == [0, 1, 2, 3, 4] and [len(v) for v in val] == [3, 2]
    train = [list(ShardSampler(order, 5, r, 2, pad=True)) for r in range(2)]
    assert [len(t) for t in train] == [3, 3] and set(train[0] + train[1]) == set(order)
    assert len(ShardSampler(order, 5, 1, 2, pad=True)) == 3


def test_gather_puts_positions_in_order_and_drops_padding():
    out = np.array([0.3, 0.1, 0.2, 0.3], np.float32)
    y = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    pos = np.array([3, 1, 2, 3])                 # position 3 twice: a padded repeat
    o, t, p = gather_validation(out, y, pos, world=1)
    assert p.tolist() == [1, 2, 3] and o.tolist() == pytest.approx([0.1, 0.2, 0.3]) and t.tolist() == [0, 1, 1]


def _cox_gradient_worker(rank: int, world: int, port: int, queue) -> None:
    """One DDP rank: Cox loss on the gathered batch, gradient averaged over ranks as DDP does."""
    import torch.distributed as dist

    from npcai.models.lightning_module import TaskModule
    from npcai.survival.deep.task import SurvivalTask

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        scores, targets = _cox_batch()
        mine = slice(rank * 3, rank * 3 + 3)
        local = scores[mine].clone().requires_grad_(True)
        out, y = TaskModule._gather_batch(local, targets[mine])
        SurvivalTask().loss(out, y).backward()
        parts = [torch.zeros_like(local.grad) for _ in range(world)]
        dist.all_gather(parts, local.grad)
        if rank == 0:
            queue.put(torch.cat(parts).numpy())
    finally:
        dist.destroy_process_group()


def _cox_batch():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(6, 2, generator=g, dtype=torch.float64)
    targets = torch.tensor([[2.0, 1, 0], [3.0, 0, 1], [4.0, 1, 1], [1.0, 1, 0], [5.0, 0, 0], [2.5, 1, 1]],
                           dtype=torch.float64)
    return scores, targets


def test_cox_loss_under_ddp_has_the_global_batch_gradient():
    """Two gloo processes, three patients each: the gradient each process gets for its own
    patients' scores, divided by the number of processes as DDP's gradient averaging does,
    equals the single-process gradient of the Cox loss over all six patients (risk sets span
    both processes; a per-process loss would give another gradient, checked too)."""
    import socket

    import torch.multiprocessing as mp

    from npcai.survival.deep.task import SurvivalTask

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=_cox_gradient_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    ddp_grad = queue.get()
    scores, targets = _cox_batch()
    scores.requires_grad_(True)
    SurvivalTask().loss(scores, targets).backward()
    assert np.allclose(ddp_grad / 2, scores.grad.numpy(), atol=1e-12)
    per_rank = scores.detach().clone().requires_grad_(True)
    for half in (slice(0, 3), slice(3, 6)):
        SurvivalTask().loss(per_rank[half], targets[half]).backward()
    assert not np.allclose(per_rank.grad.numpy() / 2, scores.grad.numpy(), atol=1e-6)


# ---------------------------------------------------------------------------- a real 2-process run
def test_ddp_on_cpu_selects_on_all_validation_patients(train_cohort, tmp_path):
    """`npcai train --accelerator cpu --devices 2 --strategy ddp`: Lightning re-executes the
    command as rank 1; the run folder is written once, by rank 0, and its selection metric is
    the AUC of ALL validation patients, equal to the one computed in this process from the
    selected checkpoint's saved predictions."""
    from npcai.stats.auc import roc_auc

    out = tmp_path / "ddp"
    src = Path(__import__("npcai").__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "npcai", "train", str(train_cohort), "--roi", "pre", "--endpoint", "pfs-median",
           "--backbone", "resnet18", "--no-pretrained", "--lr", "1e-3", "--batch-size", "8", "--epochs", "2",
           "--val-fraction", "0.4", "--threads", "1", "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("test AUC") == 1, done.stdout          # reported once, by rank 0
    for name in ("config.yaml", "split.csv", "predictions_slices.csv", "predictions_patients.csv",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt", "history.csv", "training_curve.png",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]    # no partial folder left behind
    hw = yaml.safe_load((out / "config.yaml").read_text())["hardware"]
    assert (hw["accelerator"], hw["strategy"], hw["devices_per_node"], hw["world_size"]) == ("cpu", "ddp", 2, 2)
    assert hw["precision"] == "32-true" and len(hw["device_names"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2 and summary["val_auc"] == pytest.approx(
        history.loc[history["epoch"] == summary["best_epoch"], "val_auc"].iloc[0])
    patients = pd.read_csv(out / "predictions_patients.csv", dtype={"patient_id": str})
    val = patients[patients["split"] == "val"]
    assert len(val) >= 4 and val["label"].nunique() == 2
    assert summary["splits"]["val"]["patients"] == len(val)
    assert summary["val_auc"] == pytest.approx(roc_auc(val["label"].to_numpy(), val["prob"].to_numpy()), abs=1e-9)
