"""Study 004's treatment recommendation by the predicted DFS difference (seed 004, section 3.4).

For each patient the CPTDN (a Cox nomogram with a treatment x Predictive-score interaction)
predicts the 5-year DFS under IC+CCRT and under CCRT; the *difference* (IC+CCRT minus CCRT,
in percentage points) recommends IC+CCRT ("ICT-preferred") when it exceeds a threshold
(the seed uses 0 %, 2 % and 5 %), else CCRT ("CCRT-preferred"). The seed then shows, inside
each preferred group, the Kaplan–Meier curves of the treatments the patients actually
received, with the hazard ratio (IC+CCRT vs CCRT) and the log-rank p (Fig. 5, D4, D5): a
useful recommendation shows HR < 1 in the ICT-preferred group and HR > 1 in the
CCRT-preferred group.

* :func:`dfs_under_each_treatment` -- S(horizon) of every patient under both treatments from
  a nomogram (:class:`npcai.survival.Nomogram`, the web tool's JSON form) or a fitted
  :class:`npcai.survival.CoxPH`;
* :func:`recommend_by_difference` -- the rule at one threshold (the one place it is written);
* :func:`preferred_group_survival` -- KM, HR (95% CI) and log-rank p of the received
  treatments inside each preferred group.

Examples:
    >>> import pandas as pd
    >>> d = pd.DataFrame({"dfs_ccrt": [0.63, 0.80, 0.70], "dfs_ic_ccrt": [0.81, 0.79, 0.73]},
    ...                  index=["P1", "P2", "P3"])
    >>> recommend_by_difference(d, threshold=2).tolist()
    ['IC+CCRT', 'CCRT', 'IC+CCRT']
    >>> recommend_by_difference(d, threshold=5).tolist()
    ['IC+CCRT', 'CCRT', 'CCRT']
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["CONTROL", "EXPERIMENTAL", "check_threshold", "dfs_under_each_treatment", "recommend_by_difference",
           "preferred_group_survival", "PreferredGroups", "PREFERRED_LABELS", "recommend_patient"]

log = logging.getLogger(__name__)

CONTROL, EXPERIMENTAL = "CCRT", "IC+CCRT"
#: how the seed names the groups a recommendation makes
PREFERRED_LABELS = {EXPERIMENTAL: "ICT-preferred", CONTROL: "CCRT-preferred"}


def check_threshold(threshold: float) -> float:
    """A DFS-difference threshold in percentage points, 0 to 100 (else one clear error)."""
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise NpcaiError(f"DFS-difference threshold {threshold!r} is not a number; give percentage points "
                         "between 0 and 100, e.g. 0, 2 or 5") from exc
    if not np.isfinite(t) or not 0 <= t <= 100:
        raise NpcaiError(f"DFS-difference threshold {threshold!r}: must be between 0 and 100 percentage points "
                         "(e.g. 0, 2 or 5 as in seed 004)")
    return t


def dfs_under_each_treatment(model, patients: pd.DataFrame, *, horizon: float = 60.0,
                             treatment: str = "treatment") -> pd.DataFrame:
    """Predicted S(``horizon``) of every patient under CCRT and under IC+CCRT.

    Args:
        model: a :class:`~npcai.survival.nomogram.Nomogram` (fitted or read from JSON, with
            ``horizon`` among its times) or a fitted :class:`~npcai.survival.cox.CoxPH` whose
            terms include ``treatment``.
        patients: one row per patient (index = patient id) with the model's covariates; the
            treatment column, if any, is ignored (both treatments are predicted).
        horizon: the time of the DFS rate (months; 60 = 5-year DFS).

    Returns:
        DataFrame (patients' index): ``dfs_ccrt``, ``dfs_ic_ccrt``, ``difference`` (percentage
        points, IC+CCRT minus CCRT).
    """
    from npcai.survival.cox import CoxPH
    from npcai.survival.nomogram import Nomogram

    out = {}
    for name, level in (("dfs_ccrt", CONTROL), ("dfs_ic_ccrt", EXPERIMENTAL)):
        d = patients.copy()
        d[treatment] = level
        if isinstance(model, CoxPH):
            if treatment not in [v for t in model.design_.terms for v in t.split(":")]:
                raise NpcaiError(f"DFS difference: the Cox model has no {treatment!r} term, so it predicts the same "
                                 "DFS under both treatments; fit it with the treatment")
            out[name] = model.predict_survival(d, [horizon]).iloc[:, 0].to_numpy()
        elif isinstance(model, Nomogram):
            if float(horizon) not in model.times:
                raise NpcaiError(f"DFS difference: the nomogram predicts survival at {model.times} months, not at "
                                 f"{horizon:g}; rebuild it with that time")
            conds = {next(iter(a.condition)) for a in model.axes_ if a.condition}
            if treatment not in conds and not any(a.variable == treatment for a in model.axes_):
                raise NpcaiError(f"DFS difference: the nomogram has no {treatment!r} axis, so it predicts the same "
                                 "DFS under both treatments")
            out[name] = np.array([model.points(_plain_row(r)).survival[float(horizon)] for _, r in d.iterrows()])
        else:
            raise NpcaiError(f"DFS difference: {type(model).__name__} is not a Nomogram or CoxPH")
    res = pd.DataFrame(out, index=patients.index)
    res["difference"] = 100.0 * (res["dfs_ic_ccrt"] - res["dfs_ccrt"])
    return res


def _plain_row(row: pd.Series) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def recommend_by_difference(dfs: pd.DataFrame, threshold: float = 0.0) -> pd.Series:
    """IC+CCRT when the DFS difference exceeds ``threshold`` percentage points, else CCRT.

    Args:
        dfs: :func:`dfs_under_each_treatment`'s table (``difference`` in percentage points, or
            ``dfs_ccrt`` and ``dfs_ic_ccrt`` as fractions).
        threshold: 0-100 percentage points (seed 004: 0, 2, 5). A difference equal to the
            threshold recommends CCRT (the seed: "difference > threshold").
    """
    t = check_threshold(threshold)
    diff = dfs["difference"] if "difference" in dfs else 100.0 * (dfs["dfs_ic_ccrt"] - dfs["dfs_ccrt"])
    if diff.isna().any():
        raise NpcaiError(f"DFS difference: missing for {int(diff.isna().sum())} patient(s) (e.g. "
                         f"{diff.index[diff.isna()][0]}); every patient needs both predictions")
    return pd.Series(np.where(diff.to_numpy() > t + 1e-12, EXPERIMENTAL, CONTROL), index=dfs.index,
                     name=f"recommended_{t:g}")


@dataclass
class PreferredGroups:
    """Received treatments compared inside each preferred group of one cohort and threshold.

    Attributes:
        threshold: percentage points.
        comparisons: group label ("ICT-preferred", "CCRT-preferred") -> GroupComparison or None
            (when the group lacks a treatment or events).
        table: one row per group: group, n, n_ccrt, n_ic_ccrt, events, hr (IC+CCRT vs CCRT),
            hr_low, hr_high, p_logrank, note.
    """

    threshold: float
    comparisons: dict = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def preferred_group_survival(data: pd.DataFrame, recommended: pd.Series, *, time: str, event: str,
                             treatment: str = "treatment", threshold: float = 0.0,
                             at: Sequence[float] = ()) -> PreferredGroups:
    """KM of the received treatments inside each preferred group, HR (IC+CCRT vs CCRT) and log-rank p.

    Args:
        data: patients (index = id) with ``time``, ``event`` and the received ``treatment``.
        recommended: the recommendation per patient (:func:`recommend_by_difference`).
    """
    from npcai.survival.groups import compare_groups

    rows, comps = [], {}
    rec = recommended.reindex(data.index)
    for level, label in PREFERRED_LABELS.items():
        sub = data[rec == level]
        row: dict = {"group": label, "n": len(sub), "n_ccrt": int((sub[treatment] == CONTROL).sum()),
                     "n_ic_ccrt": int((sub[treatment] == EXPERIMENTAL).sum()), "events": int(sub[event].sum()),
                     "hr": np.nan, "hr_low": np.nan, "hr_high": np.nan, "p_logrank": np.nan, "note": ""}
        comps[label] = None
        if row["n_ccrt"] < 2 or row["n_ic_ccrt"] < 2:
            row["note"] = "fewer than 2 patients received one of the treatments"
        elif row["events"] == 0:
            row["note"] = "no events"
        else:
            try:
                cmp = compare_groups(sub, time, event, treatment, at=at, reference=CONTROL)
            except NpcaiError as exc:
                row["note"] = str(exc)
            else:
                comps[label] = cmp
                hr = cmp.hazard_ratios.iloc[0]
                row.update(hr=float(hr.hr), hr_low=float(hr.hr_low), hr_high=float(hr.hr_high),
                           p_logrank=float(cmp.logrank.p_value))
        rows.append(row)
    return PreferredGroups(threshold=float(threshold), comparisons=comps, table=pd.DataFrame(rows))


def recommend_patient(nomogram, patient: Mapping, *, threshold: float = 0.0, horizon: float = 60.0,
                      treatment: str = "treatment") -> dict:
    """One patient's both DFS rates, difference and recommendation from a nomogram (web tool)."""
    d = dfs_under_each_treatment(nomogram, pd.DataFrame([dict(patient)], index=["patient"]), horizon=horizon,
                                 treatment=treatment)
    rec = recommend_by_difference(d, threshold).iloc[0]
    r = d.iloc[0]
    return {"dfs_ccrt": float(r.dfs_ccrt), "dfs_ic_ccrt": float(r.dfs_ic_ccrt), "difference": float(r.difference),
            "threshold": float(threshold), "horizon": float(horizon), "recommended": rec,
            "group": PREFERRED_LABELS[rec]}

