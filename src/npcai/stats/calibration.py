"""Calibration of predicted probabilities: Brier score, calibration intercept and slope.

The calibration slope is the coefficient of ``logit(p)`` in a logistic regression of the
outcome on it (R: ``glm(y ~ qlogis(p), binomial)``; 1 = ideal, < 1 = overfitted extremes);
the calibration intercept ("calibration-in-the-large") is the intercept of the logistic
model with ``logit(p)`` as an offset (R: ``glm(y ~ offset(qlogis(p)), binomial)``; 0 = ideal).
Both are fitted by Newton-Raphson and checked against R's ``glm``.

Examples:
    >>> from npcai.stats.calibration import brier_score
    >>> round(brier_score([0, 1], [0.2, 0.6]), 6)
    0.1
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from npcai.errors import NpcaiError
from npcai.stats._validate import check_binary_labels, check_probabilities, check_same_length

__all__ = ["CalibrationResult", "brier_score", "calibration_intercept_slope", "EPS"]

EPS = 1e-7
"""Probabilities are clipped to [EPS, 1 - EPS] before the logit (a float32 sigmoid can return 1.0)."""


def brier_score(y_true, prob, ids: Sequence | None = None) -> float:
    """Mean squared difference between 0/1 outcome and predicted probability."""
    y = check_binary_labels(y_true, "Brier labels", ids, require_both=False)
    p = check_probabilities(prob, "Brier probabilities", ids)
    check_same_length("Brier score", labels=y, probabilities=p)
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration intercept (with logit offset) and slope, with their standard errors."""

    intercept: float
    intercept_se: float
    slope: float
    slope_se: float
    slope_intercept: float   # the intercept of the slope model (y ~ a + b logit p)
    brier: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _logistic(X: np.ndarray, y: np.ndarray, offset: np.ndarray, what: str,
              max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Newton-Raphson logistic regression; returns (coefficients, covariance).

    Perfectly separated labels make the coefficients run off to infinity: Newton then never
    converges (or the information matrix becomes singular), and that is reported, not hidden.
    """
    from scipy.special import expit

    fail = (f"{what}: the logistic recalibration does not converge (the predictions separate the "
            "labels perfectly, or all predictions are equal); calibration is not estimable on these patients")
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        mu = expit(X @ beta + offset)
        info = X.T @ (X * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(info, X.T @ (y - mu))
        except np.linalg.LinAlgError as exc:
            raise NpcaiError(fail) from exc
        beta = beta + step
        if not np.all(np.isfinite(beta)):
            raise NpcaiError(fail)
        if np.max(np.abs(step)) < tol * (1 + np.max(np.abs(beta))):
            break
    else:
        raise NpcaiError(fail)
    mu = expit(X @ beta + offset)
    info = X.T @ (X * (mu * (1 - mu))[:, None])
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError as exc:
        raise NpcaiError(fail) from exc
    return beta, cov


def calibration_intercept_slope(y_true, prob, ids: Sequence | None = None) -> CalibrationResult:
    """Calibration intercept (offset model) and slope (``y ~ logit p``), as R's ``glm``.

    Examples:
        >>> r = calibration_intercept_slope([0, 0, 1, 1, 0, 1, 1, 0], [.2, .3, .7, .6, .6, .4, .9, .1])
        >>> r.slope > 0
        True
    """
    y = check_binary_labels(y_true, "calibration labels", ids, metric="calibration")
    p = check_probabilities(prob, "calibration probabilities", ids)
    check_same_length("calibration", labels=y, probabilities=p)
    lp = np.log(np.clip(p, EPS, 1 - EPS)) - np.log1p(-np.clip(p, EPS, 1 - EPS))
    ones = np.ones((y.size, 1))
    b0, cov0 = _logistic(ones, y.astype(float), lp, "calibration intercept")
    X = np.column_stack([np.ones(y.size), lp])
    b1, cov1 = _logistic(X, y.astype(float), np.zeros(y.size), "calibration slope")
    return CalibrationResult(intercept=float(b0[0]), intercept_se=float(np.sqrt(cov0[0, 0])),
                             slope=float(b1[1]), slope_se=float(np.sqrt(cov1[1, 1])),
                             slope_intercept=float(b1[0]), brier=float(np.mean((p - y) ** 2)),
                             n=int(y.size))
