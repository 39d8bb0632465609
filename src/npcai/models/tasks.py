"""Training tasks: what a trainer needs to know about *what* is learnt.

The Lightning loop (:class:`npcai.models.lightning_module.TaskModule`), checkpointing,
``--resume``, the partial-folder rename and the honest selection data module are the same
for every task; a task owns only

- ``loss(outputs, targets)``: the training loss of a batch,
- ``validate(outputs, targets, patients, weights) -> (val_loss, score)``: the validation
  patients' selection metric (computed with :mod:`npcai.stats`), logged as ``monitor``
  (``mode`` says whether higher is better),
- ``predict(net, images, rows, size=)``: slice and patient predictions with the task's
  ``prediction_columns`` (this is the one prediction loop: training and
  :func:`npcai.runs.predict_patients` both call it),
- ``summarise(patients)``: the run summary's headline numbers on the test patients.

:class:`BinaryTask` (a 0/1 endpoint, sigmoid output, cross-entropy, validation-patient AUC)
is today's classification. A survival task (deep Cox) implements the same five members with
(time, event) targets and Harrell's C as ``monitor``.

Examples:
    >>> task = BinaryTask(unit="image", aggregate="mean")
    >>> task.monitor, task.mode, task.prediction_columns
    ('val_auc', 'max', ('prob',))
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

__all__ = ["Task", "BinaryTask", "AGGREGATES", "UNITS", "TASKS", "aggregate_patients", "predict_rows",
           "predict_bags", "make_task", "register_task"]

AGGREGATES = ("mean", "max", "area-weighted")
UNITS = ("image", "patient")


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


def predict_bags(model: torch.nn.Module, images, rows_by_patient: dict[str, np.ndarray], *,
                 size: int | None) -> pd.Series:
    """Patient probabilities of a MIL model, one whole-patient bag at a time."""
    from npcai.models.data import read_rows, resize_batch
    from npcai.progress import track

    model.eval()
    out = {}
    with torch.inference_mode():
        for p, rows in track(rows_by_patient.items(), "Predicting patients"):
            x = resize_batch(read_rows(images, rows), size).unsqueeze(0)
            out[p] = float(torch.sigmoid(model(x))[0])
    return pd.Series(out, name="prob", dtype=float)


def _slice_area(rows: pd.DataFrame) -> np.ndarray:
    for col in ("tumour_area_px", "mask_area_px"):
        if col in rows.columns:
            return rows[col].fillna(0).to_numpy(dtype=float)
    return np.ones(len(rows))


class Task(ABC):
    """What is learnt: loss, selection metric, prediction columns, summary (module docstring)."""

    name: str = "task"
    monitor: str = "val_score"
    mode: str = "max"
    prediction_columns: tuple[str, ...] = ()
    #: the loss of an item depends on the other items of its batch (e.g. Cox risk sets): under
    #: DDP the loss is then computed on the batch gathered from every process
    #: (:mod:`npcai.models.lightning_module`), not on each process's share
    batch_coupled_loss: bool = False

    def labels(self, clinical: pd.DataFrame, endpoint: str):
        """The per-patient targets of ``endpoint`` (an ``EndpointLabels``: ``.labels`` also
        stratify the split, ``.excluded`` counts who has none and why)."""
        from npcai.cohort.endpoints import endpoint_labels

        return endpoint_labels(clinical, endpoint)

    def targets(self, endpoint, patients) -> np.ndarray:
        """The training targets of ``patients`` (in their order) from :meth:`labels`' result:
        1-D (n,) for a 0/1 label; a task with richer targets returns (n, k) rows."""
        return endpoint.labels.reindex(list(patients)).to_numpy(dtype=np.float32)

    def outcome_columns(self, endpoint, patients) -> dict[str, np.ndarray]:
        """Extra per-patient columns of ``predictions_patients.csv`` (besides split, label and
        :attr:`prediction_columns`) that :meth:`summarise` needs, e.g. time and event."""
        return {}

    def outcomes(self, clinical: pd.DataFrame, endpoint: str, patients) -> dict[str, np.ndarray]:
        """The :meth:`outcome_columns` of ``patients`` of any cohort (e.g. one predicted after
        training), without the training checks; {} when the cohort lacks them."""
        return {}

    def network(self, options: dict[str, Any], in_chans: int, *, pretrained: bool,
                weights: str | None) -> torch.nn.Module | None:
        """The task's own network for a run's options, or None for the classifiers'."""
        return None

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of one batch."""

    @abstractmethod
    def validate(self, outputs: np.ndarray, targets: np.ndarray, patients: np.ndarray,
                 weights: np.ndarray | None) -> tuple[float, float]:
        """(validation loss, selection score) over the validation items of one epoch."""

    @abstractmethod
    def predict(self, net: torch.nn.Module, images, rows: pd.DataFrame, *,
                size: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(slices, patients): slices keyed by roi_row/patient_id/slice_index, patients indexed by
        patient_id, both with :attr:`prediction_columns` (patients also ``n_slices``)."""

    @abstractmethod
    def summarise(self, patients: pd.DataFrame) -> dict[str, Any]:
        """Headline numbers of predictions (columns split, label + prediction columns)."""


