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
    >>> module = ClassifierModule(create_classifier("resnet18"), unit="image")  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import lightning.pytorch as pl
from torch.utils.data import DataLoader

from npcai.models.data import EpochShuffleSampler, PatientBagDataset, SliceAugment, collate_batch

__all__ = ["ClassifierModule", "SelectionDataModule", "aggregate_patients", "AGGREGATES",
           "OPTIMIZERS"]

AGGREGATES = ("mean", "max", "area-weighted")
OPTIMIZERS = ("adam", "sgd", "rmsprop")


def aggregate_patients(slices: pd.DataFrame, how: str = "mean") -> pd.DataFrame:
    """Patient probability from slice probabilities.

    Args:
        slices: one row per slice with ``patient_id``, ``prob`` (and ``weight`` for
            ``area-weighted``: the slice's tumour area).
        how: ``mean`` (the seeds' default), ``max`` or ``area-weighted`` (mean weighted by area).

    Returns:
        DataFrame indexed by patient_id with ``prob`` and ``n_slices``.
    """
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, not {how!r}")
    g = slices.groupby("patient_id", sort=True)
    if how == "mean":
        prob = g["prob"].mean()
    elif how == "max":
        prob = g["prob"].max()
    else:
        w = slices["weight"].astype(float).clip(lower=0) + 1e-6
        prob = (slices["prob"] * w).groupby(slices["patient_id"]).sum() / w.groupby(slices["patient_id"]).sum()
    return pd.DataFrame({"prob": prob, "n_slices": g.size()})


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


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
        return DataLoader(self.train_ds, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=collate_batch, num_workers=self.num_workers, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        bs = 1 if isinstance(self.val_ds, PatientBagDataset) else self.eval_batch_size
        return DataLoader(self.val_ds, batch_size=bs, shuffle=False, collate_fn=collate_batch,
                          num_workers=self.num_workers)


class ClassifierModule(pl.LightningModule):
    """Trains an :class:`ImageClassifier` (image unit) or :class:`PatientMILClassifier`
    (patient unit) with binary cross-entropy; logs the validation patients' AUC as ``val_auc``.

    Args:
        model: the network.
        unit: ``image`` or ``patient``.
        val_patients: patient id of each validation item (row for image unit, bag for patient unit).
        val_weights: per validation row tumour area (for ``area-weighted``; image unit).
        aggregate: slice -> patient aggregation for the image unit.
        optimizer, lr, weight_decay: the optimiser (adam, sgd with momentum 0.9, rmsprop).
        augment: a :class:`SliceAugment` for training batches, or None.
        seed: reseeds torch's RNG (dropout) at every step, for exact ``--resume``.
    """

    def __init__(self, model: torch.nn.Module, *, unit: str = "image", val_patients=None,
                 val_weights=None, aggregate: str = "mean", optimizer: str = "adam", lr: float = 1e-4,
                 weight_decay: float = 0.0, augment: SliceAugment | None = None, seed: int = 0):
        super().__init__()
        if unit not in ("image", "patient"):
            raise ValueError("unit must be 'image' or 'patient'")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
        self.model, self.unit, self.aggregate = model, unit, aggregate
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
        logits = self.model(x)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        self._train_losses.append((float(loss.detach()), len(y)))
        return loss

    def validation_step(self, batch, batch_idx: int):
        x, y, rows = batch
        logits = self.model(x)
        self._val_out.append((logits.detach().float().cpu().numpy(), y.cpu().numpy(),
                              np.arange(len(y)) + sum(len(o[0]) for o in self._val_out)))

    def on_validation_epoch_start(self) -> None:
        self._val_out = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_out:
            return
        logits = np.concatenate([o[0] for o in self._val_out])
        y = np.concatenate([o[1] for o in self._val_out])
        pos = np.concatenate([o[2] for o in self._val_out])
        val_loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(y)))
        prob = 1 / (1 + np.exp(-logits))
        patients = self.val_patients[pos]
        self.val_patients_seen_ = set(patients.tolist())
        if self.unit == "image":
            slices = pd.DataFrame({"patient_id": patients, "prob": prob, "label": y})
            if self.aggregate == "area-weighted":
                slices["weight"] = self.val_weights[pos]
            agg = aggregate_patients(slices, self.aggregate)
            labels = slices.groupby("patient_id")["label"].first().loc[agg.index].to_numpy()
            auc = _auc(labels, agg["prob"].to_numpy())
        else:
            auc = _auc(y, prob)
        # validation runs once at the end of each training epoch (no sanity pass), before
        # the checkpoint is saved: record the epoch's row here so checkpoints carry it
        n = sum(k for _, k in self._train_losses)
        train_loss = sum(v * k for v, k in self._train_losses) / n if n else float("nan")
        self.log("val_loss", val_loss, prog_bar=True)
        self.log("val_auc", auc, prog_bar=True)
        self.log("train_loss", train_loss)
        if not self.trainer.sanity_checking:
            self.history = [h for h in self.history if h["epoch"] != int(self.current_epoch)]
            self.history.append({"epoch": int(self.current_epoch), "train_loss": train_loss,
                                 "val_loss": val_loss, "val_auc": auc})

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
