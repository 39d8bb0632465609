"""Patient-level bootstrap confidence interval for any metric.

Resamples *patients* (not slices) with replacement, recomputes the metric on each resample
and reports the percentile interval. Resampling is stratified by label by default (as
pROC's ``ci(..., method="bootstrap")``), so every resample keeps both classes. When rows are
slices, pass ``groups`` (the patient id per row): a drawn patient brings all its rows.

Examples:
    >>> from npcai.stats.bootstrap import bootstrap_ci
    >>> from npcai.stats.auc import roc_auc
    >>> r = bootstrap_ci(roc_auc, [0, 0, 1, 1, 0, 1], [.1, .4, .35, .8, .2, .9], n_boot=200, seed=0)
    >>> r.low <= r.estimate <= r.high
    True
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from npcai.errors import NpcaiError

__all__ = ["BootstrapResult", "bootstrap_ci"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate on all data, percentile CI over ``n_boot`` patient resamples."""

    estimate: float
    low: float
    high: float
    se: float
    n_boot: int
    n_failed: int
    level: float
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.3f} ({self.low:.3f}-{self.high:.3f})"


def bootstrap_ci(metric: Callable[..., float], y_true, *arrays, groups: Sequence | None = None,
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                 stratify: bool = True) -> BootstrapResult:
    """Percentile bootstrap CI of ``metric(y_true, *arrays)`` over patients.

    Args:
        metric: a function ``metric(y_true, *arrays) -> float`` (e.g. ``roc_auc``, an F1).
        y_true: labels (per patient, or per row when ``groups`` is given); used to stratify.
        arrays: further per-row arrays passed to ``metric`` (scores, times, ...).
        groups: patient id per row; resampling draws whole patients.
        n_boot: number of resamples.
        seed: random seed (same seed, same interval).
        level: CI level.
        stratify: resample within each label (a patient's label is its first row's label).

    Resamples on which ``metric`` raises :class:`NpcaiError` (e.g. a single class when
    ``stratify=False``) are counted in ``n_failed``; more than 10% failed is an error.
    """
    y = np.asarray(y_true)
    arrs = [np.asarray(a) for a in arrays]
    for a in arrs:
        if len(a) != len(y):
            raise NpcaiError(f"bootstrap: arrays have different lengths ({len(y)} labels, {len(a)} values)")
    estimate = float(metric(y, *arrs))
    if groups is None:
        rows_of = [np.array([i]) for i in range(len(y))]
        unit_label = y
    else:
        g = np.asarray(groups)
        if len(g) != len(y):
            raise NpcaiError(f"bootstrap: groups has {len(g)} entries for {len(y)} rows")
        _, inverse = np.unique(g, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        rows_of = np.split(order, bounds)
        unit_label = np.array([y[r[0]] for r in rows_of])
    units = np.arange(len(rows_of))
    strata = [units[unit_label == v] for v in np.unique(unit_label)] if stratify else [units]
    rng = np.random.default_rng(seed)
    values, failed = [], 0
    for _ in range(n_boot):
        drawn = np.concatenate([rng.choice(s, size=s.size, replace=True) for s in strata])
        rows = np.concatenate([rows_of[u] for u in drawn])
        try:
            values.append(float(metric(y[rows], *[a[rows] for a in arrs])))
        except NpcaiError:
            failed += 1
    if failed > 0.1 * n_boot:
        raise NpcaiError(f"bootstrap: the metric failed on {failed} of {n_boot} resamples "
                         "(e.g. a single class); use stratify=True or more patients")
    if failed:
        log.warning("bootstrap: metric undefined on %d of %d resamples (skipped)", failed, n_boot)
    v = np.asarray(values)
    alpha = (1 - level) / 2
    return BootstrapResult(estimate=estimate, low=float(np.quantile(v, alpha)),
                           high=float(np.quantile(v, 1 - alpha)), se=float(v.std(ddof=1)),
                           n_boot=n_boot, n_failed=failed, level=level, seed=seed)
