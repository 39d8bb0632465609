"""Binary endpoints from the clinical table: which patients are labelled 1/0, and who is excluded.

``pfs-median`` is the high/low-risk split at the median progression-free survival of
studies 000 and 001, with censoring handled honestly: a patient censored at or before the
cut-off has no known label and is excluded (and counted). ``distant-metastasis`` and
``residual-tumour`` are the 0/1 outcome columns of studies 003 and 002; any other 0/1
clinical column also works.

Examples:
    >>> import pandas as pd
    >>> clin = pd.DataFrame({"pfs_months": [10, 20, 30, 40], "pfs_event": [1, 0, 1, 0]},
    ...                     index=pd.Index(["P1", "P2", "P3", "P4"], name="patient_id"))
    >>> ep = endpoint_labels(clin, "pfs-median")
    >>> ep.labels.to_dict()
    {'P1': 1, 'P3': 0, 'P4': 0}
    >>> ep.excluded["reason"].iloc[0]
    'censored before median PFS'
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["EndpointLabels", "endpoint_labels", "filter_patients", "NAMED_ENDPOINTS"]

#: named endpoints -> (label column or None, survival time column, survival event column)
NAMED_ENDPOINTS = {
    "pfs-median": (None, "pfs_months", "pfs_event"),
    "distant-metastasis": ("distant_metastasis", "dmfs_months", "dmfs_event"),
    "residual-tumour": ("residual_tumour", None, None),
}


@dataclass
class EndpointLabels:
    """Binary labels of one endpoint.

    Attributes:
        name: the endpoint's name.
        labels: Series patient_id -> 0/1 (int), unlabelled patients dropped.
        excluded: DataFrame indexed by patient_id with a ``reason`` column.
        survival: DataFrame (time, event) for the labelled patients, or None.
        description: one sentence saying how the label was derived.
        cutoff: the time cut-off (months) for survival-derived labels, else None.
    """

    name: str
    labels: pd.Series
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["reason"]))
    survival: pd.DataFrame | None = None
    description: str = ""
    cutoff: float | None = None

    def excluded_counts(self) -> dict[str, int]:
        """Reasons -> number of patients, e.g. {"censored before median PFS": 7}."""
        return {str(k): int(v) for k, v in self.excluded["reason"].value_counts().items()}


def _require(clinical: pd.DataFrame, columns: list[str], endpoint: str) -> None:
    missing = [c for c in columns if c not in clinical.columns]
    if missing:
        raise NpcaiError(f"clinical.csv: column {missing[0]!r} missing (needed by endpoint {endpoint!r}); "
                         f"add it to the clinical table and re-run `npcai ingest`, or choose another "
                         f"endpoint")


def _excluded(ids, reason: str) -> pd.DataFrame:
    return pd.DataFrame({"reason": reason}, index=pd.Index(list(ids), name="patient_id"))


def filter_patients(clinical: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """Rows of ``clinical`` satisfying a patient filter (e.g. ``treatment == "CCRT"``).

    The filter is parsed with :mod:`npcai.cohort.filters` (a small grammar, never code).
    A refused filter, an unknown column or a filter matching nobody raises
    :class:`NpcaiError` naming the problem.
    """
    if not where:
        return clinical
    from npcai.cohort.filters import filter_mask

    out = clinical[filter_mask(clinical, where)]
    if out.empty:
        raise NpcaiError(f"patient filter {where!r}: no patient matches; check the values in clinical.csv")
    return out


def _binary(col: pd.Series, column: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce")
    bad = col.index[col.notna() & (values.isna() | ~values.isin([0, 1]))]
    if len(bad):
        raise NpcaiError(f"clinical.csv: column {column!r} has value {str(col.loc[bad[0]])!r} for patient "
                         f"{bad[0]}; a binary endpoint must be 0 or 1")
    return values


def endpoint_labels(clinical: pd.DataFrame, name: str) -> EndpointLabels:
    """Binary labels of endpoint ``name`` for the patients of ``clinical`` (indexed by patient_id).

    Args:
        clinical: the clinical table (``Cohort.clinical()``, possibly filtered).
        name: ``pfs-median``, ``distant-metastasis``, ``residual-tumour`` or any 0/1 column.

    Returns:
        :class:`EndpointLabels`; patients without a label are in ``.excluded`` with the reason.
    """
    if clinical.index.name != "patient_id" and "patient_id" in clinical.columns:
        clinical = clinical.set_index("patient_id")
    if name == "pfs-median":
        _require(clinical, ["pfs_months", "pfs_event"], name)
        t = pd.to_numeric(clinical["pfs_months"], errors="coerce")
        e = _binary(clinical["pfs_event"], "pfs_event")
        missing = t.isna() | e.isna()
        t_ok, e_ok = t[~missing], e[~missing].astype(int)
        if len(t_ok) < 2:
            raise NpcaiError(f"clinical.csv: only {len(t_ok)} patients have pfs_months and pfs_event; "
                             f"endpoint 'pfs-median' needs more")
        cutoff = float(np.median(t_ok.to_numpy()))
        high = (e_ok == 1) & (t_ok <= cutoff)
        low = t_ok > cutoff
        labels = pd.Series(np.where(high, 1, 0), index=t_ok.index)[high | low].astype(int)
        censored = t_ok.index[~(high | low)]
        excluded = pd.concat([_excluded(t.index[missing], "missing pfs_months or pfs_event"),
                              _excluded(censored, "censored before median PFS")])
        survival = pd.DataFrame({"time": t_ok, "event": e_ok}).loc[labels.index]
        desc = (f"high risk (1) = progression at or before the median PFS of {cutoff:.1f} months; "
                f"low risk (0) = progression-free beyond it; patients censored before it have no label")
        labels.index.name = "patient_id"
        return EndpointLabels(name, labels, excluded, survival, desc, cutoff)

    column, tcol, ecol = NAMED_ENDPOINTS.get(name, (name, None, None))
    if column not in clinical.columns:
        if name not in NAMED_ENDPOINTS:
            raise NpcaiError(f"endpoint {name!r}: not a named endpoint ({', '.join(NAMED_ENDPOINTS)}) "
                             f"nor a clinical column; columns are {', '.join(map(str, clinical.columns))}")
        _require(clinical, [column], name)
    values = _binary(clinical[column], column)
    labels = values.dropna().astype(int)
    labels.index.name = "patient_id"
    excluded = _excluded(values.index[values.isna()], f"missing {column}")
    survival = None
    if tcol and ecol and tcol in clinical.columns and ecol in clinical.columns:
        survival = pd.DataFrame({"time": pd.to_numeric(clinical[tcol], errors="coerce"),
                                 "event": pd.to_numeric(clinical[ecol], errors="coerce")}).loc[labels.index]
    return EndpointLabels(name, labels, excluded, survival, f"label = clinical column {column!r} (0/1)")
