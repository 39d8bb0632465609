"""Train a segmenter on a cohort's contours and keep everything needed to judge and reuse it.

``train_segmenter(cohort, out, arch=...)`` writes a segmentation run folder ``SEGRUN/``::

    config.yaml              every resolved option, seed, package versions, cohort path + input hash
    split.csv                patient_id, split (train/val/test), n_slices, has_nodes
    checkpoints/best.ckpt    the epoch with the best validation Dice (never the test patients)
    checkpoints/last.ckpt    for --resume
    history.csv              epoch, train_loss, val_loss, val_dice, val_dice_<label>...
    summary.json             written last: n per split, best_epoch, best val_dice, stopped early...

A run without ``summary.json`` is unfinished: ``--resume`` continues it from ``last.ckpt``
(the history travels in the checkpoint); evaluate/predict refuse it. Splits are by patient
(test 1/5 first, then a validation fifth of the rest for early stopping and checkpoint
selection). The same options and data give the same split and, on CPU, the same weights.

Examples:
    >>> run = train_segmenter("cohort", "segrun_unet", arch="unet", epochs=2)   # doctest: +SKIP
    >>> loaded = load_segrun("segrun_unet")                                     # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import yaml

from npcai.cohort.model import Cohort
from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text, check_output_path, check_replaceable, mark_output, paths_sha256
from npcai.limits import check_image_side
from npcai.progress import progress_enabled
from npcai.segmentation.data import (LabelSet, SliceDataset, SliceSampler, default_normalisation,
                                     default_sequence, load_slices, select_scans, split_by_patient)
from npcai.segmentation.lightning_module import OPTIMIZERS, SegmentationModule
from npcai.segmentation.models import ARCHITECTURES

__all__ = ["SegTrainConfig", "SegRun", "train_segmenter", "load_segrun", "package_versions", "SEGRUN_FORMAT"]

log = logging.getLogger(__name__)
SEGRUN_FORMAT = "npcai-segrun/1"
_DEVICE_KEYS = ("accelerator", "devices", "precision", "strategy", "num_nodes")


@dataclass
class SegTrainConfig:
    """Every option of a segmentation training run (saved as ``config.yaml``)."""

    arch: str = "unet"
    encoder: str = "resnet34"
    encoder_depth: int = 5
    pretrained: bool = False
    weights: str | None = None
    optimizer: str = "rmsprop"
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 40
    patience: int = 10
    max_minutes: float | None = None
    size: int = 256
    labels: str = "tumour,nodes"
    sequence: str | None = None
    timepoint: str | None = "pre"
    normalise: str | None = None
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    split_seed: int = 0
    seed: int = 0
    augment: bool = True
    #: random rotation (+-15 deg), scaling (0.85-1.15) and shift (+-8%) of training slices
    spatial_augment: bool = False
    #: neighbour slices each side in the input (2.5D; 0 = one slice); channels = 2*context+1
    context: int = 0
    #: share of each epoch's training slices drawn from slices without the target (0 = none)
    negative_fraction: float = 0.0
    #: side (mm) of the centred square of each slice the network sees (None: the whole slice)
    crop_mm: float | None = None
    #: post-processing of evaluate/predict: drop 2D components inside HxW px ...
    min_component: str = "10x10"
    #: ... then keep the largest 3D connected component of each label
    keep_largest_3d: bool = False
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32"
    strategy: str = "auto"
    num_nodes: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise NpcaiError(f"--arch {self.arch!r} is not known; use one of: {', '.join(ARCHITECTURES)}")
        if self.optimizer not in OPTIMIZERS:
            raise NpcaiError(f"--optimizer {self.optimizer!r} is not known; use one of: {', '.join(OPTIMIZERS)}")
        if not self.lr > 0:
            raise NpcaiError(f"--lr {self.lr}: the learning rate must be > 0")
        if self.batch_size < 2:
            raise NpcaiError(f"--batch-size {self.batch_size}: use at least 2 (batch normalisation)")
        if self.epochs < 1:
            raise NpcaiError(f"--epochs {self.epochs}: train at least one epoch")
        check_image_side(self.size, what="--size", minimum=32, hint="use a multiple of 32 such as 256")
        if self.timepoint not in (None, "pre", "post"):
            raise NpcaiError(f"--timepoint {self.timepoint!r}: use pre, post or all")
        LabelSet.parse(self.labels)
        if not 0 <= self.context <= 5:
            raise NpcaiError(f"--context-slices {self.context}: use 0 (2D) to 5 neighbour slices each side")
        if not 0 <= self.negative_fraction < 1:
            raise NpcaiError(f"--negative-fraction {self.negative_fraction}: use a value in [0, 1) "
                             f"(e.g. 0.3: 30% of each epoch's slices have no target)")
        if self.crop_mm is not None and not self.crop_mm > 0:
            raise NpcaiError(f"--crop-mm {self.crop_mm}: give the side of the centred square in mm (> 0)")
        from npcai.imaging.masks import parse_min_component

        h, w = parse_min_component(self.min_component)
        self.min_component = f"{h}x{w}"
        from npcai.models.devices import DeviceOptions

        DeviceOptions.of(self).check()


@dataclass
class SegRun:
    """A finished (or loaded) segmentation run."""

    path: Path
    config: dict[str, Any]
    split: pd.DataFrame
    summary: dict[str, Any]
    module: SegmentationModule | None = None
    #: this process's DDP rank; a worker (rank > 0) returns an empty run: rank 0 writes it
    rank: int = 0

    @property
    def labels(self) -> LabelSet:
        return LabelSet.parse(self.config["options"]["labels"])

    @property
    def model(self) -> torch.nn.Module:
        """The selected (best validation Dice) network in eval mode."""
        if self.module is None:
            raise NpcaiError(f"{self.path}: model not loaded")
        return self.module.model

    def patients(self, split: str) -> list[str]:
        return self.split.loc[self.split["split"] == split, "patient_id"].tolist()


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers (:func:`npcai.runs.package_versions`)."""
    from npcai.runs import package_versions as versions

    return versions()


