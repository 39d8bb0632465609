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

__all__ = ["EndpointLabels", "endpoint_labels", "filter_patients", "pfs_median_rule", "NAMED_ENDPOINTS"]

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


def pfs_median_rule(months, event, cutoff: float | None = None) -> tuple[np.ndarray, float]:
    """The one ``pfs-median`` rule (cohort endpoints and the phantom's truth both use it).

    t* is ``cutoff`` when given (e.g. the training cohort's, for an external cohort), else the
    median of ``months``; label 1 when the event happened at or before t*, 0 when the time
    exceeds t*, NaN (no label) when censored at or before t*.

    Examples:
        >>> pfs_median_rule([10, 20, 30, 40], [1, 0, 1, 0])
        (array([ 1., nan,  0.,  0.]), 25.0)
    """
    months = np.asarray(months, dtype=float)
    event = np.asarray(event, dtype=int)
    t_star = float(np.median(months)) if cutoff is None else float(cutoff)
    label = np.full(months.shape, np.nan)
    label[(event == 1) & (months <= t_star)] = 1.0
    label[months > t_star] = 0.0
    return label, t_star


def endpoint_labels(clinical: pd.DataFrame, name: str, *, cutoff: float | None = None) -> EndpointLabels:
    """Binary labels of endpoint ``name`` for the patients of ``clinical`` (indexed by patient_id).

    Args:
        clinical: the clinical table (``Cohort.clinical()``, possibly filtered).
        name: ``pfs-median``, ``distant-metastasis``, ``residual-tumour`` or any 0/1 column.
        cutoff: ``pfs-median`` only: a fixed t* in months (a run's training cut-off applied to
            an external cohort) instead of this table's median.

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
        if len(t_ok) < 2 and cutoff is None:
            raise NpcaiError(f"clinical.csv: only {len(t_ok)} patients have pfs_months and pfs_event; "
                             f"endpoint 'pfs-median' needs more")
        rule, cutoff = pfs_median_rule(t_ok.to_numpy(), e_ok.to_numpy(), cutoff)
        has = ~np.isnan(rule)
        labels = pd.Series(rule[has], index=t_ok.index[has]).astype(int)
        censored = t_ok.index[~has]
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


# --------------------------------------------------------------------------------------------
# Survival targets (time, event) for Cox models: study 004's DFS and the other time-to-event
# endpoints. Separate from the binary labels above.

#: survival endpoint -> (time column, event column); the binary endpoints of
#: :data:`NAMED_ENDPOINTS` that carry a time/event pair are accepted too.
SURVIVAL_ENDPOINTS: dict[str, tuple[str, str]] = {
    "dfs": ("dfs_months", "dfs_event"),
    "pfs": ("pfs_months", "pfs_event"),
    "os": ("os_months", "os_event"),
    "dmfs": ("dmfs_months", "dmfs_event"),
}


@dataclass
class SurvivalTarget:
    """A right-censored survival target.

    Attributes:
        name: the endpoint (``dfs``, ``pfs``, ... or ``TIME,EVENT``).
        time: Series patient_id -> follow-up time (float, >= 0), patients with follow-up only.
        event: Series patient_id -> 1 event observed at ``time``, 0 censored (int).
        excluded: DataFrame indexed by patient_id with a ``reason`` column.
        time_column, event_column: the clinical columns used.
    """

    name: str
    time: pd.Series
    event: pd.Series
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["reason"]))
    time_column: str = ""
    event_column: str = ""

    @property
    def n_events(self) -> int:
        return int(self.event.sum())

    def frame(self) -> pd.DataFrame:
        """DataFrame (index patient_id) with columns ``time`` and ``event``."""
        return pd.DataFrame({"time": self.time, "event": self.event})

    def excluded_counts(self) -> dict[str, int]:
        """Reasons -> number of patients, e.g. {"missing dfs_months": 3}."""
        return {str(k): int(v) for k, v in self.excluded["reason"].value_counts().items()}


def survival_columns(clinical: pd.DataFrame, name: str) -> tuple[str, str]:
    """The (time, event) columns of survival endpoint ``name``.

    ``name`` is ``dfs``, ``pfs``, ``os``, ``dmfs``, a binary endpoint of
    :data:`NAMED_ENDPOINTS` with a time/event pair (``pfs-median``, ``distant-metastasis``),
    or an explicit pair ``TIME_COLUMN,EVENT_COLUMN``.
    """
    if name in SURVIVAL_ENDPOINTS:
        tcol, ecol = SURVIVAL_ENDPOINTS[name]
    elif name in NAMED_ENDPOINTS and NAMED_ENDPOINTS[name][1] is not None:
        tcol, ecol = NAMED_ENDPOINTS[name][1], NAMED_ENDPOINTS[name][2]
    elif "," in name:
        parts = [p.strip() for p in name.split(",")]
        if len(parts) != 2 or not all(parts):
            raise NpcaiError(f"survival endpoint {name!r}: give one time and one event column, "
                             "e.g. 'dfs_months,dfs_event'")
        tcol, ecol = parts
    else:
        named = ", ".join(list(SURVIVAL_ENDPOINTS) + [k for k, v in NAMED_ENDPOINTS.items() if v[1]])
        raise NpcaiError(f"survival endpoint {name!r}: not a named survival endpoint ({named}); "
                         "or give a time and an event column as 'TIME,EVENT'")
    _require(clinical, [tcol, ecol], name)
    return tcol, ecol


def survival_target(clinical: pd.DataFrame, name: str) -> SurvivalTarget:
    """Survival times and events of endpoint ``name`` for the patients of ``clinical``.

    Patients without follow-up (missing time or event) are excluded and counted in
    ``.excluded``; a negative time or an event other than 0/1 is an error naming the
    patient.

    Examples:
        >>> clin = pd.DataFrame({"dfs_months": [12.0, None, 30.0], "dfs_event": [1, 0, 0]},
        ...                     index=pd.Index(["P1", "P2", "P3"], name="patient_id"))
        >>> st = survival_target(clin, "dfs")
        >>> st.time.to_dict(), st.event.to_dict()
        ({'P1': 12.0, 'P3': 30.0}, {'P1': 1, 'P3': 0})
        >>> st.excluded_counts()
        {'missing dfs_months or dfs_event': 1}
    """
    if clinical.index.name != "patient_id" and "patient_id" in clinical.columns:
        clinical = clinical.set_index("patient_id")
    tcol, ecol = survival_columns(clinical, name)
    raw_t = clinical[tcol]
    t = pd.to_numeric(raw_t, errors="coerce")
    bad = t.index[raw_t.notna() & t.isna()]
    if len(bad):
        raise NpcaiError(f"clinical.csv: column {tcol!r} has value {str(raw_t.loc[bad[0]])!r} for patient "
                         f"{bad[0]}; survival times must be numbers (months)")
    neg = t.index[t < 0]
    if len(neg):
        raise NpcaiError(f"clinical.csv: column {tcol!r} is negative ({t.loc[neg[0]]:g}) for patient "
                         f"{neg[0]}; survival times must be >= 0")
    e = _binary(clinical[ecol], ecol)
    missing = t.isna() | e.isna()
    time_s = t[~missing].astype(float)
    event_s = e[~missing].astype(int)
    time_s.index.name = event_s.index.name = "patient_id"
    excluded = _excluded(t.index[missing], f"missing {tcol} or {ecol}")
    return SurvivalTarget(name, time_s, event_s, excluded, tcol, ecol)


__all__ += ["SURVIVAL_ENDPOINTS", "SurvivalTarget", "survival_columns", "survival_target"]
