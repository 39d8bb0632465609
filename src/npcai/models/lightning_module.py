"""The Lightning side of training: a module that scores validation *patients*, and a
data module that only ever holds training and validation patients.

Honest model selection is structural here: :class:`SelectionDataModule` is built from the
training and validation rows only and exposes ``train_dataloader`` and
``val_dataloader`` — it has no test loader and no reference to test rows, so nothing the
Trainer sees (the monitored ``val_auc``, early stopping, the best checkpoint) can depend
on test patients. Test patients are read by :mod:`npcai.models.train` after ``fit``
returns, with the selected checkpoint.

Under DDP (several devices or nodes, one process each) the data module shards the data
itself: each epoch's seeded training order is dealt out round-robin (padded by wrapping so
every rank steps equally often) and the validation items are dealt out unpadded. The
selection metric is *not* averaged over ranks: every rank gathers all ranks' validation
outputs with their dataset positions (:func:`gather_validation`, duplicates dropped), so the
AUC or C-index is computed once over all validation patients, the same value on every rank.
A task whose loss couples the items of a batch (the Cox partial likelihood: risk sets) sets
``batch_coupled_loss``; its loss is then computed on the batch gathered from every rank with
gradients flowing back to each rank's own items (``torch.distributed.nn.functional.all_gather``),
so risk sets span the global batch (the per-device batch times the world size).

Examples:
    >>> from npcai.models import create_classifier
    >>> from npcai.models.tasks import BinaryTask
    >>> module = TaskModule(create_classifier("resnet18"), BinaryTask("image"))  # doctest: +SKIP
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from npcai.models.data import EpochShuffleSampler, PatientBagDataset, SliceAugment, collate_batch
from npcai.models.tasks import AGGREGATES, BinaryTask, Task, aggregate_patients

__all__ = ["TaskModule", "SelectionDataModule", "ShardSampler", "gather_validation", "aggregate_patients",
           "update_ema", "AGGREGATES", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adam", "sgd", "rmsprop")
#: learning-rate schedules over the run's epochs (stepped once per epoch)
SCHEDULES = ("constant", "cosine")


class ShardSampler(Sampler[int]):
    """One DDP rank's share of another sampler's order: items ``rank, rank + world, ...``.

    With ``pad`` (training) the order is first extended by wrapping around so that every rank
    gets ``ceil(n / world)`` items (as ``DistributedSampler`` does); without it (validation)
    no item is repeated and ranks may differ by one. ``set_epoch`` is passed on, so the
    seeded per-epoch order and bag draws of :class:`EpochShuffleSampler` stay exact.
    """

    def __init__(self, base, n: int, rank: int, world: int, *, pad: bool):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.base, self.n, self.rank, self.world, self.pad = base, int(n), int(rank), int(world), pad

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        if self.pad:
            return -(-self.n // self.world)
        return len(range(self.rank, self.n, self.world))

    def __iter__(self):
        order = list(self.base)
        if self.pad and self.n % self.world:
            total = len(self) * self.world
            order = (order * (total // max(1, len(order)) + 1))[:total]
        return iter(order[self.rank::self.world])


class _Positions(Dataset):
    """A dataset whose batches also carry the items' positions in it, ``(x, y, rows,
    positions)``, so validation outputs can be matched to patients whatever share of them a
    rank saw."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, idx):
        x, y, rows = self.dataset.__getitems__(idx)
        return x, y, rows, torch.as_tensor(np.asarray(idx, dtype=np.int64))

    def __getitem__(self, i: int):
        x, y, r, p = self.__getitems__([i])
        return x[0], y[0], r[0], p[0]


