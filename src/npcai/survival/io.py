"""The table a survival analysis runs on: a cohort's clinical columns, optionally joined to a run's
patient predictions, and the time/event columns of a named endpoint.

* ``load_table(cohort, run=None, score_name="prob")``: ``COHORT/clinical.csv`` (through
  :meth:`npcai.cohort.model.Cohort.clinical`), or a CSV file with a ``patient_id`` column;
  with ``run``, the run's ``predictions_patients.csv`` is joined on ``patient_id`` (inner
  join), adding its ``prob`` column (renamed ``score_name``) and ``split`` (renamed
  ``run_split`` when the table already has a ``split`` column), so a model's score is just
  another covariate.
* ``scan_facts(cohort)``: one row per patient of the facts of its reference scan (the
  pre-treatment scan with a manual contour, sequences in the order T1c, T1, T2, CT; else its
  first pre-treatment scan) that subgroup analyses use, from ``cohort.json``
  (:class:`npcai.cohort.model.Cohort`): ``centre``, ``manufacturer``, ``scanner_model``,
  ``field_strength_t`` (tesla), ``slice_thickness_mm``, ``tumour_volume_ml`` and
  ``nodes_volume_ml`` (of the manual contour). ``load_table`` of a cohort folder joins the
  ones the clinical table lacks (a column no patient has a value for is left out), so
  ``npcai survival subgroups COHORT --factors sex,age,tumour_volume_ml,centre,
  field_strength_t,manufacturer`` is one command. Cohorts ingested before scanner facts were
  recorded lack ``manufacturer``/``scanner_model``/``field_strength_t``: re-ingest.
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

__all__ = ["load_table", "scan_facts", "endpoint_columns", "SURVIVAL_ENDPOINTS", "SCAN_FACTS"]

#: the per-patient scan facts :func:`scan_facts` gives, in order
SCAN_FACTS = ("centre", "manufacturer", "scanner_model", "field_strength_t", "slice_thickness_mm",
              "tumour_volume_ml", "nodes_volume_ml")
_SEQUENCE_ORDER = ("T1c", "T1", "T2", "CT")

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


def _reference_scan(patient):
    pre = [s for s in patient.scans if s.timepoint == "pre"] or list(patient.scans)
    if not pre:
        return None
    rank = {q: i for i, q in enumerate(_SEQUENCE_ORDER)}
    return sorted(pre, key=lambda s: (s.mask is None, rank.get(s.sequence, len(rank))))[0]


def scan_facts(cohort) -> pd.DataFrame:
    """Per-patient scan facts (:data:`SCAN_FACTS`) of a :class:`~npcai.cohort.model.Cohort`, indexed by
    ``patient_id``; missing facts are NaN."""
    rows = {}
    for p in cohort.patients:
        s = _reference_scan(p)
        scanner = (s.source.get("scanner") or {}) if s is not None else {}
        stats = (s.mask_stats or {}) if s is not None and s.mask else {}
        rows[p.patient_id] = {
            "centre": p.centre, "manufacturer": scanner.get("manufacturer"), "scanner_model": scanner.get("model"),
            "field_strength_t": scanner.get("field_strength_t"),
            "slice_thickness_mm": float(s.spacing[2]) if s is not None and len(s.spacing) > 2 else None,
            "tumour_volume_ml": stats.get("volume_tumour_ml"), "nodes_volume_ml": stats.get("volume_nodes_ml")}
    facts = pd.DataFrame.from_dict(rows, orient="index", columns=list(SCAN_FACTS))
    facts.index.name = "patient_id"
    for c in ("field_strength_t", "slice_thickness_mm", "tumour_volume_ml", "nodes_volume_ml"):
        facts[c] = pd.to_numeric(facts[c], errors="coerce")
    return facts


def load_table(source: str | Path, run: str | Path | None = None, *, score_name: str = "prob") -> pd.DataFrame:
    """Clinical table of a cohort folder (with its scan facts, :func:`scan_facts`) or of a CSV with
    ``patient_id``, optionally joined to a run."""
    source = Path(source)
    if source.is_dir():
        from npcai.cohort.model import Cohort

        cohort = Cohort.load(source)
        table = cohort.clinical()
        facts = scan_facts(cohort)
        new = [c for c in facts.columns if c not in table.columns and facts[c].notna().any()]
        table = table.join(facts[new], how="left")
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
