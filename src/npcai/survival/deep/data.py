"""Targets of the deep survival model: (time, event, treatment) per patient, with the input checks.

The predictive head compares two treatments, coded ``T = 1`` for IC+CCRT and ``T = 0`` for
CCRT (:data:`npcai.survival.deep.network.TREATMENT_CODING`; any two named treatments can be
passed). :func:`survival_targets` joins a :class:`npcai.cohort.endpoints.SurvivalTarget` with
the treatment indicator into one table whose rows the trainer turns into the (B, 3) target
tensors ``[time, event, T]`` that :class:`npcai.survival.deep.task.SurvivalTask` consumes.

Bad input is one :class:`npcai.errors.NpcaiError` line each: no treatment column, a third
treatment, all patients on one treatment, no event in the training cohort.

Examples:
    >>> import pandas as pd
    >>> clin = pd.DataFrame({"treatment": ["CCRT", "IC+CCRT", "CCRT", None],
    ...                      "dfs_months": [10.0, 20.0, 30.0, 40.0], "dfs_event": [1, 0, 1, 0]},
    ...                     index=pd.Index(["P1", "P2", "P3", "P4"], name="patient_id"))
    >>> t = survival_targets(clin, "dfs")
    >>> t.table.to_dict("list")
    {'time': [10.0, 20.0, 30.0], 'event': [1, 0, 1], 'treatment': [0, 1, 0]}
    >>> t.excluded_counts()
    {'missing treatment': 1}
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from npcai.cohort.endpoints import SurvivalTarget, survival_target
from npcai.errors import NpcaiError
from npcai.survival.deep.network import TREATMENT_CODING

__all__ = ["SurvivalTargets", "treatment_indicator", "survival_targets", "check_trainable", "target_array"]

_CONTROL = next(k for k, v in TREATMENT_CODING.items() if v == 0)
_EXPERIMENTAL = next(k for k, v in TREATMENT_CODING.items() if v == 1)


def treatment_indicator(clinical: pd.DataFrame, column: str = "treatment", *,
                        control: str = _CONTROL, experimental: str = _EXPERIMENTAL) -> pd.Series:
    """Treatment T per patient: 0 = ``control`` (CCRT), 1 = ``experimental`` (IC+CCRT).

    Patients with an empty treatment cell get NaN (the caller excludes and counts them).

    Raises:
        NpcaiError: no such column; a value other than the two treatments (e.g. RT).
    """
    if column not in clinical.columns:
        raise NpcaiError(f"clinical.csv: no {column!r} column; the predictive head compares two treatments "
                         f"({control} vs {experimental}): add the column, or train the prognostic head only")
    values = clinical[column].astype("string").str.strip()
    known = values.dropna()
    other = sorted(set(known) - {control, experimental})
    if other:
        counts = ", ".join(f"{v} ({int((known == v).sum())})" for v in other)
        raise NpcaiError(f"clinical.csv: column {column!r} has more than two treatments: {counts} besides "
                         f"{control} and {experimental}; the predictive head compares exactly two: select "
                         f"the patients treated with {control} or {experimental}")
    t = values.map({control: 0.0, experimental: 1.0}).astype(float)
    t.index = clinical.index
    return t


@dataclass
class SurvivalTargets:
    """Per-patient targets of the deep survival model.

    Attributes:
        table: DataFrame indexed by patient_id: ``time`` (float), ``event`` (0/1), ``treatment`` (0/1).
        excluded: DataFrame indexed by patient_id with a ``reason`` column.
        endpoint: the :class:`SurvivalTarget` the times come from.
        control, experimental: the treatments coded 0 and 1.
    """

    table: pd.DataFrame
    excluded: pd.DataFrame
    endpoint: SurvivalTarget
    control: str = _CONTROL
    experimental: str = _EXPERIMENTAL

    def excluded_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.excluded["reason"].value_counts().items()}


def survival_targets(clinical: pd.DataFrame, endpoint: str, *, treatment_column: str = "treatment",
                     control: str = _CONTROL, experimental: str = _EXPERIMENTAL) -> SurvivalTargets:
    """(time, event, treatment) of the patients of ``clinical`` for survival endpoint ``endpoint``.

    Patients without follow-up or without a treatment are excluded and counted (reasons).
    """
    if clinical.index.name != "patient_id" and "patient_id" in clinical.columns:
        clinical = clinical.set_index("patient_id")
    target = survival_target(clinical, endpoint)
    treat = treatment_indicator(clinical, treatment_column, control=control, experimental=experimental)
    treat = treat.loc[target.time.index]
    no_treat = treat.index[treat.isna()]
    keep = treat.index[treat.notna()]
    table = pd.DataFrame({"time": target.time.loc[keep].astype(float), "event": target.event.loc[keep].astype(int),
                          "treatment": treat.loc[keep].astype(int)})
    table.index.name = "patient_id"
    excluded = pd.concat([target.excluded,
                          pd.DataFrame({"reason": f"missing {treatment_column}"},
                                       index=pd.Index(list(no_treat), name="patient_id"))])
    return SurvivalTargets(table, excluded, target, control, experimental)


def check_trainable(targets: SurvivalTargets | pd.DataFrame, what: str = "training cohort", *,
                    predictive: bool = True) -> None:
    """Fail with one line when a cohort cannot train the model.

    Args:
        targets: the targets of the cohort's patients (or their ``table``).
        what: how to name the cohort in the message (``training cohort``, ``validation cohort``).
        predictive: whether the predictive head is trained (needs both treatments).

    Raises:
        NpcaiError: no patient, no event, or (``predictive``) all patients on one treatment.
    """
    table = targets.table if isinstance(targets, SurvivalTargets) else targets
    names = (targets.control, targets.experimental) if isinstance(targets, SurvivalTargets) \
        else (_CONTROL, _EXPERIMENTAL)
    if table.empty:
        raise NpcaiError(f"{what}: no patient with follow-up and treatment; check the endpoint's time and "
                         "event columns and the treatment column")
    if int(table["event"].sum()) == 0:
        raise NpcaiError(f"{what}: none of the {len(table)} patients had an event, so the Cox partial "
                         "likelihood is undefined; choose an endpoint with events (e.g. dfs) or more patients")
    if predictive:
        arms = table["treatment"].value_counts()
        if len(arms) < 2:
            only = names[int(arms.index[0])]
            raise NpcaiError(f"{what}: all {len(table)} patients received {only}; the predictive head needs "
                             f"patients of both {names[0]} and {names[1]}, or train the prognostic head only")


def target_array(table: pd.DataFrame, patients) -> np.ndarray:
    """Rows ``[time, event, treatment]`` (float32, shape (n, 3)) of ``patients``, in their order."""
    missing = [p for p in patients if p not in table.index]
    if missing:
        raise KeyError(f"no survival target for patients {missing[:3]}")
    return table.loc[list(patients), ["time", "event", "treatment"]].to_numpy(dtype=np.float32)