def input_hash(cohort: Cohort, scans) -> str:
    """SHA-256 over the image and manual-mask files of ``scans`` (the data a run learns from)."""
    files = []
    for s in scans:
        files += [cohort.path(s.image), cohort.path(s.mask)]
    return paths_sha256(files)


def _validation_rows(val_set, cfg: SegTrainConfig) -> list[int]:
    """Validation slices: those with the target, plus every slice without it when training
    samples such slices (then a false alarm on an empty slice counts as Dice 0 in selection)."""
    positive = val_set.positive
    return list(range(len(val_set))) if cfg.negative_fraction > 0 else np.flatnonzero(positive).tolist()


def _loaders(train_set, val_set, cfg: SegTrainConfig, rank: int, world: int):
    """Training and validation loaders; under DDP each rank gets its share of the seeded
    shuffle (padded to equal length) and an unpadded share of the validation slices.

    Each training epoch holds every slice with the target and a fresh draw of slices without
    it (``negative_fraction``; :class:`SliceSampler`)."""
    from npcai.models.lightning_module import ShardSampler

    order = SliceSampler(train_set.positive, negative_fraction=cfg.negative_fraction, seed=cfg.seed)
    bs = min(cfg.batch_size, len(order))
    train_ds = SliceDataset(train_set, augment=cfg.augment, spatial=cfg.spatial_augment, seed=cfg.seed + rank)
    val_ds = SliceDataset(val_set)
    val_rows = _validation_rows(val_set, cfg)
    if world > 1:
        train_sampler = ShardSampler(order, len(order), rank, world, pad=True)
        val_sampler = ShardSampler(val_rows, len(val_rows), rank, world, pad=False)
    else:
        train_sampler, val_sampler = order, val_rows
    n = len(train_sampler)
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=bs, sampler=train_sampler,
                                               drop_last=n > bs and n % bs == 1, num_workers=0)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=max(bs, 2), sampler=val_sampler, shuffle=False,
                                             num_workers=0)
    return train_loader, val_loader


