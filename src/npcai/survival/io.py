"""The table a survival analysis runs on: a cohort's clinical columns, optionally joined to a run's
patient predictions, and the time/event columns of a named endpoint.

* ``load_table(cohort, run=None, score_name="prob")``: ``COHORT/clinical.csv`` (through
  :meth:`npcai.cohort.model.Cohort.clinical`), or a CSV file with a ``patient_id`` column;
  with ``run``, the run's ``predictions_patients.csv`` is joined on ``patient_id`` (inner
  join), adding its ``prob`` column (renamed ``score_name``) and ``split`` (renamed
  ``run_split`` when the table already has a ``split`` column), so a model's score is just
  another covariate.
* ``endpoint_columns(endpoint, time, event)``: ``dfs``/``pfs``/``os``/``dmfs`` ->
  ``<name>_months``/``<name>_event`` (the phantom's and the clinical schema's names;
  ``pfs-median`` and ``distant-metastasis`` give the survival columns of
  :data:`npcai.cohort.endpoints.NAMED_ENDPOINTS`), or explicit columns.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from npcai.cohort.endpoints import NAMED_ENDPOINTS
from npcai.cohort.endpoints import SURVIVAL_ENDPOINTS as _SURVIVAL
from npcai.errors import NpcaiError

__all__ = ["load_table", "endpoint_columns", "SURVIVAL_ENDPOINTS"]

#: endpoint name -> (time column, event column): the survival endpoints of
#: :mod:`npcai.cohort.endpoints` plus the binary endpoints that have a time/event pair
SURVIVAL_ENDPOINTS = {**_SURVIVAL, **{k: (v[1], v[2]) for k, v in NAMED_ENDPOINTS.items() if v[1] is not None}}


def endpoint_columns(endpoint: str | None, time: str | None, event: str | None) -> tuple[str, str]:
    """(time column, event column) from an endpoint name or explicit columns (not both)."""
    if endpoint and (time or event):
        raise NpcaiError("give either an endpoint (e.g. dfs) or time and event columns, not both")
    if endpoint:
        if endpoint not in SURVIVAL_ENDPOINTS:
            raise NpcaiError(f"endpoint {endpoint!r} is not one of {', '.join(SURVIVAL_ENDPOINTS)}; or give the "
                             "time and event columns")
        return SURVIVAL_ENDPOINTS[endpoint]
    if not (time and event):
        raise NpcaiError("no survival outcome: give an endpoint (dfs, pfs, os, dmfs) or both time and event "
                         "columns (e.g. dfs_months and dfs_event)")
    return time, event


def load_table(source: str | Path, run: str | Path | None = None, *, score_name: str = "prob") -> pd.DataFrame:
    """Clinical table of a cohort folder (or a CSV with ``patient_id``), optionally joined to a run."""
    source = Path(source)
    if source.is_dir():
        from npcai.cohort.model import Cohort

        table = Cohort.load(source).clinical()
    elif source.is_file() and source.suffix.lower() == ".csv":
        table = pd.read_csv(source, dtype={"patient_id": str})
        if "patient_id" not in table.columns:
            raise NpcaiError(f"{source}: no patient_id column; give a cohort folder or a CSV with patient_id")
        table = table.set_index("patient_id")
    else:
        raise NpcaiError(f"{source}: not a cohort folder or a .csv file")
    if run is None:
        return table
    from npcai.runs import read_predictions

    pred = read_predictions(run).patients.set_index("patient_id")
    if score_name in table.columns:
        raise NpcaiError(f"the table already has a column {score_name!r}; choose another score name")
    cols = {"prob": score_name}
    if "split" in pred.columns:
        cols["split"] = "run_split" if "split" in table.columns else "split"
    joined = table.join(pred[list(cols)].rename(columns=cols), how="inner")
    if joined.empty:
        raise NpcaiError(f"run {run}: none of its patients are in {source}; was the run trained on this cohort?")
    return joined
