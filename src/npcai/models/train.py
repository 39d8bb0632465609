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
from npcai.fsutil import file_sha256
from npcai.progress import progress_enabled, track

__all__ = ["TrainConfig", "TrainResult", "train", "predict_rows", "labelled_patients", "LabelledPatients",
           "UNITS"]

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
        batch_size: slices (image unit) or bags (patient unit) per step.
        epochs, patience: maximum epochs; early stopping patience on validation AUC.
        dropout: dropout before the linear head.
        size: network input side in px (None = the ROI cache's size).
        seed: seeds the split, shuffling, augmentation and initialisation.
        val_fraction, test_fraction: validation share of the training patients; test share of all.
        split_from: reuse this run's split.csv.
        where: a pandas query selecting patients (e.g. ``treatment == "CCRT"``).
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
    batch_size: int = 32
    epochs: int = 40
    patience: int = 10
    dropout: float = 0.5
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

    def validate(self) -> "TrainConfig":
        """Check option values; raise :class:`NpcaiError` naming the bad option."""
        from npcai.models.lightning_module import AGGREGATES, OPTIMIZERS
        from npcai.models.classifier import POOLINGS

        checks = [
            (self.unit in UNITS, f"--unit {self.unit!r}: choose one of {', '.join(UNITS)}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"),
            (self.aggregate in AGGREGATES, f"--aggregate {self.aggregate!r}: choose one of {', '.join(AGGREGATES)}"),
            (self.pooling in POOLINGS, f"--pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}"),
            (self.lr > 0, f"--lr {self.lr}: must be positive"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be at least 1"),
            (self.epochs >= 1, f"--epochs {self.epochs}: must be at least 1"),
            (self.patience >= 1, f"--patience {self.patience}: must be at least 1"),
            (0 <= self.dropout < 1, f"--dropout {self.dropout}: must be in [0, 1)"),
            (self.weight_decay >= 0, f"--weight-decay {self.weight_decay}: must be >= 0"),
            (self.size is None or self.size >= 16, f"--size {self.size}: must be at least 16 px"),
            (0 < self.val_fraction < 1, f"--val-fraction {self.val_fraction}: must be in (0, 1)"),
            (0 < self.test_fraction < 1, f"--test-fraction {self.test_fraction}: must be in (0, 1)"),
            (self.bag_size >= 1, f"--bag-size {self.bag_size}: must be at least 1"),
            (self.folds is None or self.folds >= 2, f"--folds {self.folds}: cross-validation needs at least 2"),
            (not (self.folds and self.test_where), "folds with a test filter: cross-validate inside one "
             "cohort, or use the test filter with a single split (not both)"),
            (not (self.pretrained and self.weights), "pass either --pretrained or --weights PATH, not both"),
        ]
        for ok, msg in checks:
            if not ok:
                raise NpcaiError(msg)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise NpcaiError(f"config: unknown training options {', '.join(unknown)}")
        return cls(**data)


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


# ---------------------------------------------------------------------------- data
@dataclass
class _Prepared:
    labels: pd.Series           # patient -> label (patients with ROI rows)
    split: pd.Series            # patient -> split
    excluded: dict[str, int]
    index: pd.DataFrame         # ROI index of the labelled patients
    endpoint: Any


@dataclass
class LabelledPatients:
    """The patients a run can use: endpoint labels (``--where`` applied, patients without ROI
    slices dropped), the reasons others were excluded, and the centre strata."""

    clinical: pd.DataFrame
    labels: pd.Series
    excluded: dict[str, int]
    endpoint: Any
    strata: pd.Series | None


def labelled_patients(cfg: TrainConfig, cohort, roi) -> LabelledPatients:
    """Labels of ``cfg.endpoint`` for the patients of ``cohort`` that pass ``cfg.where`` and
    have slices in ``roi`` (shared by single-split and cross-validated training)."""
    from npcai.cohort.endpoints import endpoint_labels, filter_patients

    clinical = filter_patients(cohort.clinical(), cfg.where)
    ep = endpoint_labels(clinical, cfg.endpoint)
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


def _prepare(cfg: TrainConfig, cohort, roi, given_split: pd.Series | None = None) -> _Prepared:
    from npcai.cohort.endpoints import filter_patients
    from npcai.cohort.splits import reuse_split, split_patients

    lp = labelled_patients(cfg, cohort, roi)
    clinical, labels, excluded, ep, strata = lp.clinical, lp.labels, lp.excluded, lp.endpoint, lp.strata
    if given_split is not None:
        split = given_split.reindex(labels.index)
        if split.isna().any():
            raise NpcaiError(f"given split: {int(split.isna().sum())} labelled patients have no split "
                             f"(e.g. {split.index[split.isna()][0]})")
    elif cfg.split_from:
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


def _area(index: pd.DataFrame) -> np.ndarray:
    for col in ("tumour_area_px", "mask_area_px"):
        if col in index.columns:
            return index[col].fillna(0).to_numpy(dtype=float)
    return np.ones(len(index))


def _datasets(cfg: TrainConfig, images, rows: pd.DataFrame, *, training: bool, size: int | None):
    from npcai.models.data import PatientBagDataset, SliceDataset

    if cfg.unit == "image":
        return SliceDataset(images, rows["roi_row"].to_numpy(), rows["label"].to_numpy(), size=size)
    groups = {p: g["roi_row"].to_numpy() for p, g in rows.groupby("patient_id", sort=True)}
    labels = rows.groupby("patient_id")["label"].first().to_dict()
    return PatientBagDataset(images, groups, labels, bag_size=cfg.bag_size if training else None,
                             seed=cfg.seed, size=size)


def predict_rows(model: torch.nn.Module, images, rows: np.ndarray, *, size: int | None,
                 batch_size: int = 64) -> np.ndarray:
    """Slice probabilities (sigmoid of the logits) for ROI ``rows``, eval mode, no gradients."""
    from npcai.models.data import read_rows, resize_batch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            x = resize_batch(read_rows(images, rows[start:start + batch_size]), size)
            out.append(torch.sigmoid(model(x)).float().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# ---------------------------------------------------------------------------- lightning
def _checkpoint_callback(dirpath: Path):
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

    # best.ckpt: selected on validation AUC. last.ckpt: every epoch, for --resume (Lightning's own
    # save_last only writes when the best improves). Both at the epoch boundary, after validation.
    best = RelocatableCheckpoint(dirpath=str(dirpath), filename="best", monitor="val_auc", mode="max",
                                 save_top_k=1, save_weights_only=True, auto_insert_metric_name=False, save_on_train_epoch_end=True)
    last = RelocatableCheckpoint(dirpath=str(dirpath), filename="last", monitor=None, save_top_k=1,
                                 every_n_epochs=1, save_on_train_epoch_end=True)
    return best, last


def _epoch_progress(max_epochs: int):
    """Advance an npcai progress bar once per epoch (the CLI's rich display), and log metrics."""
    from lightning.pytorch.callbacks import Callback

    class EpochProgress(Callback):
        def __init__(self):
            self._it = None

        def on_train_start(self, trainer, pl_module):
            self._it = iter(track(range(trainer.current_epoch, max_epochs), "Training epochs"))
            next(self._it, None)

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking or not pl_module.history:
                return
            h = pl_module.history[-1]
            log.info("epoch %d: train_loss %.4f, val_loss %.4f, val_auc %.3f", h["epoch"], h["train_loss"],
                     h["val_loss"], h["val_auc"])

        def on_train_epoch_end(self, trainer, pl_module):
            if self._it is not None:
                next(self._it, None)

    return EpochProgress()


def _workdir(out: Path, resume: bool, overwrite: bool) -> tuple[Path, Path | None]:
    from npcai.models.run import copy_for_resume, partial_dir

    work = partial_dir(out)
    if resume:
        if (work / "checkpoints" / "last.ckpt").is_file():
            log.info("resuming the interrupted run in %s", work)
            return work, work / "checkpoints" / "last.ckpt"
        if (out / "checkpoints" / "last.ckpt").is_file():
            copy_for_resume(out, work)
            for stale in ("predictions_slices.csv", "predictions_patients.csv", "summary.json"):
                (work / stale).unlink(missing_ok=True)
            return work, work / "checkpoints" / "last.ckpt"
        raise NpcaiError(f"{out}: nothing to resume (no checkpoints/last.ckpt here or in {work}); "
                         f"train without --resume")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise NpcaiError(f"{out}: folder exists and is not empty; pass --overwrite, --resume or another --out")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work, None


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


# ---------------------------------------------------------------------------- main
def train(config: TrainConfig, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          mlflow: bool = False, callbacks: list | None = None,
          split: pd.Series | None = None) -> TrainResult:
    """Train a classifier and write a complete run folder to ``out``.

    Model selection (early stopping, best checkpoint) sees only validation patients; the
    test patients are read and predicted once, after ``fit``, with the selected checkpoint.

    Args:
        config: the options (see :class:`TrainConfig`).
        out: the run folder (built in ``.OUT.partial`` and renamed when complete).
        resume: continue from ``checkpoints/last.ckpt`` of the partial or finished run
            (e.g. with more ``epochs``).
        overwrite: replace an existing ``out``.
        mlflow: also log metrics to MLflow (needs the mlflow package).
        callbacks: extra Lightning callbacks (e.g. for tests).
        split: a precomputed patient -> split Series (train/val/test) instead of drawing one
            (used by :func:`npcai.models.folds.train_folds` for each fold).

    Returns:
        :class:`TrainResult` with the test AUC over test patients and the selected epoch.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar

    from npcai.cohort.model import Cohort
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models.curves import plot_training_curve
    from npcai.models.data import SliceAugment
    from npcai.models.factory import create_classifier, create_patient_classifier, min_input_size
    from npcai.models.lightning_module import ClassifierModule, SelectionDataModule, aggregate_patients
    from npcai.models.run import (RUN_FORMAT, load_state_from_checkpoint, package_versions, write_csv,
                                  write_json, write_yaml)

    if not log.isEnabledFor(logging.DEBUG):  # lightning resets its loggers to INFO when imported
        for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
    cfg = config.validate()
    if mlflow:
        _check_mlflow()
    out = Path(out).resolve()
    cohort = Cohort.load(cfg.cohort)
    roi = RoiDataset.open(cfg.cohort, cfg.roi)
    if cfg.folds:
        raise NpcaiError("folds: a cross-validated run is trained by npcai.models.folds.train_folds")
    prep = _prepare(cfg, cohort, roi, split)
    n_chans, cache_size = int(roi.images.shape[1]), int(roi.images.shape[-1])
    size = cfg.size if cfg.size and cfg.size != cache_size else None
    net_size = size or cache_size
    if net_size < min_input_size(cfg.backbone):
        raise NpcaiError(f"--backbone {cfg.backbone}: needs inputs of at least {min_input_size(cfg.backbone)} px "
                         f"but the ROI cache {cfg.roi} is {cache_size} px; pass --size {min_input_size(cfg.backbone)}")
    work, ckpt_path = _workdir(out, resume, overwrite)

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    kwargs = dict(in_chans=n_chans, pretrained=cfg.pretrained, weights=cfg.weights, dropout=cfg.dropout)
    if cfg.unit == "image":
        model = create_classifier(cfg.backbone, **kwargs)
    else:
        model = create_patient_classifier(cfg.backbone, pooling=cfg.pooling, **kwargs)

    # ---- selection stage: only training and validation rows exist here
    sel = prep.index[prep.index["split"].isin(["train", "val"])]
    train_rows, val_rows = sel[sel["split"] == "train"], sel[sel["split"] == "val"]
    train_ds = _datasets(cfg, roi.images, train_rows, training=True, size=size)
    val_ds = _datasets(cfg, roi.images, val_rows, training=False, size=size)
    if cfg.unit == "image":
        val_patients, val_weights = val_rows["patient_id"].to_numpy(), _area(val_rows)
    else:
        val_patients, val_weights = np.array(val_ds.patients, dtype=object), None
    pixel_aspect = 1.0
    if {"pixel_mm", "pixel_mm_col"} <= set(roi.index.columns):
        ratio = (roi.index["pixel_mm"] / roi.index["pixel_mm_col"]).median()
        pixel_aspect = float(ratio) if math.isfinite(ratio) and ratio > 0 else 1.0
    augment = SliceAugment(seed=cfg.seed, pixel_aspect=pixel_aspect) if cfg.augment else None
    module = ClassifierModule(model, unit=cfg.unit, val_patients=val_patients, val_weights=val_weights,
                              aggregate=cfg.aggregate, optimizer=cfg.optimizer, lr=cfg.lr,
                              weight_decay=cfg.weight_decay, augment=augment, seed=cfg.seed)
    data = SelectionDataModule(train_ds, val_ds, batch_size=cfg.batch_size, seed=cfg.seed,
                               num_workers=cfg.num_workers)
    ckpt_cb, last_cb = _checkpoint_callback(work / "checkpoints")
    cbs = [ckpt_cb, last_cb, EarlyStopping(monitor="val_auc", mode="max", patience=cfg.patience, check_finite=False),
           _epoch_progress(cfg.epochs)]
    show_bar = progress_enabled()
    if show_bar:
        cbs.append(RichProgressBar(leave=False))
    trainer = pl.Trainer(accelerator="auto", devices=1, deterministic=True, max_epochs=cfg.epochs,
                         callbacks=cbs + list(callbacks or []), logger=_loggers(work, mlflow, out.name),
                         enable_progress_bar=show_bar, enable_model_summary=False, num_sanity_val_steps=0,
                         log_every_n_steps=1, default_root_dir=str(work))
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
            warnings.filterwarnings("ignore", message=r".*number of training batches.*")
            warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")  # --resume
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    if trainer.interrupted:
        raise NpcaiError(f"{out}: training interrupted; continue it with `npcai train ... --out {out} --resume`")
    best = work / "checkpoints" / "best.ckpt"
    if not best.is_file():
        raise NpcaiError(f"{out}: no checkpoint was selected (validation AUC never defined); "
                         f"check the validation split's labels")
    best_epoch = load_state_from_checkpoint(model, best)
    history = pd.DataFrame(module.history, columns=["epoch", "train_loss", "val_loss", "val_auc"])
    history = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
    val_auc = float(history.loc[history["epoch"] == best_epoch, "val_auc"].iloc[0]) \
        if (history["epoch"] == best_epoch).any() else float(ckpt_cb.best_model_score or float("nan"))

    # ---- after selection: predict every patient once, test patients read only now
    slices = prep.index.sort_values("roi_row")
    slice_model = model if cfg.unit == "image" else model.slice_model
    probs = predict_rows(slice_model, roi.images, slices["roi_row"].to_numpy(), size=size)
    pred_slices = pd.DataFrame({"roi_row": slices["roi_row"].to_numpy(), "patient_id": slices["patient_id"].to_numpy(),
                                "split": slices["split"].to_numpy(), "slice_index": slices["slice_index"].to_numpy(),
                                "label": slices["label"].to_numpy(), "prob": probs})
    if cfg.unit == "image":
        agg_in = pred_slices.assign(weight=_area(slices))
        patient_prob = aggregate_patients(agg_in, cfg.aggregate)
    else:
        rows_by_patient = {p: g["roi_row"].to_numpy() for p, g in slices.groupby("patient_id", sort=True)}
        model.eval()
        from npcai.models.data import read_rows, resize_batch

        pp = {}
        with torch.inference_mode():
            for p, rows in track(rows_by_patient.items(), "Predicting patients"):
                x = resize_batch(read_rows(roi.images, rows), size).unsqueeze(0)
                pp[p] = float(torch.sigmoid(model(x))[0])
        patient_prob = pd.DataFrame({"prob": pd.Series(pp), "n_slices": pd.Series(
            {p: len(r) for p, r in rows_by_patient.items()})})
    pred_patients = pd.DataFrame({"patient_id": patient_prob.index,
                                  "split": prep.split.reindex(patient_prob.index).to_numpy(),
                                  "label": prep.labels.reindex(patient_prob.index).to_numpy(),
                                  "prob": patient_prob["prob"].to_numpy(),
                                  "n_slices": patient_prob["n_slices"].to_numpy()})
    test = pred_patients[pred_patients["split"] == "test"]
    from sklearn.metrics import roc_auc_score

    test_auc = float(roc_auc_score(test["label"], test["prob"])) if test["label"].nunique() == 2 else float("nan")

    # ---- write the run folder
    split_df = pd.DataFrame({"patient_id": prep.labels.index, "split": prep.split.reindex(prep.labels.index).to_numpy(),
                             "label": prep.labels.to_numpy()})
    counts = {}
    for name in ("train", "val", "test") + (("test_external",) if (split_df["split"] == "test_external").any()
                                            else ()):
        sub = split_df[split_df["split"] == name]
        counts[name] = {"patients": int(len(sub)), "label_0": int((sub["label"] == 0).sum()),
                        "label_1": int((sub["label"] == 1).sum()),
                        "slices": int((prep.index["split"] == name).sum())}
    summary = {
        "endpoint": cfg.endpoint, "endpoint_description": prep.endpoint.description,
        "endpoint_cutoff_months": prep.endpoint.cutoff, "where": cfg.where, "test_where": cfg.test_where,
        "splits": counts,
        "excluded": {"count": int(sum(prep.excluded.values())), "reasons": prep.excluded},
        "best_epoch": int(best_epoch), "val_auc": val_auc, "epochs_run": int(len(history)),
        "stopped_early": bool(len(history) and history["epoch"].max() + 1 < cfg.epochs),
        "test_auc": test_auc, "n_test": int(len(test)),
        "selection": "best epoch by validation-patient AUC; test patients predicted once after selection",
    }
    cohort_json = Path(cfg.cohort) / "cohort.json"
    config_doc = {
        "format": RUN_FORMAT, "kind": "train",
        "options": dataclasses.asdict(cfg),
        "resolved": {"in_chans": n_chans, "input_size": net_size, "roi_size": cache_size,
                     "pixel_aspect": pixel_aspect, "augment": repr(augment) if augment else None,
                     "device": str(trainer.strategy.root_device), "deterministic": True,
                     "torch_threads": torch.get_num_threads()},
        "seed": cfg.seed,
        "versions": package_versions(),
        "cohort": {"path": str(Path(cfg.cohort).resolve()), "cohort_json_sha256": file_sha256(cohort_json)},
        "roi": {"name": cfg.roi, "path": str(roi.root.resolve()), "input_hash": roi.input_hash,
                "variant_json_sha256": file_sha256(roi.root / "variant.json"),
                "params": {k: roi.params.get(k) for k in ("variant", "region", "slices", "sequences",
                                                          "timepoint", "mask", "size", "normalisation")
                           if k in roi.params}},
        "reproduce": f"npcai train --config {out / 'config.yaml'} --out NEW_RUN",
        "split_source": "given (one fold of a cross-validated run: reproduce the parent run)" if split is not None
        else ("reused from " + str(cfg.split_from) if cfg.split_from else "drawn from the seed"),
    }
    write_csv(work / "split.csv", split_df)
    write_csv(work / "predictions_slices.csv", pred_slices)
    write_csv(work / "predictions_patients.csv", pred_patients)
    write_csv(work / "history.csv", history)
    plot_training_curve(history, work / "training_curve.png", best_epoch=best_epoch,
                        title=f"{cfg.backbone} ({cfg.unit} unit) on {cfg.roi}: {cfg.endpoint}")
    write_json(work / "summary.json", summary)
    write_yaml(work / "config.yaml", config_doc)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return TrainResult(out, int(best_epoch), val_auc, test_auc, int(len(test)), int(len(history)), summary)
