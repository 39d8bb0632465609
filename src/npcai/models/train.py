"""``train()``: from a cohort, an ROI cache and an endpoint to a complete run folder.

Steps: endpoint labels (with ``--where`` filtering) -> patient split (or ``--split-from``)
-> a :class:`~npcai.models.lightning_module.SelectionDataModule` holding *only* training
and validation rows -> ``Trainer.fit`` with checkpointing and early stopping on the
validation patients' AUC -> the best checkpoint is loaded -> only then are the test
patients' rows read and every patient predicted once -> the run folder is written
(see :mod:`npcai.models.run`).

Examples:
    >>> cfg = TrainConfig(cohort="cohort", roi="seg", endpoint="pfs-median",
    ...                   backbone="resnet18", pretrained=False, epochs=5)   # doctest: +SKIP
    >>> result = train(cfg, "runs/r1")                                      # doctest: +SKIP
    >>> result.test_auc                                                     # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from npcai.errors import NpcaiError
from npcai.fsutil import check_output_path, check_replaceable, file_sha256, replace_output_dir
from npcai.progress import progress_enabled, track

__all__ = ["TrainConfig", "TrainResult", "train", "build_network", "quiet_lightning", "labelled_patients",
           "LabelledPatients", "UNITS"]

log = logging.getLogger(__name__)
UNITS = ("image", "patient")


@dataclass
class TrainConfig:
    """Every option of a training run (written to config.yaml; ``npcai train --config`` reads it back).

    Attributes:
        cohort: the cohort folder.
        roi: the ROI cache name (``COHORT/roi/NAME``).
        endpoint: ``pfs-median``, ``distant-metastasis``, ``residual-tumour`` or a 0/1 column.
        backbone: a seed backbone or any timm model name.
        unit: ``image`` (slices carry the patient's label) or ``patient`` (bags, MIL).
        pretrained: ImageNet weights from timm's hub (fails clearly offline).
        weights: a local backbone weights file instead of the hub.
        optimizer, lr, weight_decay: the optimiser.
        schedule: learning-rate schedule over ``epochs``: ``constant`` or ``cosine`` (annealed
            from ``lr`` towards 0 by the last epoch; early stopping can still end the run sooner).
        batch_size: slices (image unit) or bags (patient unit) per step.
        epochs, patience: maximum epochs; early stopping patience on validation AUC.
        ema: decay of an exponential moving average of the weights, updated every step (0 =
            off; e.g. 0.99). Validation, model selection and the saved network use the
            average, which moves less from epoch to epoch than the raw weights (on a small
            cohort the raw weights' validation AUC jumps by 0.1 between epochs).
        dropout: dropout before the linear head.
        members: K > 1 trains a deep ensemble (:class:`npcai.models.classifier.DeepEnsemble`;
            binary task, image unit): K networks, each trained alone as a one-network run with
            seed ``seed + k`` (its own initialisation, augmentation and batch order) on the
            same training and validation patients, each stopped and selected at its own best
            validation epoch; the run's network predicts their mean probability. K members
            cost K times the training time; 1 = one network.
        size: network input side in px (None = the ROI cache's size).
        seed: seeds the split, shuffling, augmentation and initialisation.
        val_fraction, test_fraction: validation share of the training patients; test share of all.
        split_from: reuse this run's split.csv.
        where: a patient filter (:mod:`npcai.cohort.filters`, e.g. ``treatment == "CCRT"``).
        test_where: a filter whose matching patients all go to the test cohort (split
            ``test_external``) and none to training or validation (e.g. ``centre != "C1"``).
        folds: K >= 2 for patient-level stratified K-fold cross-validation
            (:func:`npcai.models.folds.train_folds`); None = one train/val/test split.
        fold_seed: seeds the fold assignment (the validation split of each fold uses ``seed``).
        aggregate: slice -> patient probability (``mean``, ``max``, ``area-weighted``), image unit.
        pooling: MIL pooling (``mean``, ``attention``), patient unit.
        bag_size: slices per training bag (patient unit).
        augment: flips, small affine, intensity jitter on training batches.
        stratify_centre: stratify the split by centre too, when the clinical table has one.
        num_workers: DataLoader worker processes.
        task: what is learnt (:mod:`npcai.models.tasks`): ``binary`` (a 0/1 endpoint) or
            ``survival`` (deep Cox on a time/event endpoint such as ``dfs``; patient unit).
        stacked: survival task: one backbone over all sequences as channels instead of one
            backbone per sequence (about 3x faster for three sequences).
        normalise: None (the ROI cache's own normalisation) or ``histogram``: Nyúl–Udupa
            landmarks learnt on this run's training patients only, the ROI rebuilt with them
            and the landmarks kept in the run (:func:`npcai.imaging.histogram.fit_run_histogram`).
        accelerator, devices, precision, strategy, num_nodes: where training computes
            (:class:`npcai.models.devices.DeviceOptions`): ``auto|cpu|gpu``, devices per node
            (more than one: DDP, one process each; ``batch_size`` is per device), ``32``,
            ``16-mixed`` (GPU) or ``bf16-mixed``, ``auto|ddp``, machines.
    """

    cohort: str
    roi: str
    endpoint: str
    backbone: str = "efficientnet_b0"
    unit: str = "image"
    pretrained: bool = True
    weights: str | None = None
    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "constant"
    ema: float = 0.0
    batch_size: int = 32
    epochs: int = 40
    patience: int = 10
    dropout: float = 0.5
    members: int = 1
    size: int | None = None
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_from: str | None = None
    where: str | None = None
    test_where: str | None = None
    folds: int | None = None
    fold_seed: int = 0
    aggregate: str = "mean"
    pooling: str = "mean"
    bag_size: int = 8
    augment: bool = True
    stratify_centre: bool = True
    num_workers: int = 0
    task: str = "binary"
    stacked: bool = False
    normalise: str | None = None
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32"
    strategy: str = "auto"
    num_nodes: int = 1

    @property
    def device_options(self):
        """The :class:`~npcai.models.devices.DeviceOptions` of this run."""
        from npcai.models.devices import DeviceOptions

        return DeviceOptions.of(self)

    def validate(self) -> "TrainConfig":
        """Check option values; raise :class:`NpcaiError` naming the bad option."""
        from npcai.models.lightning_module import AGGREGATES, OPTIMIZERS, SCHEDULES
        from npcai.models.classifier import POOLINGS

        checks = [
            (self.unit in UNITS, f"--unit {self.unit!r}: choose one of {', '.join(UNITS)}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"--schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}"),
            (self.aggregate in AGGREGATES, f"--aggregate {self.aggregate!r}: choose one of {', '.join(AGGREGATES)}"),
            (self.pooling in POOLINGS, f"--pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}"),
            (self.lr > 0, f"--lr {self.lr}: must be positive"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be at least 1"),
            (self.epochs >= 1, f"--epochs {self.epochs}: must be at least 1"),
            (self.patience >= 1, f"--patience {self.patience}: must be at least 1"),
            (0 <= self.dropout < 1, f"--dropout {self.dropout}: must be in [0, 1)"),
            (1 <= self.members <= 16, f"--members {self.members}: must be 1 (one network) to 16"),
            (self.members == 1 or (self.unit == "image" and self.task == "binary"),
             f"--members {self.members}: a deep ensemble is built for the binary task's image unit, "
             f"not the {self.task} task's {self.unit} unit; train with members 1"),
            (self.weight_decay >= 0, f"--weight-decay {self.weight_decay}: must be >= 0"),
            (0 <= self.ema < 1, f"--ema {self.ema}: the decay must be in [0, 1) (0 = off; e.g. 0.99)"),
            (self.size is None or self.size >= 16, f"--size {self.size}: must be at least 16 px"),
            (0 < self.val_fraction < 1, f"--val-fraction {self.val_fraction}: must be in (0, 1)"),
            (0 < self.test_fraction < 1, f"--test-fraction {self.test_fraction}: must be in (0, 1)"),
            (self.bag_size >= 1, f"--bag-size {self.bag_size}: must be at least 1"),
            (self.folds is None or self.folds >= 2, f"--folds {self.folds}: cross-validation needs at least 2"),
            (not (self.folds and self.task != "binary"), f"folds: cross-validation is for the binary task, "
                                                          f"not {self.task}; train one split"),
            (not (self.folds and self.test_where), "folds with a test filter: cross-validate inside one "
             "cohort, or use the test filter with a single split (not both)"),
            (not (self.pretrained and self.weights), "pass either --pretrained or --weights PATH, not both"),
            (self.normalise in (None, "histogram"), f"--normalise {self.normalise!r}: the one value is histogram "
             "(landmarks learnt on the run's training patients); omit it to keep the ROI cache's normalisation"),
        ]
        for ok, msg in checks:
            if not ok:
                raise NpcaiError(msg)
        devices = self.device_options.check()
        if self.folds and devices.world_size > 1:
            raise NpcaiError(f"folds with {devices.world_size} devices: cross-validation trains its K runs one "
                             f"after another in one process; use one device per run (devices 1), or DDP "
                             f"without folds")
        if self.members > 1 and devices.world_size > 1:
            raise NpcaiError(f"members {self.members} with {devices.world_size} devices: a deep ensemble trains "
                             "its members one after another in one process; use one device (devices 1)")
        if self.normalise == "histogram" and devices.world_size > 1:
            raise NpcaiError(f"normalise histogram with {devices.world_size} devices: the landmarks are learnt and "
                             "the ROI rebuilt in one process; train on one device, or build the ROI with "
                             "landmarks first (npcai roi landmarks) and train on it with DDP")
        if self.where is not None:
            from npcai.cohort.filters import parse_filter

            parse_filter(self.where)   # a filter is data: refuse anything outside its grammar now
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise NpcaiError(f"config: unknown training options {', '.join(unknown)}")
        return cls(**data).validate()


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder and its headline numbers."""

    run_dir: Path
    best_epoch: int
    val_auc: float
    test_auc: float
    n_test: int
    epochs_run: int
    summary: dict[str, Any] = field(default_factory=dict)
    #: this process's DDP rank; only rank 0 writes the run folder (the others return NaN numbers)
    rank: int = 0


# ---------------------------------------------------------------------------- data
@dataclass
class _Prepared:
    labels: pd.Series           # patient -> label (patients with ROI rows)
    split: pd.Series            # patient -> split
    excluded: dict[str, int]
    index: pd.DataFrame         # ROI index of the labelled patients (+ roi_row, label, split)
    endpoint: Any


@dataclass
class LabelledPatients:
    """The patients a run can use: the task's labels (the patient filter applied, patients
    without ROI slices dropped), the reasons others were excluded, and the centre strata."""

    clinical: pd.DataFrame
    labels: pd.Series
    excluded: dict[str, int]
    endpoint: Any
    strata: pd.Series | None


def labelled_patients(cfg: TrainConfig, cohort, roi, task=None) -> LabelledPatients:
    """Labels of ``cfg.endpoint`` (by ``task``, default the binary endpoint) for the patients of
    ``cohort`` that pass ``cfg.where`` and have slices in ``roi`` (shared by single-split and
    cross-validated training)."""
    from npcai.cohort.endpoints import endpoint_labels, filter_patients

    clinical = filter_patients(cohort.clinical(), cfg.where)
    ep = task.labels(clinical, cfg.endpoint) if task is not None else endpoint_labels(clinical, cfg.endpoint)
    excluded = ep.excluded_counts()
    have_rows = set(roi.index["patient_id"].unique())
    no_roi = [p for p in ep.labels.index if p not in have_rows]
    if no_roi:
        excluded[f"no slices in ROI cache {cfg.roi}"] = len(no_roi)
    labels = ep.labels.drop(no_roi)
    if labels.empty:
        raise NpcaiError(f"ROI cache {cfg.roi}: none of the {len(ep.labels)} labelled patients has slices; "
                         f"check --roi and --where")
    strata = None
    if cfg.stratify_centre and "centre" in clinical.columns:
        strata = clinical["centre"].reindex(labels.index)
    return LabelledPatients(clinical, labels, excluded, ep, strata)


def _prepare(cfg: TrainConfig, cohort, roi, task=None, given_split: pd.Series | None = None) -> _Prepared:
    """Step 1: the task's labels of the (filtered) patients with ROI slices, and their split
    (``given_split``: one fold of a cross-validated run; else reused or drawn)."""
    from npcai.cohort.endpoints import filter_patients
    from npcai.cohort.splits import reuse_split, split_patients
    from npcai.runs import check_cohort, read_config

    lp = labelled_patients(cfg, cohort, roi, task)
    clinical, labels, excluded, ep, strata = lp.clinical, lp.labels, lp.excluded, lp.endpoint, lp.strata
    if given_split is not None:
        split = given_split.reindex(labels.index)
        if split.isna().any():
            raise NpcaiError(f"given split: {int(split.isna().sum())} labelled patients have no split "
                             f"(e.g. {split.index[split.isna()][0]})")
    elif cfg.split_from:
        check_cohort(read_config(cfg.split_from), cfg.cohort, f"--split-from {cfg.split_from}")
        split = reuse_split(cfg.split_from, labels)
    else:
        external = filter_patients(clinical, cfg.test_where).index if cfg.test_where else None
        split = split_patients(labels, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction,
                               seed=cfg.seed, strata=strata, external=external)
    for name in ("train", "val"):
        sub = labels[split == name]
        if sub.nunique() < 2:
            raise NpcaiError(f"{name} split: {len(sub)} patients, all with label "
                             f"{sub.iloc[0] if len(sub) else '-'}; both classes are needed — use more "
                             f"patients or a larger --val-fraction")
    index = roi.index.reset_index(names="roi_row")
    index = index[index["patient_id"].isin(labels.index)].copy()
    index["label"] = labels.reindex(index["patient_id"]).to_numpy()
    index["split"] = split.reindex(index["patient_id"]).to_numpy()
    return _Prepared(labels, split, excluded, index, ep)


def _run_histogram(cfg: TrainConfig, cohort, roi, task, prep: _Prepared):
    """Step 1b (``normalise: histogram``): landmarks learnt on the training split only, the ROI
    rebuilt with them; the patients keep their split."""
    from npcai.imaging.histogram import fit_run_histogram

    hist = fit_run_histogram(cfg.cohort, roi, prep.split.index[prep.split == "train"])
    return hist.roi, _prepare(cfg, cohort, hist.roi, task, prep.split), hist


@dataclass
class _Geometry:
    n_chans: int
    cache_size: int
    size: int | None            # resize to this side (None: the cache's size)
    pixel_aspect: float

    @property
    def net_size(self) -> int:
        return self.size or self.cache_size


def _geometry(cfg: TrainConfig, roi) -> _Geometry:
    """Step 2: the network input (channels, side, resize) and the pixel aspect for augmentation."""
    from npcai.models.factory import min_input_size

    n_chans, cache_size = int(roi.images.shape[1]), int(roi.images.shape[-1])
    size = cfg.size if cfg.size and cfg.size != cache_size else None
    if (size or cache_size) < min_input_size(cfg.backbone):
        raise NpcaiError(f"--backbone {cfg.backbone}: needs inputs of at least {min_input_size(cfg.backbone)} px "
                         f"but the ROI cache {cfg.roi} is {cache_size} px; pass --size {min_input_size(cfg.backbone)}")
    pixel_aspect = 1.0
    if {"pixel_mm", "pixel_mm_col"} <= set(roi.index.columns):
        ratio = (roi.index["pixel_mm"] / roi.index["pixel_mm_col"]).median()
        pixel_aspect = float(ratio) if math.isfinite(ratio) and ratio > 0 else 1.0
    return _Geometry(n_chans, cache_size, size, pixel_aspect)


def _area(index: pd.DataFrame) -> np.ndarray:
    for col in ("tumour_area_px", "mask_area_px"):
        if col in index.columns:
            return index[col].fillna(0).to_numpy(dtype=float)
    return np.ones(len(index))


def _datasets(cfg: TrainConfig, images, rows: pd.DataFrame, *, training: bool, size: int | None,
              targets=None):
    """Slice or bag datasets of ``rows``; ``targets(patients)`` gives the task's (n,) or (n, k)
    targets (default: the rows' 0/1 label)."""
    from npcai.models.data import PatientBagDataset, SliceDataset

    if cfg.unit == "image":
        y = rows["label"].to_numpy() if targets is None else targets(rows["patient_id"].to_numpy())
        return SliceDataset(images, rows["roi_row"].to_numpy(), y, size=size)
    groups = {p: g["roi_row"].to_numpy() for p, g in rows.groupby("patient_id", sort=True)}
    labels = rows.groupby("patient_id")["label"].first().to_dict() if targets is None else \
        dict(zip(groups, targets(list(groups))))
    return PatientBagDataset(images, groups, labels, bag_size=cfg.bag_size if training else None,
                             seed=cfg.seed, size=size)


def build_network(options: dict[str, Any] | TrainConfig, in_chans: int, *, pretrained: bool | None = None,
                  weights: str | None = None) -> torch.nn.Module:
    """The network of a run's options: the task's own (e.g. survival), an image classifier, or a
    MIL patient classifier."""
    from npcai.models.factory import create_classifier, create_patient_classifier
    from npcai.models.tasks import make_task

    opt = dataclasses.asdict(options) if isinstance(options, TrainConfig) else options
    kwargs = dict(in_chans=int(in_chans), dropout=float(opt["dropout"]),
                  pretrained=bool(opt.get("pretrained")) if pretrained is None else pretrained,
                  weights=opt.get("weights") if pretrained is None else weights)
    own = make_task(opt).network(opt, int(in_chans), pretrained=kwargs["pretrained"], weights=kwargs["weights"])
    if own is not None:
        return own
    if opt["unit"] == "patient":
        return create_patient_classifier(opt["backbone"], pooling=opt["pooling"], **kwargs)
    members = int(opt.get("members") or 1)      # runs written before the option have one network
    if members > 1:
        from npcai.models.classifier import DeepEnsemble

        return DeepEnsemble([create_classifier(opt["backbone"], **kwargs) for _ in range(members)])
    return create_classifier(opt["backbone"], **kwargs)


def _selection_stage(cfg: TrainConfig, task, model, roi, prep: _Prepared, geo: _Geometry):
    """Step 3: the Lightning module and a data module holding ONLY training and validation rows."""
    from npcai.models.data import SliceAugment
    from npcai.models.lightning_module import SelectionDataModule, TaskModule

    sel = prep.index[prep.index["split"].isin(["train", "val"])]
    train_rows, val_rows = sel[sel["split"] == "train"], sel[sel["split"] == "val"]
    targets = lambda patients: task.targets(prep.endpoint, patients)  # noqa: E731
    train_ds = _datasets(cfg, roi.images, train_rows, training=True, size=geo.size, targets=targets)
    val_ds = _datasets(cfg, roi.images, val_rows, training=False, size=geo.size, targets=targets)
    if cfg.unit == "image":
        val_patients, val_weights = val_rows["patient_id"].to_numpy(), _area(val_rows)
    else:
        val_patients, val_weights = np.array(val_ds.patients, dtype=object), None
    augment = SliceAugment(seed=cfg.seed, pixel_aspect=geo.pixel_aspect) if cfg.augment else None
    module = TaskModule(model, task, val_patients=val_patients, val_weights=val_weights,
                        optimizer=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                        schedule=cfg.schedule, max_epochs=cfg.epochs, augment=augment, seed=cfg.seed,
                        ema=cfg.ema)
    data = SelectionDataModule(train_ds, val_ds, batch_size=cfg.batch_size, seed=cfg.seed,
                               num_workers=cfg.num_workers)
    return module, data


# ---------------------------------------------------------------------------- lightning
def _checkpoint_callback(dirpath: Path, monitor: str, mode: str):
    from lightning.pytorch.callbacks import ModelCheckpoint

    class RelocatableCheckpoint(ModelCheckpoint):
        """ModelCheckpoint whose state survives the run folder being moved (partial -> final)."""

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            old = state_dict.get("dirpath")
            if old and self.dirpath and old != self.dirpath:
                fix = lambda p: p.replace(old, self.dirpath, 1) if isinstance(p, str) else p  # noqa: E731
                state_dict = dict(state_dict, dirpath=self.dirpath,
                                  best_model_path=fix(state_dict.get("best_model_path")),
                                  kth_best_model_path=fix(state_dict.get("kth_best_model_path")),
                                  last_model_path=fix(state_dict.get("last_model_path")),
                                  best_k_models={fix(k): v for k, v in state_dict.get("best_k_models", {}).items()})
            super().load_state_dict(state_dict)

    # best.ckpt: selected on the task's validation metric. last.ckpt: every epoch, for --resume
    # (Lightning's own save_last only writes when the best improves). Both at the epoch
    # boundary, after validation.
    best = RelocatableCheckpoint(dirpath=str(dirpath), filename="best", monitor=monitor, mode=mode,
                                 save_top_k=1, save_weights_only=True, auto_insert_metric_name=False,
                                 save_on_train_epoch_end=True)
    last = RelocatableCheckpoint(dirpath=str(dirpath), filename="last", monitor=None, save_top_k=1,
                                 every_n_epochs=1, save_on_train_epoch_end=True)
    return best, last


def _epoch_progress(max_epochs: int, monitor: str, what: str = "Training epochs"):
    """Advance an npcai progress bar once per epoch (the CLI's rich display), and log metrics."""
    from lightning.pytorch.callbacks import Callback

    class EpochProgress(Callback):
        def __init__(self):
            self._it = None

        def on_train_start(self, trainer, pl_module):
            self._it = iter(track(range(trainer.current_epoch, max_epochs), what))
            next(self._it, None)

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking or not pl_module.history:
                return
            h = pl_module.history[-1]
            log.info("epoch %d: train_loss %.4f, val_loss %.4f, %s %.3f", h["epoch"], h["train_loss"],
                     h["val_loss"], monitor, h[monitor])

        def on_train_epoch_end(self, trainer, pl_module):
            if self._it is not None:
                next(self._it, None)

    return EpochProgress()


def _workdir(out: Path, resume: bool, overwrite: bool, *, cohort: str, roi) -> tuple[Path, Path | None]:
    """The partial folder to build in, and the checkpoint to resume from (checked: same cohort and
    ROI input as the interrupted or finished run)."""
    from npcai.runs import CONFIG, check_cohort, check_roi, partial_dir, read_config

    work = partial_dir(out)
    if resume:
        for folder in (work, out):
            if (folder / "checkpoints" / "last.ckpt").is_file():
                if (folder / CONFIG).is_file():
                    old = read_config(folder)
                    check_cohort(old, cohort, "--resume")
                    check_roi(old, roi, "--resume")
                if folder == out:
                    _copy_for_resume(out, work)
                log.info("resuming the run in %s", folder)
                return work, work / "checkpoints" / "last.ckpt"
        raise NpcaiError(f"{out}: nothing to resume (no checkpoints/last.ckpt here or in {work}); "
                         f"train without --resume")
    check_replaceable(out, overwrite)   # a non-empty OUT is replaced only when npcai wrote it
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work, None


def _copy_for_resume(src: Path, dst: Path) -> None:
    """Copy a finished run to its partial folder so ``--resume`` continues it (predictions and
    summary dropped: they are written again at the end)."""
    from npcai.runs import PATIENTS, SLICES, SUMMARY

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for stale in (SLICES, PATIENTS, SUMMARY):
        (dst / stale).unlink(missing_ok=True)


def _check_mlflow() -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise NpcaiError("--mlflow: the mlflow package is not installed; `pip install mlflow` "
                         "or drop --mlflow") from exc


def _loggers(work: Path, mlflow: bool, run_name: str):
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(work), name="logs", version="")]
    if mlflow:
        _check_mlflow()
        from lightning.pytorch.loggers import MLFlowLogger

        loggers.append(MLFlowLogger(experiment_name="npcai", run_name=run_name,
                                    tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")))
    return loggers


def quiet_lightning() -> None:
    """Lightning's notices that say nothing to an npcai user, silenced once per process."""
    if not log.isEnabledFor(logging.DEBUG):  # lightning resets its loggers to INFO when imported
        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # on a machine with SLURM installed, every Trainer says so; npcai's SLURM executor
    # submits its own jobs (`npcai study run --executor slurm`)
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system.*")


def _fit(cfg: TrainConfig, task, module, data, work: Path, out: Path, ckpt_path: Path | None, *,
         mlflow: bool, callbacks: list | None, devices, rank: int = 0, what: str = "Training epochs"):
    """Step 4: ``Trainer.fit`` with early stopping and checkpoints on the validation metric only
    (``devices``: the :class:`~npcai.models.devices.ResolvedDevices`; under DDP every rank
    calls this, rank 0 alone writes checkpoints and logs; ``what`` names the progress bar)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar

    from npcai.runs.checkpoint import safe_checkpoint_io

    ckpt_cb, last_cb = _checkpoint_callback(work / "checkpoints", task.monitor, task.mode)
    cbs = [ckpt_cb, last_cb,
           EarlyStopping(monitor=task.monitor, mode=task.mode, patience=cfg.patience, check_finite=False)]
    if rank == 0:
        cbs.append(_epoch_progress(cfg.epochs, task.monitor, what))
    show_bar = progress_enabled() and rank == 0
    if show_bar:
        cbs.append(RichProgressBar(leave=False))
    trainer = pl.Trainer(**devices.trainer_kwargs(), deterministic=True, max_epochs=cfg.epochs,
                         callbacks=cbs + list(callbacks or []), logger=_loggers(work, mlflow, out.name),
                         enable_progress_bar=show_bar, enable_model_summary=False, num_sanity_val_steps=0,
                         log_every_n_steps=1, default_root_dir=str(work), plugins=[safe_checkpoint_io()])
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
            warnings.filterwarnings("ignore", message=r".*number of training batches.*")
            warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")  # --resume
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")   # the metric is gathered already
            trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    if trainer.interrupted:
        raise NpcaiError(f"{out}: training interrupted; continue it with `npcai train ... --out {out} --resume`")
    return trainer, ckpt_cb


def _select_best(task, model, module, ckpt_cb, work: Path, out: Path) -> tuple[int, pd.DataFrame, float]:
    """Step 5: load the checkpoint selected on validation; the history and its validation score."""
    from npcai.runs.checkpoint import load_model_weights

    best = work / "checkpoints" / "best.ckpt"
    if not best.is_file():
        raise NpcaiError(f"{out}: no checkpoint was selected (validation {task.monitor} never defined); "
                         f"check the validation split's labels")
    best_epoch = load_model_weights(model, best)
    history = pd.DataFrame(module.history, columns=["epoch", "train_loss", "val_loss", task.monitor])
    history = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
    chosen = history.loc[history["epoch"] == best_epoch, task.monitor]
    score = float(chosen.iloc[0]) if len(chosen) else float(ckpt_cb.best_model_score or float("nan"))
    return best_epoch, history, score


@dataclass
class _MemberFit:
    """One deep-ensemble member's training, as its run's summary records it."""

    seed: int
    best_epoch: int
    val_auc: float
    epochs_run: int
    stopped_early: bool


def _member_config(cfg: TrainConfig, k: int) -> TrainConfig:
    """Member ``k``'s options: a one-network run with seed ``cfg.seed + k`` (its initialisation,
    augmentation and batch order). The split was drawn from ``cfg.seed`` already and is shared."""
    return dataclasses.replace(cfg, seed=cfg.seed + k, members=1)


def _build_model(cfg: TrainConfig, n_chans: int):
    """The run's network, initialised from the seed: one network, or a deep ensemble whose
    member ``k`` is initialised exactly as a one-network run with seed ``cfg.seed + k``."""
    import lightning.pytorch as pl

    if cfg.members == 1:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        return build_network(cfg, n_chans)
    from npcai.models.classifier import DeepEnsemble

    members = []
    for k in range(cfg.members):
        pl.seed_everything(cfg.seed + k, workers=True, verbose=False)
        members.append(build_network(_member_config(cfg, k), n_chans))
    return DeepEnsemble(members)


def _fit_members(cfg: TrainConfig, task, model, roi, prep: _Prepared, geo: _Geometry, work: Path, out: Path, *,
                 mlflow: bool, callbacks: list | None, devices):
    """Steps 3-5 for a deep ensemble: every member trained and selected on the validation
    patients alone, one after another (its checkpoints under ``members/<k>/``, removed once its
    selected weights are in the ensemble); then the ensemble's ``checkpoints/best.ckpt``.

    Returns the last member's trainer, the members' histories (one table, column ``member``)
    and their :class:`_MemberFit` records."""
    from npcai.runs.checkpoint import save_checkpoint

    histories, fits, trainer = [], [], None
    for k, member in enumerate(model.members):
        member_cfg = _member_config(cfg, k)
        module, data = _selection_stage(member_cfg, task, member, roi, prep, geo)
        member_dir = work / "members" / str(k)
        trainer, ckpt_cb = _fit(member_cfg, task, module, data, member_dir, out, None, mlflow=mlflow,
                                callbacks=callbacks, devices=devices,
                                what=f"Training member {k + 1} of {cfg.members}")
        best_epoch, history, score = _select_best(task, member, module, ckpt_cb, member_dir, out)
        histories.append(history.assign(member=k)[["member", *history.columns]])
        fits.append(_MemberFit(seed=member_cfg.seed, best_epoch=int(best_epoch), val_auc=float(score),
                               epochs_run=int(len(history)),
                               stopped_early=bool(len(history) and history["epoch"].max() + 1 < cfg.epochs)))
        shutil.rmtree(member_dir / "checkpoints")   # its selected weights live on in the ensemble
    model.cpu()
    save_checkpoint({"epoch": _ensemble_epoch(fits),
                     "state_dict": {f"model.{name}": w for name, w in model.state_dict().items()}},
                    work / "checkpoints" / "best.ckpt")
    return trainer, pd.concat(histories, ignore_index=True), fits


def _ensemble_epoch(fits: list[_MemberFit]) -> int:
    """A deep ensemble's selected epoch: the latest of its members' (the training it needed)."""
    return max(f.best_epoch for f in fits)


def _ensemble_summary(summary: dict[str, Any], fits: list[_MemberFit], pred_patients: pd.DataFrame) -> dict:
    """A deep ensemble's summary: the members' own selections, and the ensemble's validation AUC
    (its patient probabilities on the validation patients, who selected every member)."""
    from npcai.stats.auc import roc_auc

    val = pred_patients[pred_patients["split"] == "val"]
    val_auc = roc_auc(val["label"].to_numpy(), val["prob"].to_numpy()) if val["label"].nunique() == 2 else float("nan")
    return {**summary, "val_auc": val_auc,
            "epochs_run": max(f.epochs_run for f in fits), "stopped_early": all(f.stopped_early for f in fits),
            "members": [dataclasses.asdict(f) for f in fits],
            "selection": "each member's best epoch by its validation-patient AUC; the ensemble's probability is "
                         "the members' mean; test patients predicted once after selection"}


def _predict_all(task, model, roi, prep: _Prepared, geo: _Geometry) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Step 6 (after selection): every labelled patient predicted once; test patients read only now."""
    slices, patients = task.predict(model, roi.images, prep.index, size=geo.size)
    split_of, label_of = prep.split, prep.labels
    slices.insert(2, "split", split_of.reindex(slices["patient_id"]).to_numpy())
    slices.insert(4, "label", label_of.reindex(slices["patient_id"]).to_numpy())
    pred_patients = pd.DataFrame({"patient_id": patients.index, "split": split_of.reindex(patients.index).to_numpy(),
                                  "label": label_of.reindex(patients.index).to_numpy()})
    for col, values in task.outcome_columns(prep.endpoint, patients.index).items():
        pred_patients[col] = values
    for col in task.prediction_columns:
        pred_patients[col] = patients[col].to_numpy()
    pred_patients["n_slices"] = patients["n_slices"].to_numpy()
    return slices, pred_patients


def _summary(cfg: TrainConfig, task, prep: _Prepared, history: pd.DataFrame, best_epoch: int,
             val_score: float, pred_patients: pd.DataFrame) -> dict[str, Any]:
    counts = {}
    for name in ("train", "val", "test") + (("test_external",) if (prep.split == "test_external").any() else ()):
        sub = prep.labels[prep.split.reindex(prep.labels.index) == name]
        counts[name] = {"patients": int(len(sub)), "label_0": int((sub == 0).sum()),
                        "label_1": int((sub == 1).sum()),
                        "slices": int((prep.index["split"] == name).sum())}
    return {
        "task": task.name, "endpoint": cfg.endpoint, "endpoint_description": prep.endpoint.description,
        "endpoint_cutoff_months": prep.endpoint.cutoff, "where": cfg.where, "test_where": cfg.test_where,
        "splits": counts,
        "excluded": {"count": int(sum(prep.excluded.values())), "reasons": prep.excluded},
        "best_epoch": int(best_epoch), "val_auc" if task.monitor == "val_auc" else task.monitor: val_score,
        "monitor": task.monitor, "epochs_run": int(len(history)),
        "stopped_early": bool(len(history) and history["epoch"].max() + 1 < cfg.epochs),
        **task.summarise(pred_patients),
        "selection": f"best epoch by validation-patient {task.monitor.removeprefix('val_')}; "
                     "test patients predicted once after selection",
    }


def _config_doc(cfg: TrainConfig, task, cohort, roi, geo: _Geometry, out: Path, device: str,
                split_given: bool = False) -> dict[str, Any]:
    from npcai.runs import CONFIG, RUN_FORMAT, RoiSpec, cohort_id, package_versions
    from npcai.runs.predict import native_pixel_mm

    spec = RoiSpec.of(roi)
    return {
        "format": RUN_FORMAT, "kind": "train", "task": task.name,
        "options": dataclasses.asdict(cfg),
        "resolved": {"in_chans": geo.n_chans, "input_size": geo.net_size, "roi_size": geo.cache_size,
                     "pixel_aspect": geo.pixel_aspect, "augment": cfg.augment, "device": device,
                     "deterministic": True, "torch_threads": torch.get_num_threads()},
        "seed": cfg.seed,
        "versions": package_versions(),
        "cohort": {"path": str(Path(cfg.cohort).resolve()), "id": cohort_id(cfg.cohort),
                   "cohort_json_sha256": file_sha256(Path(cfg.cohort) / "cohort.json"),
                   "pixel_mm": native_pixel_mm(cohort, spec, roi.patients)},
        "roi": {**spec.to_dict(), "path": str(roi.root.resolve())},
        "reproduce": f"npcai train --config {out / CONFIG} --out NEW_RUN",
        "split_source": "given (one fold of a cross-validated run: reproduce the parent run)" if split_given
        else ("reused from " + str(cfg.split_from) if cfg.split_from else "drawn from the seed"),
    }


# ---------------------------------------------------------------------------- main
def train(config: TrainConfig, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          mlflow: bool = False, callbacks: list | None = None, task=None,
          split: pd.Series | None = None) -> TrainResult:
    """Train a model for the run's task and write a complete run folder to ``out``.

    Model selection (early stopping, best checkpoint) sees only validation patients; the
    test patients are read and predicted once, after ``fit``, with the selected checkpoint.

    Args:
        config: the options (see :class:`TrainConfig`).
        out: the run folder (built in ``.OUT.partial`` and renamed when complete).
        resume: continue from ``checkpoints/last.ckpt`` of the partial or finished run
            (e.g. with more ``epochs``); refused when the cohort or ROI input changed.
        overwrite: replace an existing ``out``.
        mlflow: also log metrics to MLflow (needs the mlflow package).
        callbacks: extra Lightning callbacks (e.g. for tests).
        task: the :class:`~npcai.models.tasks.Task` (default: from the options, binary); a
            registered task class (:func:`~npcai.models.tasks.register_task`) is recorded by name.
        split: a precomputed patient -> split Series (train/val/test) instead of drawing one
            (used by :func:`npcai.models.folds.train_folds` for each fold).

    Returns:
        :class:`TrainResult` with the test AUC over test patients and the selected epoch.
        Under DDP (``devices``/``num_nodes`` > 1) every process calls this: rank 0 prepares,
        writes and renames the run folder; the other ranks only train and return a result
        with ``rank > 0`` and no numbers.
    """
    from npcai.cohort.model import Cohort
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models.devices import hardware_record, launch_rank
    from npcai.models.tasks import make_task
    from npcai.runs import partial_dir
    from npcai.runs.folder import write_run

    quiet_lightning()
    cfg = config.validate()
    devices = cfg.device_options.resolve()   # a GPU asked for where none is visible fails first
    check_output_path(out, [cfg.cohort, cfg.split_from, cfg.weights])
    if mlflow:
        _check_mlflow()
    out = Path(out).resolve()
    cohort = Cohort.load(cfg.cohort)
    roi = RoiDataset.open(cfg.cohort, cfg.roi)
    if cfg.folds:
        raise NpcaiError("folds: a cross-validated run is trained by npcai.models.folds.train_folds")
    task = task if task is not None else make_task(cfg)
    prep = _prepare(cfg, cohort, roi, task, split)
    hist = None
    if cfg.normalise == "histogram":
        roi, prep, hist = _run_histogram(cfg, cohort, roi, task, prep)
    geo = _geometry(cfg, roi)
    if cfg.members > 1 and resume:
        raise NpcaiError(f"{out}: a deep ensemble run ({cfg.members} members) cannot be resumed; train it again")
    model = _build_model(cfg, geo.n_chans)      # a bad backbone or weights file fails before OUT is touched
    rank = launch_rank(devices.devices)
    if rank != 0:
        # a DDP worker (re-executed by Lightning's launcher, or started by the cluster): rank 0
        # prepared the partial folder and alone writes it; this process only trains
        work = partial_dir(out)
        ckpt_path = work / "checkpoints" / "last.ckpt" if resume else None
    else:
        work, ckpt_path = _workdir(out, resume, overwrite, cohort=cfg.cohort, roi=roi)
    config_doc = _config_doc(cfg, task, cohort, roi, geo, out, device="cpu", split_given=split is not None)
    if hist is not None:
        config_doc["histogram"] = hist.record()
    if rank == 0:
        write_run(work, config=config_doc, landmarks=hist.path if hist else None)   # provenance first: --resume checks it
    fits = None
    if cfg.members > 1:
        trainer, history, fits = _fit_members(cfg, task, model, roi, prep, geo, work, out, mlflow=mlflow,
                                              callbacks=callbacks, devices=devices)
        best_epoch, val_score = _ensemble_epoch(fits), float("nan")    # its val AUC: after prediction
    else:
        module, data = _selection_stage(cfg, task, model, roi, prep, geo)
        trainer, ckpt_cb = _fit(cfg, task, module, data, work, out, ckpt_path, mlflow=mlflow, callbacks=callbacks,
                                devices=devices, rank=rank)
        if trainer.global_rank != 0:
            return TrainResult(out, -1, float("nan"), float("nan"), 0, 0, {}, rank=int(trainer.global_rank))
        best_epoch, history, val_score = _select_best(task, model, module, ckpt_cb, work, out)
    pred_slices, pred_patients = _predict_all(task, model.cpu(), roi, prep, geo)
    summary = _summary(cfg, task, prep, history, best_epoch, val_score, pred_patients)
    if fits is not None:
        summary = _ensemble_summary(summary, fits, pred_patients)
        val_score = summary["val_auc"]
    config_doc["resolved"]["device"] = str(trainer.strategy.root_device)
    config_doc["hardware"] = hardware_record(trainer).to_dict()
    split_df = pd.DataFrame({"patient_id": prep.labels.index, "split": prep.split.reindex(prep.labels.index).to_numpy(),
                             "label": prep.labels.to_numpy()})
    write_run(work, config=config_doc, split=split_df, slices=pred_slices, patients=pred_patients,
              history=history, summary=summary)
    from npcai.models.curves import plot_training_curve

    plot_training_curve(history, work / "training_curve.png",
                        best_epoch=[f.best_epoch for f in fits] if fits else best_epoch, monitor=task.monitor,
                        title=f"{cfg.backbone}{f' x {cfg.members} (deep ensemble)' if cfg.members > 1 else ''} "
                              f"({cfg.unit} unit) on {cfg.roi}: {cfg.endpoint}",
                        **({"loss_label": task.loss_label} if hasattr(task, "loss_label") else {}))
    replace_output_dir(work, out)
    return TrainResult(out, int(best_epoch), val_score, summary.get("test_auc", float("nan")),
                       summary.get("n_test", 0), int(summary["epochs_run"]), summary)
