"""ROC AUC with DeLong's variance, confidence interval and tests, ROC points and Youden's cut.

Everything follows R's pROC (the field's reference), checked to 1e-6 in
``tests/stats/test_against_r.py``: the AUC is the Mann-Whitney probability that a
patient with label 1 scores higher than one with label 0 (ties count 1/2), its variance is
DeLong's from the placement values (sample variances, ``n - 1``), the 95% CI is
``auc +- z * se`` clipped to [0, 1], and the paired test uses the covariance of the two
models' placements on the same patients. Higher scores mean label 1 (pROC ``direction="<"``);
an AUC below 0.5 is reported as is, never silently flipped.

Examples:
    >>> from npcai.stats.auc import auc_ci, delong_test
    >>> r = auc_ci([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> round(r.auc, 3)
    0.75
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.stats._validate import check_binary_labels, check_same_length, check_scores

__all__ = [
    "AucResult", "DelongTest", "RocCurve", "YoudenCut", "roc_auc", "delong_placements",
    "auc_ci", "delong_test", "delong_test_unpaired", "roc_curve", "youden_threshold",
]


@dataclass(frozen=True)
class AucResult:
    """AUC with DeLong standard error and a (clipped) normal confidence interval."""

    auc: float
    se: float
    low: float
    high: float
    n_pos: int
    n_neg: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.auc:.3f} ({self.low:.3f}-{self.high:.3f})"


@dataclass(frozen=True)
class DelongTest:
    """DeLong's test of two AUCs: ``z`` statistic (t for the unpaired test) and two-sided p."""

    auc1: float
    auc2: float
    statistic: float
    p_value: float
    paired: bool
    df: float | None = None       # degrees of freedom of the unpaired (Welch-type) test
    diff_low: float | None = None   # 95% CI of auc1 - auc2 (paired test, as pROC)
    diff_high: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RocCurve:
    """ROC points at every threshold (pROC's: -inf, midpoints between distinct scores, +inf).

    ``sensitivity[k]`` and ``specificity[k]`` are for "label 1 when score > thresholds[k]".
    """

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray

    @property
    def fpr(self) -> np.ndarray:
        return 1.0 - self.specificity

    @property
    def tpr(self) -> np.ndarray:
        return self.sensitivity


@dataclass(frozen=True)
class YoudenCut:
    """The threshold maximising sensitivity + specificity on the data it was chosen on."""

    threshold: float
    sensitivity: float
    specificity: float

    @property
    def youden_j(self) -> float:
        return self.sensitivity + self.specificity - 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "youden_j": self.youden_j}


def _prepare(y_true, y_score, what: str, ids: Sequence | None):
    y = check_binary_labels(y_true, f"{what} labels", ids)
    s = check_scores(y_score, f"{what} scores", ids)
    check_same_length(what, labels=y, scores=s)
    return y, s