class BinaryTask(Task):
    """Binary endpoint (label 0/1): BCE on logits, the validation *patients'* AUC selects.

    Args:
        unit: ``image`` (slices carry the patient's label; patient probability aggregated) or
            ``patient`` (one output per bag of slices).
        aggregate: slice -> patient aggregation for the image unit (:data:`AGGREGATES`).
    """

    name = "binary"
    monitor = "val_auc"
    mode = "max"
    prediction_columns = ("prob",)

    def __init__(self, unit: str = "image", aggregate: str = "mean"):
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}")
        self.unit, self.aggregate = unit, aggregate

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs, targets)

    def validate(self, outputs, targets, patients, weights) -> tuple[float, float]:
        from npcai.stats.auc import roc_auc

        val_loss = float(F.binary_cross_entropy_with_logits(torch.from_numpy(outputs), torch.from_numpy(targets)))
        prob = 1 / (1 + np.exp(-outputs.astype(np.float64)))
        if self.unit == "image":
            slices = pd.DataFrame({"patient_id": patients, "prob": prob, "label": targets})
            if self.aggregate == "area-weighted":
                slices["weight"] = weights
            agg = aggregate_patients(slices, self.aggregate)
            y = slices.groupby("patient_id")["label"].first().loc[agg.index].to_numpy()
            p = agg["prob"].to_numpy()
        else:
            y, p = targets, prob
        auc = roc_auc(y, p) if len(np.unique(y)) == 2 else float("nan")
        return val_loss, float(auc)

    def predict(self, net, images, rows, *, size):
        rows = rows.sort_values("roi_row")
        roi_rows = rows["roi_row"].to_numpy()
        slice_model = net if self.unit == "image" else net.slice_model
        slices = pd.DataFrame({"roi_row": roi_rows, "patient_id": rows["patient_id"].to_numpy(),
                               "slice_index": rows["slice_index"].to_numpy(),
                               "prob": predict_rows(slice_model, images, roi_rows, size=size)})
        if self.unit == "image":
            patients = aggregate_patients(slices.assign(weight=_slice_area(rows)), self.aggregate)
        else:
            by_patient = {p: g["roi_row"].to_numpy() for p, g in rows.groupby("patient_id", sort=True)}
            patients = pd.DataFrame({"prob": predict_bags(net, images, by_patient, size=size),
                                     "n_slices": pd.Series({p: len(r) for p, r in by_patient.items()})})
        patients.index.name = "patient_id"
        return slices, patients

    def summarise(self, patients: pd.DataFrame) -> dict[str, Any]:
        from npcai.stats.auc import roc_auc

        test = patients[patients["split"] == "test"]
        y = test["label"].to_numpy()
        auc = roc_auc(y, test["prob"].to_numpy()) if len(np.unique(y)) == 2 else float("nan")
        return {"test_auc": float(auc), "n_test": int(len(test))}


TASKS: dict[str, type[Task]] = {"binary": BinaryTask}
#: tasks defined outside this module, imported (and so registered) on first use
_TASK_MODULES = {"survival": "npcai.survival.deep.task"}


def register_task(cls: type[Task]) -> type[Task]:
    """Make a task class known by its ``name`` (runs record it; prediction rebuilds it)."""
    TASKS[cls.name] = cls
    return cls


def make_task(options: dict[str, Any] | Any, name: str | None = None) -> Task:
    """The task ``name`` (default: the options' ``task``, else binary) for a run's training
    options (a ``TrainConfig`` or its dict)."""
    import importlib

    from npcai.errors import NpcaiError

    get = options.get if isinstance(options, dict) else lambda k, d=None: getattr(options, k, d)
    name = name or get("task", None) or "binary"
    if name not in TASKS and name in _TASK_MODULES:
        importlib.import_module(_TASK_MODULES[name])
    if name not in TASKS:
        raise NpcaiError(f"task {name!r} is not known here (known: {', '.join(sorted(set(TASKS) | set(_TASK_MODULES)))})")
    return TASKS[name](unit=get("unit", "image") or "image", aggregate=get("aggregate", "mean") or "mean")
