"""The Lightning side of training: a module that scores validation *patients*, and a
data module that only ever holds training and validation patients.

Honest model selection is structural here: :class:`SelectionDataModule` is built from the
training and validation rows only and exposes ``train_dataloader`` and
``val_dataloader`` — it has no test loader and no reference to test rows, so nothing the
Trainer sees (the monitored ``val_auc``, early stopping, the best checkpoint) can depend
on test patients. Test patients are read by :mod:`npcai.models.train` after ``fit``
returns, with the selected checkpoint.

Examples:
    >>> from npcai.models import create_classifier
    >>> from npcai.models.tasks import BinaryTask
    >>> module = TaskModule(create_classifier("resnet18"), BinaryTask("image"))  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch
import lightning.pytorch as pl
from torch.utils.data import DataLoader

from npcai.models.data import EpochShuffleSampler, PatientBagDataset, SliceAugment, collate_batch
from npcai.models.tasks import AGGREGATES, BinaryTask, Task, aggregate_patients

__all__ = ["TaskModule", "SelectionDataModule", "aggregate_patients", "AGGREGATES", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "sgd", "rmsprop")


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

    def train_dataloader(self) -> DataLoader:
        sampler = EpochShuffleSampler(self.train_ds, seed=self.seed)
        # a last batch of one sample breaks BatchNorm's batch statistics (and training): drop it;
        # the epoch's shuffle decides which sample waits for the next epoch
        n = len(self.train_ds)
        lone_last = n > self.batch_size and n % self.batch_size == 1
        return DataLoader(self.train_ds, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=collate_batch, num_workers=self.num_workers, drop_last=lone_last)

    def val_dataloader(self) -> DataLoader:
        bs = 1 if isinstance(self.val_ds, PatientBagDataset) else self.eval_batch_size
        return DataLoader(self.val_ds, batch_size=bs, shuffle=False, collate_fn=collate_batch,
                          num_workers=self.num_workers)


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
        augment: a :class:`SliceAugment` for training batches, or None.
        seed: reseeds torch's RNG (dropout) at every step, for exact ``--resume``.
    """

    def __init__(self, model: torch.nn.Module, task: Task | None = None, *, val_patients=None,
                 val_weights=None, optimizer: str = "adam", lr: float = 1e-4,
                 weight_decay: float = 0.0, augment: SliceAugment | None = None, seed: int = 0):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
        self.model = model
        self.task = task if task is not None else BinaryTask()
        self.val_patients = np.asarray(val_patients if val_patients is not None else [], dtype=object)
        self.val_weights = None if val_weights is None else np.asarray(val_weights, dtype=float)
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.augment = augment
        self.seed = seed
        self.history: list[dict] = []
        self._train_losses: list[tuple[float, int]] = []
        self._val_out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.val_patients_seen_: set[str] = set()

    # ------------------------------------------------------------------ steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int):
        x, y, _ = batch
        if self.augment is not None:
            x = self.augment(x, step=self.global_step)
        loss = self.task.loss(self.model(x), y)
        self._train_losses.append((float(loss.detach()), len(y)))
        return loss

    def validation_step(self, batch, batch_idx: int):
        x, y, rows = batch
        out = self.model(x)
        self._val_out.append((out.detach().float().cpu().numpy(), y.cpu().numpy(),
                              np.arange(len(y)) + sum(len(o[0]) for o in self._val_out)))

    def on_validation_epoch_start(self) -> None:
        self._val_out = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_out:
            return
        outputs = np.concatenate([o[0] for o in self._val_out])
        y = np.concatenate([o[1] for o in self._val_out])
        pos = np.concatenate([o[2] for o in self._val_out])
        patients = self.val_patients[pos]
        self.val_patients_seen_ = set(patients.tolist())
        weights = None if self.val_weights is None else self.val_weights[pos]
        val_loss, score = self.task.validate(outputs, y, patients, weights)
        # validation runs once at the end of each training epoch (no sanity pass), before
        # the checkpoint is saved: record the epoch's row here so checkpoints carry it
        n = sum(k for _, k in self._train_losses)
        train_loss = sum(v * k for v, k in self._train_losses) / n if n else float("nan")
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
        torch.manual_seed(self.seed * 1_000_003 + int(self.global_step))

    # ------------------------------------------------------------------ optimiser + state
    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        return torch.optim.RMSprop(params, lr=self.lr, weight_decay=self.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["npcai_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("npcai_history", []))
