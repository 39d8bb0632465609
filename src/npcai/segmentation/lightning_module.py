"""The Lightning module that trains a segmenter: MONAI Dice + cross-entropy, validation Dice.

Loss: :class:`monai.losses.DiceCELoss` with softmax over the classes and one-hot targets
(the usual choice for small structures: Dice balances the tiny foreground, cross-entropy
keeps gradients well-behaved early on). Validation: per-slice Dice of every foreground
class (NaN where a slice has neither truth nor prediction, the convention of
:mod:`npcai.segmentation.metrics`), averaged per class, then over classes: ``val_dice``.
Early stopping and checkpoint selection use ``val_dice`` only; the test patients are never
seen here.

The per-epoch history (train loss, validation loss and Dice per class) lives in the module
and is saved into every checkpoint, so ``--resume`` continues the same ``history.csv``.

Examples:
    >>> module = SegmentationModule(arch="unet", encoder="resnet18", label_names=("tumour",))  # doctest: +SKIP
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from npcai.segmentation.models import create_segmenter

__all__ = ["SegmentationModule", "OPTIMIZERS", "batch_dice_counts"]

#: optimizer name -> torch class (RMSprop is the papers' choice)
OPTIMIZERS = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}


def batch_dice_counts(logits: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per-slice, per-foreground-class ``(intersection, |truth|, |prediction|)``: shape ``(B, K, 3)``."""
    pred = logits.argmax(1)
    tgt = target[:, 0] if target.ndim == 4 else target
    out = []
    for k in range(1, n_classes):
        t, p = tgt == k, pred == k
        out.append(torch.stack([(t & p).flatten(1).sum(1), t.flatten(1).sum(1), p.flatten(1).sum(1)], 1))
    return torch.stack(out, 1).float()


class SegmentationModule(L.LightningModule):
    """A U-Net/DeepLabV3 with its loss, optimizer and validation Dice.

    Args:
        arch: ``unet`` or ``deeplabv3``.
        encoder: smp/timm encoder name.
        label_names: the segmented labels in class order (class 0 is background).
        optimizer: ``rmsprop`` (the papers) or ``adam``.
        lr: initial learning rate.
        pretrained / weights: encoder initialisation (see :func:`create_segmenter`); only used
            when the module is first built, not when it is restored from a checkpoint.
        encoder_depth: encoder stages (5 default).
        in_channels: input channels, ``2*context+1`` for a 2.5D input (1 = one slice).
    """

    def __init__(self, arch: str = "unet", encoder: str = "resnet34", label_names: tuple[str, ...] = ("tumour", "nodes"),
                 optimizer: str = "rmsprop", lr: float = 1e-3, pretrained: bool = False,
                 weights: str | None = None, encoder_depth: int = 5, in_channels: int = 1):
        super().__init__()
        from monai.losses import DiceCELoss

        self.save_hyperparameters()
        self.n_classes = len(label_names) + 1
        self.model = create_segmenter(arch, encoder=encoder, in_channels=in_channels, classes=self.n_classes,
                                      pretrained=pretrained, weights=weights, encoder_depth=encoder_depth)
        self.loss_fn = DiceCELoss(softmax=True, to_onehot_y=True)
        self.history: list[dict[str, Any]] = []
        self._train_losses: list[float] = []
        self._val_losses: list[float] = []
        self._val_counts: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self._train_losses.append(float(loss.detach()))
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self._val_losses.append(float(self.loss_fn(logits, y)) * len(x))
        self._val_counts.append(batch_dice_counts(logits, y, self.n_classes).cpu())

    def on_validation_epoch_end(self) -> None:
        world = self.trainer.world_size if self._trainer is not None else 1
        if not self._val_counts and world == 1:
            return
        counts = torch.cat(self._val_counts) if self._val_counts else torch.zeros(0, self.n_classes - 1, 3)
        val_loss_sum, train_losses = sum(self._val_losses), list(self._train_losses)
        if world > 1:   # DDP: every rank's validation slices (unpadded shards), never a per-rank mean
            import torch.distributed as dist

            parts: list = [None] * world
            dist.all_gather_object(parts, (counts, val_loss_sum, train_losses))
            counts = torch.cat([p[0] for p in parts])
            val_loss_sum = sum(p[1] for p in parts)
            train_losses = [v for p in parts for v in p[2]]
        denom = counts[..., 1] + counts[..., 2]
        dice = torch.where(denom > 0, 2 * counts[..., 0] / denom.clamp(min=1), torch.nan)
        per_class = torch.nanmean(dice, 0)                        # (K,)
        val_dice = float(torch.nanmean(per_class)) if not torch.isnan(per_class).all() else 0.0
        val_loss = val_loss_sum / len(counts)
        self.log("val_dice", val_dice, prog_bar=True)
        self.log("val_loss", val_loss)
        if self.trainer.sanity_checking:
            self._val_counts.clear(), self._val_losses.clear()
            return
        row: dict[str, Any] = {"epoch": int(self.current_epoch) + 1,
                               "train_loss": (sum(train_losses) / len(train_losses)
                                              if train_losses else math.nan),
                               "val_loss": val_loss, "val_dice": val_dice}
        for name, d in zip(self.hparams.label_names, per_class.tolist()):
            row[f"val_dice_{name}"] = d
        self.history.append(row)
        self._val_counts.clear(), self._val_losses.clear(), self._train_losses.clear()

    def configure_optimizers(self):
        cls = OPTIMIZERS[self.hparams.optimizer]
        return cls(self.parameters(), lr=self.hparams.lr)

    # the history travels with the checkpoints, so --resume continues it
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["npcai_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("npcai_history", []))
