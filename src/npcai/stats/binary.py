"""Confusion matrix and the proportions read off it, each with a Wilson 95% CI.

Sensitivity, specificity, PPV (= precision), NPV and accuracy are proportions ``k / n``;
their intervals are Wilson score intervals (R's ``prop.test(k, n, correct=FALSE)$conf.int``),
which behave well at 0 and 1 and for the small test cohorts of the seed papers. F1 is not a
proportion and gets no analytical interval here (use :func:`npcai.stats.bootstrap.bootstrap_ci`).

Examples:
    >>> from npcai.stats.binary import binary_metrics
    >>> m = binary_metrics([1, 1, 0, 0, 1], [0.9, 0.4, 0.2, 0.7, 0.8], threshold=0.5)
    >>> m.sensitivity.k, m.sensitivity.n
    (2, 3)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.stats._validate import check_binary_labels, check_same_length, check_scores

__all__ = ["Proportion", "ConfusionMatrix", "BinaryMetrics", "wilson_ci", "proportion",
           "confusion_matrix", "metrics_from_confusion", "binary_metrics"]


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes out of ``n`` (no continuity correction)."""
    if n <= 0:
        raise NpcaiError(f"Wilson CI: no observations (k={k}, n={n}); the proportion is undefined")
    if not 0 <= k <= n:
        raise NpcaiError(f"Wilson CI: k={k} is outside 0..n={n}")
    z = _st.norm.ppf(1 - (1 - level) / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


@dataclass(frozen=True)
class Proportion:
    """``k / n`` with its Wilson interval.

    Inside :class:`BinaryMetrics` a proportion with ``n == 0`` (e.g. the NPV when no patient
    is predicted 0) is *undefined*: ``value``, ``low`` and ``high`` are None and ``undefined``
    says why -- never NaN.
    """

    value: float | None
    k: int
    n: int
    low: float | None
    high: float | None
    undefined: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.value is None:
            return f"undefined ({self.undefined})"
        return f"{self.value:.3f} ({self.low:.3f}-{self.high:.3f}; {self.k}/{self.n})"


def proportion(k: int, n: int, level: float = 0.95, what: str = "proportion") -> Proportion:
    """A :class:`Proportion` ``k / n`` with a Wilson CI; ``n == 0`` fails naming ``what``."""
    if n == 0:
        raise NpcaiError(f"{what} is undefined: its denominator is 0 (no patients in that cell); "
                         "use a larger test set or another threshold")
    lo, hi = wilson_ci(k, n, level)
    return Proportion(value=k / n, k=int(k), n=int(n), low=lo, high=hi)


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of a binary classification: true/false positives/negatives."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def as_array(self) -> np.ndarray:
        """``[[TN, FP], [FN, TP]]`` (rows true 0/1, columns predicted 0/1), as scikit-learn."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def to_dict(self) -> dict:
        return asdict(self)


def confusion_matrix(y_true, y_pred) -> ConfusionMatrix:
    """Counts from 0/1 labels and 0/1 predictions (one class may be absent)."""
    y = check_binary_labels(y_true, "confusion-matrix labels", require_both=False)
    p = check_binary_labels(y_pred, "confusion-matrix predictions", require_both=False)
    check_same_length("confusion matrix", labels=y, predictions=p)
    return ConfusionMatrix(tp=int(((y == 1) & (p == 1)).sum()), fp=int(((y == 0) & (p == 1)).sum()),
                           tn=int(((y == 0) & (p == 0)).sum()), fn=int(((y == 1) & (p == 0)).sum()))


@dataclass(frozen=True)
class BinaryMetrics:
    """Threshold metrics with Wilson CIs; ``f1`` is a plain number (no analytical CI)."""

    threshold: float
    confusion: ConfusionMatrix
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion
    npv: Proportion
    accuracy: Proportion
    f1: float

    @property
    def precision(self) -> Proportion:
        return self.ppv

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "confusion": self.confusion.to_dict(),
                "sensitivity": self.sensitivity.to_dict(), "specificity": self.specificity.to_dict(),
                "ppv": self.ppv.to_dict(), "npv": self.npv.to_dict(),
                "precision": self.ppv.to_dict(), "accuracy": self.accuracy.to_dict(), "f1": self.f1}


def metrics_from_confusion(cm: ConfusionMatrix, threshold: float = float("nan"),
                           level: float = 0.95) -> BinaryMetrics:
    """All proportions of a confusion matrix with Wilson CIs (e.g. to check a paper's table).

    A proportion whose denominator is 0 is returned undefined (value None, with the reason).
    """
    f1_den = 2 * cm.tp + cm.fp + cm.fn
    if f1_den == 0:
        raise NpcaiError("F1 is undefined: no positive patients and no positive predictions")
    def part(k: int, n: int, why: str) -> Proportion:
        if n == 0:
            return Proportion(value=None, k=int(k), n=0, low=None, high=None, undefined=why)
        return proportion(k, n, level)

    return BinaryMetrics(
        threshold=threshold, confusion=cm,
        sensitivity=part(cm.tp, cm.tp + cm.fn, "no patients with label 1"),
        specificity=part(cm.tn, cm.tn + cm.fp, "no patients with label 0"),
        ppv=part(cm.tp, cm.tp + cm.fp, "no patient predicted 1 at this threshold"),
        npv=part(cm.tn, cm.tn + cm.fn, "no patient predicted 0 at this threshold"),
        accuracy=part(cm.tp + cm.tn, cm.n, "no patients"),
        f1=2 * cm.tp / f1_den)


def binary_metrics(y_true, y_score, threshold: float, level: float = 0.95) -> BinaryMetrics:
    """Confusion-matrix metrics when patients with ``score > threshold`` are called label 1.

    ``threshold`` must come from other patients (e.g. Youden on validation), never the test set.
    """
    y = check_binary_labels(y_true, "binary-metric labels", require_both=False)
    s = check_scores(y_score, "binary-metric scores")
    check_same_length("binary metrics", labels=y, scores=s)
    if not np.isfinite(threshold):
        raise NpcaiError(f"binary metrics: threshold {threshold} is not a finite number")
    cm = confusion_matrix(y, (s > threshold).astype(int))
    return metrics_from_confusion(cm, float(threshold), level)
