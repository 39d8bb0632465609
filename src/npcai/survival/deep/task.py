"""The deep survival *task*: what the one trainer needs to train study 004's network.

A task owns the loss, the validation selection metric, the prediction columns and the
summary; the trainer (Lightning loop, checkpoints, ``--resume``, honest data module) is
shared with the classifiers. :class:`TrainerTask` is the interface expected from the
trainer's side, written here as a :class:`typing.Protocol` so this module does not depend on
the trainer's code:

* the model's forward maps a batch of patient bags ``(B, K, C, H, W)`` to scores ``(B, 2)``
  (:class:`npcai.survival.deep.network.MultiTaskSurvivalNet`);
* the targets of a batch are ``(B, 3)`` float rows ``[time, event, T]``
  (:func:`npcai.survival.deep.data.target_array`; T = 1 IC+CCRT, 0 CCRT);
* ``loss(scores, targets)``: the negative Cox partial log-likelihood with Efron ties of the
  log-hazard ``g + (T - 1/2) f`` (risk sets over the batch's patients: use batches of
  dozens of patients, e.g. 64, and fixed-size bags of K slices; under DDP over the batch
  gathered from every process, with gradients back to each process's patients);
* ``validate(scores, targets, patients, weights) -> (val_loss, val_c_index)``: over all the
  validation patients of an epoch (items of one patient are averaged first); the C-index
  is Harrell's C of the log-hazard under the received treatment (the quantity the Cox loss
  fits, so both heads count), ``mode="max"``;
* ``predict(net, images, rows, size=) -> (slices, patients)``: one whole-patient bag at a
  time; ``patients`` has :attr:`SurvivalTask.prediction_columns` and ``n_slices``;
  ``slices`` the attention weight of every slice per encoder (``attention_<sequence>``);
* ``summarise(patients)``: the test patients' C-index with CI of the prognostic score (the
  study's headline) and of the log-hazard, from a table with ``split``, ``time``,
  ``event``, ``treatment`` and the prediction columns.

Examples:
    >>> import torch
    >>> task = SurvivalTask()
    >>> scores = torch.tensor([[0.5, 1.0], [0.0, -1.0], [-0.5, 0.0]], requires_grad=True)
    >>> targets = torch.tensor([[2.0, 1, 0], [3.0, 1, 1], [4.0, 0, 1]])
    >>> loss = task.loss(scores, targets); loss.backward()
    >>> task.monitor, scores.grad.shape
    ('val_c_index', torch.Size([3, 2]))
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from npcai.errors import NpcaiError
from npcai.models.tasks import Task, register_task
from npcai.survival.deep.losses import TIES, cox_loss
from npcai.survival.deep.network import PREDICTIVE, PROGNOSTIC, log_hazard

__all__ = ["TrainerTask", "SurvivalTask", "SurvivalLabels", "PREDICTION_COLUMNS", "OUTCOME_COLUMNS"]

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("prognostic_score", "predictive_score", "log_hazard_ccrt", "log_hazard_ic_ccrt")
#: the outcome columns a survival run's ``predictions_patients.csv`` carries besides ``label`` (= event)
OUTCOME_COLUMNS = ("time", "event", "treatment")


@dataclass
class SurvivalLabels:
    """What :meth:`SurvivalTask.labels` gives the trainer (the ``EndpointLabels`` interface).

    Attributes:
        name: the endpoint.
        labels: Series patient_id -> event (0/1): stratifies the split and is the run's ``label``.
        table: DataFrame indexed by patient_id with ``time``, ``event``, ``treatment`` (0/1).
        excluded: DataFrame indexed by patient_id with a ``reason`` column.
        description: one sentence saying what the target is.
        cutoff: always None (no time cut-off: the whole follow-up is used).
    """

    name: str
    labels: pd.Series
    table: pd.DataFrame
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["reason"]))
    description: str = ""
    cutoff: float | None = None

    def excluded_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.excluded["reason"].value_counts().items()}


@runtime_checkable
class TrainerTask(Protocol):
    """What the trainer calls on a task (the binary classifier task has the same members)."""

    name: str
    monitor: str
    mode: str
    prediction_columns: tuple[str, ...]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def validate(self, outputs: np.ndarray, targets: np.ndarray, patients: np.ndarray,
                 weights: np.ndarray | None) -> tuple[float, float]: ...

    def predict(self, net: torch.nn.Module, images, rows: pd.DataFrame, *,
                size: int | None) -> tuple[pd.DataFrame, pd.DataFrame]: ...

    def summarise(self, patients: pd.DataFrame) -> dict[str, Any]: ...


@register_task
class SurvivalTask(Task):
    """Deep Cox task of study 004 (module docstring), registered as ``survival``.

    Args:
        unit: must be ``patient`` (the network pools bags of a patient's slices).
        aggregate: unused (accepted so every task is made from the same run options).
        ties: ``efron`` (default) or ``breslow``.
        predictive: train the predictive head (needs two treatments); False fits the
            prognostic score alone (log-hazard = g(x)).
    """

    name = "survival"
    loss_label = "Cox negative partial log-likelihood (per event)"
    monitor = "val_c_index"
    mode = "max"
    prediction_columns = PREDICTION_COLUMNS
    #: under DDP the Cox loss sees the batch gathered from every process (risk sets span it)
    batch_coupled_loss = True

    def __init__(self, unit: str = "patient", aggregate: str = "mean", ties: str = "efron",
                 predictive: bool = True):
        if unit != "patient":
            raise NpcaiError(f"survival task: unit {unit!r}; the survival network scores a patient from a bag "
                             "of their slices: use the patient unit")
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
        self.unit, self.aggregate = unit, aggregate
        self.ties = ties
        self.predictive = bool(predictive)

    # ------------------------------------------------------------------ trainer hooks
    def labels(self, clinical: pd.DataFrame, endpoint: str) -> SurvivalLabels:
        """(time, event, treatment) of the patients with follow-up and treatment; fails in one
        line when the cohort cannot train the model (no event, one treatment)."""
        from npcai.survival.deep.data import check_trainable, survival_targets

        targets = survival_targets(clinical, endpoint)
        check_trainable(targets, "cohort", predictive=self.predictive)
        table = targets.table
        ep = targets.endpoint
        desc = (f"survival endpoint {ep.name}: time {ep.time_column}, event {ep.event_column}; "
                f"treatment {targets.control} (T=0) vs {targets.experimental} (T=1)")
        return SurvivalLabels(ep.name, table["event"].astype(int), table, targets.excluded, desc)

    def targets(self, endpoint: SurvivalLabels, patients) -> np.ndarray:
        """Rows ``[time, event, T]`` (float32, (n, 3)) of ``patients``."""
        from npcai.survival.deep.data import target_array

        return target_array(endpoint.table, list(patients))

    def outcome_columns(self, endpoint: SurvivalLabels, patients) -> dict[str, np.ndarray]:
        t = endpoint.table.reindex(list(patients))
        return {"time": t["time"].to_numpy(float), "event": t["event"].to_numpy(int),
                "treatment": t["treatment"].to_numpy(int)}

    def outcomes(self, clinical: pd.DataFrame, endpoint: str, patients) -> dict[str, np.ndarray]:
        """time, event, treatment of ``patients`` of a predicted cohort (NaN where unknown); {}
        when the cohort has no follow-up or treatment columns (predictions still stand)."""
        from npcai.survival.deep.data import survival_targets

        try:
            table = survival_targets(clinical, endpoint).table
        except NpcaiError as exc:
            log.warning("%s: no outcomes for evaluation", exc)
            return {}
        t = table.reindex(list(patients))
        return {"time": t["time"].to_numpy(float), "event": t["event"].to_numpy(float),
                "treatment": t["treatment"].to_numpy(float)}

    def network(self, options: dict[str, Any], in_chans: int, *, pretrained: bool,
                weights: str | None) -> torch.nn.Module:
        """One backbone per input channel (sequence), or one over all channels with the
        ``stacked`` option; attention MIL, shared trunk, two heads."""
        from npcai.survival.deep.network import create_survival_network

        return create_survival_network(options["backbone"], sequences=[f"ch{i}" for i in range(in_chans)],
                                       stacked=bool(options.get("stacked", False)), pretrained=pretrained,
                                       weights=weights, dropout=float(options["dropout"]))

    def log_hazard(self, scores: torch.Tensor, treatment: torch.Tensor) -> torch.Tensor:
        """The fitted log-hazard: ``g + (T - 1/2) f``, or ``g`` without the predictive head."""
        return log_hazard(scores, treatment) if self.predictive else scores[:, PROGNOSTIC]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative Cox partial log-likelihood (mean over the batch's events) of scores (B, 2)."""
        if targets.ndim != 2 or targets.shape[1] != 3:
            raise ValueError(f"targets must be (B, 3) [time, event, treatment], got {tuple(targets.shape)}")
        return cox_loss(self.log_hazard(outputs, targets[:, 2]), targets[:, 0], targets[:, 1].round(),
                        ties=self.ties)

    def validate(self, outputs, targets, patients, weights=None) -> tuple[float, float]:
        """(Cox loss over all validation patients, their Harrell's C of the log-hazard)."""
        from npcai.stats.concordance import harrell_c

        scores = pd.DataFrame(np.asarray(outputs, dtype=np.float64), columns=["g", "f"])
        scores["patient_id"] = np.asarray(patients)
        tgt = pd.DataFrame(np.asarray(targets, dtype=np.float64), columns=["time", "event", "treatment"])
        tgt["patient_id"] = np.asarray(patients)
        s = scores.groupby("patient_id", sort=True)[["g", "f"]].mean()
        t = tgt.groupby("patient_id", sort=True)[["time", "event", "treatment"]].first().loc[s.index]
        lh = self.log_hazard(torch.from_numpy(s.to_numpy()), torch.from_numpy(t["treatment"].to_numpy()))
        time, event = t["time"].to_numpy(), t["event"].round().astype(int).to_numpy()
        if event.sum() == 0:
            log.warning("validation: none of the %d patients had an event; the C-index is undefined", len(t))
            return float("nan"), float("nan")
        val_loss = float(cox_loss(lh, torch.from_numpy(time), torch.from_numpy(event), ties=self.ties))
        return val_loss, float(harrell_c(time, event, lh.numpy()).c_index)

    def predict(self, net: torch.nn.Module, images, rows: pd.DataFrame, *,
                size: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Whole-patient bags -> (slices with attention weights, patients with the four scores)."""
        from npcai.models.data import read_rows, resize_batch
        from npcai.progress import track

        net.eval()
        rows = rows.sort_values("roi_row")
        slice_parts, out = [], {}
        with torch.inference_mode():
            groups = list(rows.groupby("patient_id", sort=True))
            for pid, g in track(groups, "Predicting patients"):
                roi_rows = g["roi_row"].to_numpy()
                x = resize_batch(read_rows(images, roi_rows), size).unsqueeze(0)
                s = net(x)[0].float()
                out[pid] = {"prognostic_score": float(s[PROGNOSTIC]), "predictive_score": float(s[PREDICTIVE]),
                            "log_hazard_ccrt": float(s[PROGNOSTIC] - 0.5 * s[PREDICTIVE]),
                            "log_hazard_ic_ccrt": float(s[PROGNOSTIC] + 0.5 * s[PREDICTIVE]),
                            "n_slices": len(roi_rows)}
                part = pd.DataFrame({"roi_row": roi_rows, "patient_id": pid,
                                     "slice_index": g["slice_index"].to_numpy()})
                attention = net.attention() if hasattr(net, "attention") else {}
                for name, w in attention.items():
                    if w is not None:
                        part[f"attention_{name}"] = w[0].numpy()
                slice_parts.append(part)
        patients = pd.DataFrame.from_dict(out, orient="index")
        patients.index.name = "patient_id"
        slices = pd.concat(slice_parts, ignore_index=True) if slice_parts else \
            pd.DataFrame(columns=["roi_row", "patient_id", "slice_index"])
        return slices, patients

    def summarise(self, patients: pd.DataFrame) -> dict[str, Any]:
        """Test patients' C-index (95% CI) of the prognostic score and of the log-hazard."""
        from npcai.stats.concordance import harrell_c

        test = patients[patients["split"] == "test"]
        out: dict[str, Any] = {"n_test": int(len(test)),
                               "n_test_events": int(test["event"].sum()) if len(test) else 0}
        if out["n_test_events"] == 0:
            out["test_c_index"] = {"unavailable": "no event among the test patients"}
            return out
        t, e = test["time"].to_numpy(float), test["event"].to_numpy(int)
        prog = harrell_c(t, e, test["prognostic_score"].to_numpy(float))
        received = np.where(test["treatment"].to_numpy(int) == 1, test["log_hazard_ic_ccrt"], test["log_hazard_ccrt"])
        lh = harrell_c(t, e, received.astype(float) if self.predictive else test["prognostic_score"].to_numpy(float))
        out["test_c_index"] = {"c_index": prog.c_index, "low": prog.low, "high": prog.high, "se": prog.se,
                               "score": "prognostic_score"}
        out["test_c_index_log_hazard"] = {"c_index": lh.c_index, "low": lh.low, "high": lh.high, "se": lh.se,
                                          "score": "log-hazard under the received treatment"}
        return out