class _HistoryWriter(L.Callback):
    """Rewrite ``history.csv`` after every epoch, so an interrupted run still shows its curve."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, module) -> None:
        if module.history and trainer.global_rank == 0:
            atomic_write_text(self.path, pd.DataFrame(module.history).to_csv(index=False))


def train_segmenter(cohort: str | Path | Cohort, out: str | Path, *, resume: bool = False,
                    overwrite: bool = False, **options: Any) -> SegRun:
    """Train a U-Net/DeepLabV3 on the cohort's labelled slices; write ``out`` (see module docstring).

    Args:
        cohort: cohort folder (or :class:`Cohort`).
        out: the run folder to create.
        resume: continue an unfinished run in ``out`` from ``checkpoints/last.ckpt`` with its saved
            options (only ``epochs``, ``max_minutes`` and the device options may be changed).
        overwrite: replace an existing run folder.
        **options: fields of :class:`SegTrainConfig` (arch, encoder, pretrained, weights,
            optimizer, lr, batch_size, epochs, patience, max_minutes, size, labels, sequence,
            timepoint, normalise, test_fraction, val_fraction, split_seed, seed, augment, spatial_augment,
            encoder_depth, context, negative_fraction, crop_mm, min_component, keep_largest_3d, and the
            device options accelerator, devices, precision, strategy, num_nodes of :class:`npcai.models.devices.DeviceOptions`). Under DDP every process
            calls this; rank 0 alone writes ``out``, the others return a :class:`SegRun` with
            ``rank > 0`` and nothing loaded.

    Returns:
        The :class:`SegRun` with the best-validation model loaded.
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from npcai.models.devices import DeviceOptions, launch_rank

    t0 = time.perf_counter()
    out = check_output_path(out, [cohort.root if isinstance(cohort, Cohort) else cohort])
    rank = launch_rank(int(options.get("devices") or 1))   # DDP workers (rank > 0) only train
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    ckpt_dir = out / "checkpoints"
    if resume:
        if (out / "config.yaml").is_file() and not (ckpt_dir / "last.ckpt").is_file():
            raise NpcaiError(f"{out}: the run was interrupted before its first checkpoint, so there is "
                             f"nothing to resume; start it again with --overwrite")
        if not (out / "config.yaml").is_file() or not (ckpt_dir / "last.ckpt").is_file():
            raise NpcaiError(f"{out}: nothing to resume (no config.yaml or checkpoints/last.ckpt); "
                             f"start a new run without --resume")
        saved = yaml.safe_load((out / "config.yaml").read_text())
        cfg = SegTrainConfig(**saved["options"])
        for key in ("epochs", "max_minutes", *_DEVICE_KEYS):   # hardware may change between sessions
            if options.get(key) is not None:
                setattr(cfg, key, options[key])
        if (out / "summary.json").is_file() and rank == 0:
            (out / "summary.json").unlink()
    else:
        unknown = set(options) - set(SegTrainConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"train_segmenter: unknown options {sorted(unknown)}")
        cfg = SegTrainConfig(**{k: v for k, v in options.items() if v is not None})
        if rank == 0 and out.is_dir() and any(out.iterdir()) and not overwrite:
            raise NpcaiError(f"{out}: folder exists and is not empty; pass --overwrite, --resume, "
                             f"or choose another path")
        if rank == 0 and check_replaceable(out, overwrite):   # only a folder npcai wrote is ever removed
            import shutil

            shutil.rmtree(out)
    cfg.validate()
    devices = DeviceOptions.of(cfg).resolve()      # a GPU asked for where none is visible fails here
    labels = LabelSet.parse(cfg.labels)
    cfg.sequence = cfg.sequence or default_sequence(cohort)
    cfg.normalise = cfg.normalise or default_normalisation(cohort, cfg.sequence)

    slices = load_slices(cohort, labels=labels, size=cfg.size, sequence=cfg.sequence,
                         timepoint=cfg.timepoint, normalise=cfg.normalise, context=cfg.context,
                         negatives=cfg.negative_fraction > 0, crop_mm=cfg.crop_mm)
    split = split_by_patient(slices.index, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction,
                             seed=cfg.split_seed)
    if resume:
        saved_split = pd.read_csv(out / "split.csv", dtype={"patient_id": str}).set_index("patient_id")["split"]
        if not saved_split.sort_index().equals(split.sort_index()):
            raise NpcaiError(f"{out}: the cohort's labelled patients changed since this run started; "
                             f"start a new run instead of --resume")
    per_patient = slices.index[slices.positive].groupby("patient_id").agg(n_slices=("slice_index", "size"),
                                                         has_nodes=("nodes_px", lambda s: int((s > 0).any())))
    split_table = pd.DataFrame({"patient_id": split.index, "split": split.values}).merge(
        per_patient, left_on="patient_id", right_index=True)
    train_set = slices.subset(split.index[split == "train"])
    val_set = slices.subset(split.index[split == "val"])
    if int(train_set.positive.sum()) < 2:
        raise NpcaiError(f"{cohort.root}: only {int(train_set.positive.sum())} training slice(s) with the "
                         f"target; add patients with contours")

    # the network (and its weights file) before anything is written, so a bad --encoder or
    # --weights leaves no run folder behind (seeded first: the initial weights depend on the seed)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = SegmentationModule(arch=cfg.arch, encoder=cfg.encoder, label_names=labels.names,
                                optimizer=cfg.optimizer, lr=cfg.lr, pretrained=cfg.pretrained and not resume,
                                weights=None if resume else cfg.weights, encoder_depth=cfg.encoder_depth,
                                in_channels=2 * cfg.context + 1)
    scans = select_scans(cohort, sequence=cfg.sequence, timepoint=cfg.timepoint)
    config = {"format": SEGRUN_FORMAT, "options": asdict(cfg),
              "cohort": {"path": str(cohort.root.resolve()), "modality": cohort.modality,
                         "input_sha256": input_hash(cohort, scans), "n_scans": len(scans)},
              "classes": {"0": "background", **{str(k): n for k, n in enumerate(labels.names, start=1)}},
              "label_values": list(labels.values), "packages": package_versions(),
              "loss": "monai.losses.DiceCELoss(softmax=True, to_onehot_y=True)",
              "selection": "best validation Dice (val patients only); early stopping on validation Dice",
              "input": {"channels": 2 * cfg.context + 1, "context": cfg.context, "crop_mm": cfg.crop_mm,
                        "edges": "neighbours beyond the volume repeat the edge slice"},
              "sampling": {"negative_fraction": cfg.negative_fraction,
                           "validation": "slices with the target" + (" and every slice without it"
                                                                     if cfg.negative_fraction > 0 else "")},
              "postprocess": {"min_component": cfg.min_component, "keep_largest_3d": cfg.keep_largest_3d}}
    if rank == 0:     # a DDP worker (rank > 0) never writes: rank 0 prepared the folder
        out.mkdir(parents=True, exist_ok=True)
        mark_output(out)
        if not resume:
            atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
            atomic_write_text(out / "split.csv", split_table.to_csv(index=False))
        else:
            old = yaml.safe_load((out / "config.yaml").read_text())
            old["options"].update({"epochs": cfg.epochs, "max_minutes": cfg.max_minutes,
                                   **{k: getattr(cfg, k) for k in _DEVICE_KEYS}})
            atomic_write_text(out / "config.yaml", yaml.safe_dump(old, sort_keys=False))
            config = old

    train_loader, val_loader = _loaders(train_set, val_set, cfg, rank, devices.world_size)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_dice", mode="max",
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    callbacks: list = [checkpoint, EarlyStopping(monitor="val_dice", mode="max", patience=cfg.patience),
                       _HistoryWriter(out / "history.csv")]
    if progress_enabled() and rank == 0:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar())
    from npcai.models.train import quiet_lightning

    quiet_lightning()
    trainer = L.Trainer(**devices.trainer_kwargs(unused_parameters=True), max_epochs=cfg.epochs, logger=False,
                        callbacks=callbacks, enable_progress_bar=progress_enabled() and rank == 0,
                        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                        max_time={"minutes": cfg.max_minutes} if cfg.max_minutes else None,
                        deterministic=False)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")   # Dice is gathered over ranks already
        trainer.fit(module, train_loader, val_loader,
                    ckpt_path=str(ckpt_dir / "last.ckpt") if resume else None)
    if trainer.global_rank != 0:
        return SegRun(path=out, config={}, split=pd.DataFrame(), summary={}, rank=int(trainer.global_rank))
    history = pd.DataFrame(module.history)
    if history.empty or not (ckpt_dir / "best.ckpt").is_file():
        raise NpcaiError(f"{out}: training stopped before the first validation (time budget too short?); "
                         f"raise --max-minutes or --epochs")
    atomic_write_text(out / "history.csv", history.to_csv(index=False))
    best_row = history.loc[history["val_dice"].idxmax()]
    summary = {
        "arch": cfg.arch, "encoder": cfg.encoder, "labels": str(labels),
        "patients": {s: int((split == s).sum()) for s in ("train", "val", "test")},
        "slices": {"train": int(train_set.positive.sum()), "val": int(val_set.positive.sum()),
                   "test": int((slices.index["patient_id"].isin(split.index[split == "test"])
                                & slices.positive).sum()),
                   "train_without_target_per_epoch": SliceSampler(
                       train_set.positive, negative_fraction=cfg.negative_fraction).n_neg},
        "epochs_run": int(history["epoch"].max()), "best_epoch": int(best_row["epoch"]),
        "val_dice": float(best_row["val_dice"]),
        "val_dice_per_label": {n: float(best_row.get(f"val_dice_{n}", np.nan)) for n in labels.names},
        "stopped_early": bool(int(history["epoch"].max()) < cfg.epochs),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    from npcai.models.devices import hardware_record

    config["hardware"] = hardware_record(trainer).to_dict()
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return load_segrun(out)


def load_segrun(path: str | Path, *, load_model: bool = True) -> SegRun:
    """Open a finished run folder; with ``load_model`` the best checkpoint in eval mode on CPU."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise NpcaiError(f"{path}: not a segmentation run (no config.yaml); create one with `npcai segment train`")
    if not (path / "summary.json").is_file():
        raise NpcaiError(f"{path}: training did not finish (no summary.json); continue it with "
                         f"`npcai segment train ... --out {path} --resume`")
    config = yaml.safe_load((path / "config.yaml").read_text())
    if config.get("format") != SEGRUN_FORMAT:
        raise NpcaiError(f"{path}/config.yaml: format {config.get('format')!r} is not {SEGRUN_FORMAT!r}")
    split = pd.read_csv(path / "split.csv", dtype={"patient_id": str})
    summary = json.loads((path / "summary.json").read_text())
    module = None
    if load_model:
        ckpt = path / "checkpoints" / "best.ckpt"
        if not ckpt.is_file():
            raise NpcaiError(f"{ckpt}: missing; re-run `npcai segment train`")
        module = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", pretrained=False, weights=None)
        module.eval()
    return SegRun(path=path, config=config, split=split, summary=summary, module=module)