def gather_validation(outputs: np.ndarray, targets: np.ndarray, positions: np.ndarray,
                      world: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ranks' validation ``(outputs, targets, positions)``, each position once, in
    position order (every rank gets the same arrays). ``world == 1``: sorted, nothing sent."""
    if world > 1:
        import torch.distributed as dist

        parts: list = [None] * world
        dist.all_gather_object(parts, (outputs, targets, positions))
        outputs = np.concatenate([p[0] for p in parts])
        targets = np.concatenate([p[1] for p in parts])
        positions = np.concatenate([p[2] for p in parts])
    _, first = np.unique(positions, return_index=True)      # sorted positions, padding dropped
    return outputs[first], targets[first], positions[first]


def _gather_sum(values: tuple[float, int], world: int) -> tuple[float, int]:
    """(sum, count) added over ranks."""
    if world <= 1:
        return values
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, values)
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


class SelectionDataModule(pl.LightningDataModule):
    """Training and validation data for ``Trainer.fit`` — by construction nothing else.

    Args:
        train: the training patients' dataset (:class:`SliceDataset` or :class:`PatientBagDataset`).
        val: the validation patients' dataset (whole-patient bags for the patient unit).
        batch_size: training batch size (slices, or bags for the patient unit).
        eval_batch_size: validation batch size for slices.
        seed: shuffling seed.
        num_workers: DataLoader workers (0 by default: the memmap read is cheap).
    """

    def __init__(self, train, val, *, batch_size: int = 32, eval_batch_size: int = 64, seed: int = 0,
                 num_workers: int = 0):
        super().__init__()
        self.train_ds, self.val_ds = train, val
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.num_workers = seed, num_workers

    def held_rows(self) -> np.ndarray:
        """Every ROI row this module can hand to the Trainer (for audits and tests)."""
        return np.union1d(self.train_ds.rows, self.val_ds.rows)

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        sampler = EpochShuffleSampler(self.train_ds, seed=self.seed)
        rank, world = self._rank_world()
        if world > 1:
            sampler = ShardSampler(sampler, len(self.train_ds), rank, world, pad=True)
        # a last batch of one sample breaks BatchNorm's batch statistics (and training): drop it;
        # the epoch's shuffle decides which sample waits for the next epoch
        n = len(sampler)
        lone_last = n > self.batch_size and n % self.batch_size == 1
        return DataLoader(self.train_ds, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=collate_batch, num_workers=self.num_workers, drop_last=lone_last)

    def val_dataloader(self) -> DataLoader:
        """Validation batches ``(x, y, ROI rows, positions in the validation dataset)``; under
        DDP each rank gets an unpadded share."""
        bs = 1 if isinstance(self.val_ds, PatientBagDataset) else self.eval_batch_size
        rank, world = self._rank_world()
        sampler = ShardSampler(range(len(self.val_ds)), len(self.val_ds), rank, world, pad=False) \
            if world > 1 else None
        return DataLoader(_Positions(self.val_ds), batch_size=bs, shuffle=False, sampler=sampler,
                          collate_fn=collate_batch, num_workers=self.num_workers)


@torch.no_grad()
def update_ema(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model``, parameters and floating-point
    buffers (batch-norm statistics) alike; integer buffers (batch counts) are copied."""
    current = model.state_dict()
    for name, value in average.state_dict().items():
        new = current[name].detach()
        if value.dtype.is_floating_point:
            value.lerp_(new.to(value.dtype), 1.0 - decay)
        else:
            value.copy_(new)


class TaskModule(pl.LightningModule):
    """Trains a network for a :class:`~npcai.models.tasks.Task`; logs the task's validation
    selection metric (``task.monitor``, e.g. ``val_auc`` over the validation *patients*).

    The loop, optimiser, per-step reseeding (exact ``--resume``) and history live here once;
    loss and metric come from the task.

    Args:
        model: the network (:class:`ImageClassifier` or :class:`PatientMILClassifier`).
        task: what is learnt (loss, validation metric).
        val_patients: patient id of each validation item (row for image unit, bag for patient unit).
        val_weights: per validation row tumour area (for ``area-weighted``; image unit).
        optimizer, lr, weight_decay: the optimiser (adam, sgd with momentum 0.9, rmsprop).
        schedule, max_epochs: ``constant`` learning rate, or ``cosine`` annealing from ``lr``
            towards 0 over ``max_epochs`` (stepped per epoch).
        augment: a :class:`SliceAugment` for training batches, or None.
        seed: reseeds torch's RNG (dropout) at every step, for exact ``--resume``.
        ema: decay of an exponential moving average of the network's weights and batch-norm
            statistics, updated after every optimisation step (0 = off). With it, validation
            scores the averaged network (``ema_model``), so the checkpoint selected on
            validation holds averaged weights, which :func:`npcai.runs.load_model_weights`
            loads in place of the raw ones. The decay warms up as ``min(ema, (1 + t) / (10 + t))``
            at step t, so the first epochs are not dominated by the initial weights.
    """

    def __init__(self, model: torch.nn.Module, task: Task | None = None, *, val_patients=None,
                 val_weights=None, optimizer: str = "adam", lr: float = 1e-4,
                 weight_decay: float = 0.0, schedule: str = "constant", max_epochs: int | None = None,
                 augment: SliceAugment | None = None, seed: int = 0, ema: float = 0.0):
        super().__init__()
        if not 0.0 <= ema < 1.0:
            raise ValueError("ema must be in [0, 1)")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
        if schedule not in SCHEDULES or (schedule == "cosine" and not max_epochs):
            raise ValueError(f"schedule must be one of {SCHEDULES}; cosine needs max_epochs")
        self.model = model
        self.task = task if task is not None else BinaryTask()
        self.val_patients = np.asarray(val_patients if val_patients is not None else [], dtype=object)
        self.val_weights = None if val_weights is None else np.asarray(val_weights, dtype=float)
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.schedule, self.max_epochs = schedule, max_epochs
        self.augment = augment
        self.seed = seed
        self.ema = float(ema)
        if self.ema:
            self.ema_model = copy.deepcopy(model).requires_grad_(False)
        self.history: list[dict] = []
        self._train_losses: list[tuple[float, int]] = []
        self._val_out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.val_patients_seen_: set[str] = set()
        self.val_items_scored_: int = 0

    # ------------------------------------------------------------------ steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _world(self) -> tuple[int, int]:
        trainer = self._trainer
        return (int(trainer.global_rank), int(trainer.world_size)) if trainer is not None else (0, 1)

    def training_step(self, batch, batch_idx: int):
        x, y, _ = batch
        rank, world = self._world()
        if self.augment is not None:   # each rank its own draws; one process: as before
            x = self.augment(x, step=self.global_step * world + rank)
        out = self.model(x)
        if world > 1 and getattr(self.task, "batch_coupled_loss", False):
            out, y = self._gather_batch(out, y)
        loss = self.task.loss(out, y)
        self._train_losses.append((float(loss.detach()), len(y)))
        return loss

    @staticmethod
    def _gather_batch(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every rank's batch outputs (with gradient back to each rank's own) and targets.

        Every rank then computes the same loss L over the global batch; the gather's backward
        sums the ranks' gradients (world x dL/d own outputs) and DDP averages the parameter
        gradients over ranks, so each step follows dL/dθ of the global batch."""
        import torch.distributed as dist
        from torch.distributed.nn.functional import all_gather

        outs = all_gather(out.contiguous())
        ys = [torch.empty_like(y) for _ in range(dist.get_world_size())]
        dist.all_gather(ys, y.contiguous())
        return torch.cat(outs), torch.cat(ys)

    @property
    def scored_model(self) -> torch.nn.Module:
        """The network validation scores: the weight average when ``ema`` is on."""
        return self.ema_model if self.ema else self.model

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema:
            step = int(self.global_step)                  # optimisation steps taken so far
            update_ema(self.ema_model, self.model, min(self.ema, (1.0 + step) / (10.0 + step)))

    def validation_step(self, batch, batch_idx: int):
        x, y, _, positions = batch
        out = self.scored_model(x)
        self._val_out.append((out.detach().float().cpu().numpy(), y.cpu().numpy(),
                              positions.cpu().numpy().astype(np.int64)))

    def on_validation_epoch_start(self) -> None:
        self._val_out = []

    def on_validation_epoch_end(self) -> None:
        _, world = self._world()
        if not self._val_out and world == 1:
            return
        local = [np.concatenate([o[i] for o in self._val_out]) if self._val_out else None for i in range(3)]
        if local[0] is None:            # a rank with no validation item still takes part in the gather
            local = [np.zeros((0,), np.float32), np.zeros((0,), np.float32), np.zeros(0, np.int64)]
        # every rank: all validation items of all ranks, once each (never a per-rank average)
        outputs, y, pos = gather_validation(*local, world=world)
        self.val_items_scored_ = int(len(pos))
        patients = self.val_patients[pos]
        self.val_patients_seen_ = set(patients.tolist())
        weights = None if self.val_weights is None else self.val_weights[pos]
        val_loss, score = self.task.validate(outputs, y, patients, weights)
        # validation runs once at the end of each training epoch (no sanity pass), before
        # the checkpoint is saved: record the epoch's row here so checkpoints carry it
        total, n = _gather_sum((sum(v * k for v, k in self._train_losses),
                                sum(k for _, k in self._train_losses)), world)
        train_loss = total / n if n else float("nan")
        self.log("val_loss", val_loss, prog_bar=True)
        self.log(self.task.monitor, score, prog_bar=True)
        self.log("train_loss", train_loss)
        if not self.trainer.sanity_checking:
            self.history = [h for h in self.history if h["epoch"] != int(self.current_epoch)]
            self.history.append({"epoch": int(self.current_epoch), "train_loss": train_loss,
                                 "val_loss": val_loss, self.task.monitor: score})

    def on_train_epoch_start(self) -> None:
        self._train_losses = []

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # dropout draws from torch's global RNG, which Lightning's loop also touches between
        # steps: reseed per optimisation step so a resumed run continues exactly as the
        # uninterrupted one (shuffling and augmentation are seeded per epoch/step already)
        rank, world = self._world()
        torch.manual_seed(self.seed * 1_000_003 + int(self.global_step) * world + rank)

    # ------------------------------------------------------------------ optimiser + state
    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.RMSprop(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant":
            return opt
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["npcai_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("npcai_history", []))