def delong_placements(y_true, y_score, *, what: str = "AUC",
                      ids: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: ``(v10, v01)``.

    ``v10[i]`` is the share of label-0 patients that positive ``i`` outscores (ties 1/2);
    ``v01[j]`` the share of positives that outscore negative ``j``. ``mean(v10)`` is the AUC.
    Computed with mid-ranks in O(n log n).
    """
    y, s = _prepare(y_true, y_score, what, ids)
    pos, neg = s[y == 1], s[y == 0]
    m, n = pos.size, neg.size
    r_all = _st.rankdata(np.concatenate([pos, neg]))
    r_pos, r_neg = _st.rankdata(pos), _st.rankdata(neg)
    v10 = (r_all[:m] - r_pos) / n
    v01 = 1.0 - (r_all[m:] - r_neg) / m
    return v10, v01


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve (label 1 = higher score); fails clearly on a single class."""
    v10, _ = delong_placements(y_true, y_score)
    return float(v10.mean())


def _delong_var(v10: np.ndarray, v01: np.ndarray, what: str = "AUC") -> float:
    m, n = v10.size, v01.size
    if m < 2 or n < 2:
        raise NpcaiError(f"{what}: DeLong's variance needs at least 2 patients of each label "
                         f"(have {m} with label 1, {n} with label 0); use a larger test set")
    return float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


def auc_ci(y_true, y_score, level: float = 0.95, *, what: str = "AUC",
           ids: Sequence | None = None) -> AucResult:
    """AUC with DeLong's standard error and ``level`` CI, as ``pROC::ci.auc(method="delong")``.

    The interval is ``auc +- qnorm(1 - (1 - level) / 2) * se``, clipped to [0, 1] like pROC.

    Examples:
        >>> auc_ci([0, 1, 0, 1, 1], [0.2, 0.9, 0.3, 0.6, 0.1]).auc
        0.6666666666666666
    """
    v10, v01 = delong_placements(y_true, y_score, what=what, ids=ids)
    auc = float(v10.mean())
    se = float(np.sqrt(_delong_var(v10, v01, what)))
    z = _st.norm.ppf(1 - (1 - level) / 2)
    return AucResult(auc=auc, se=se, low=float(max(0.0, auc - z * se)), high=float(min(1.0, auc + z * se)),
                     n_pos=int(v10.size), n_neg=int(v01.size), level=level)


def delong_test(y_true, y_score1, y_score2, *, ids: Sequence | None = None) -> DelongTest:
    """Paired DeLong test of two models' AUCs on the same patients (``roc.test(paired=TRUE)``).

    ``z = (auc1 - auc2) / sqrt(var1 + var2 - 2 cov)``; p two-sided from the normal. When the
    two models rank every pair identically the difference has no variance: z = 0, p = 1.

    Examples:
        >>> t = delong_test([0, 0, 1, 1, 0, 1], [.1, .2, .8, .7, .6, .3], [.2, .1, .6, .9, .3, .4])
        >>> t.paired
        True
    """
    y = check_binary_labels(y_true, "paired DeLong labels", ids)
    s1 = check_scores(y_score1, "paired DeLong scores of model 1", ids)
    s2 = check_scores(y_score2, "paired DeLong scores of model 2", ids)
    check_same_length("paired DeLong test", labels=y, scores1=s1, scores2=s2)
    a10, a01 = delong_placements(y, s1)
    b10, b01 = delong_placements(y, s2)
    m, n = a10.size, a01.size
    _delong_var(a10, a01, "paired DeLong test")
    auc1, auc2 = float(a10.mean()), float(b10.mean())
    s10 = np.cov(np.vstack([a10, b10]), ddof=1)
    s01 = np.cov(np.vstack([a01, b01]), ddof=1)
    cov = s10 / m + s01 / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = auc1 - auc2
    if var <= 1e-15 * max(1.0, cov[0, 0] + cov[1, 1]):
        if abs(diff) < 1e-12:
            return DelongTest(auc1, auc2, 0.0, 1.0, paired=True, diff_low=0.0, diff_high=0.0)
        raise NpcaiError("paired DeLong test: the AUC difference has zero variance but is not 0; "
                         "check that both score columns belong to the same patients")
    sig = float(np.sqrt(var))
    z = diff / sig
    zc = _st.norm.ppf(0.975)
    return DelongTest(auc1, auc2, float(z), float(2 * _st.norm.sf(abs(z))), paired=True,
                      diff_low=diff - zc * sig, diff_high=diff + zc * sig)


def delong_test_unpaired(y_true1, y_score1, y_true2, y_score2) -> DelongTest:
    """DeLong test of two AUCs on different patients (``roc.test(paired=FALSE, method="delong")``).

    pROC uses a Welch-type t statistic ``(auc1 - auc2) / sqrt(var1 + var2)`` with
    ``df = (var1 + var2)^2 / (var1^2 / (N1 - 1) + var2^2 / (N2 - 1))``, N the patients per model.
    """
    a10, a01 = delong_placements(y_true1, y_score1, what="unpaired DeLong test, model 1")
    b10, b01 = delong_placements(y_true2, y_score2, what="unpaired DeLong test, model 2")
    var1 = _delong_var(a10, a01, "unpaired DeLong test, model 1")
    var2 = _delong_var(b10, b01, "unpaired DeLong test, model 2")
    auc1, auc2 = float(a10.mean()), float(b10.mean())
    if var1 + var2 <= 0:
        raise NpcaiError("unpaired DeLong test: both AUCs have zero variance (perfect separation); "
                         "a test is not meaningful")
    t = (auc1 - auc2) / np.sqrt(var1 + var2)
    n1, n2 = a10.size + a01.size, b10.size + b01.size
    df = (var1 + var2) ** 2 / (var1 ** 2 / (n1 - 1) + var2 ** 2 / (n2 - 1))
    p = 2 * _st.t.sf(abs(t), df)
    return DelongTest(auc1, auc2, float(t), float(p), paired=False, df=float(df))


def roc_curve(y_true, y_score, *, what: str = "ROC") -> RocCurve:
    """ROC points at pROC's thresholds: -inf, midpoints of consecutive distinct scores, +inf."""
    y, s = _prepare(y_true, y_score, what, None)
    u = np.unique(s)
    thr = np.concatenate([[-np.inf], (u[1:] + u[:-1]) / 2, [np.inf]]) if u.size > 1 else \
        np.array([-np.inf, np.inf])
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    # share of positives with score > t, share of negatives with score <= t
    sens = 1.0 - np.searchsorted(pos, thr, side="right") / pos.size
    spec = np.searchsorted(neg, thr, side="right") / neg.size
    return RocCurve(thresholds=thr, sensitivity=sens, specificity=spec)


def youden_threshold(y_true, y_score, *, what: str = "Youden threshold") -> YoudenCut:
    """The cut maximising sensitivity + specificity (pROC ``coords("best", best.method="youden")``).

    Choose it on validation patients and apply it unchanged to the test patients: label 1 when
    ``score > threshold``. Among tied optima the lowest threshold is returned (pROC returns all).
    """
    roc = roc_curve(y_true, y_score, what=what)
    j = roc.sensitivity + roc.specificity
    finite = np.isfinite(roc.thresholds)
    if not finite.any():
        raise NpcaiError(f"{what}: all scores are equal; no threshold separates the patients")
    j = np.where(finite, j, -np.inf)
    k = int(np.flatnonzero(j >= j.max() - 1e-12)[0])
    return YoudenCut(threshold=float(roc.thresholds[k]), sensitivity=float(roc.sensitivity[k]),
                     specificity=float(roc.specificity[k]))
