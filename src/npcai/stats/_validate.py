"""Input checks shared by the metric functions: one clear line for bad labels or scores.

Every public metric validates at its boundary, so a single-class test set or a NaN
probability fails with a message that says how many values and where, instead of
producing NaN in a table.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from npcai.errors import NpcaiError

__all__ = ["check_binary_labels", "check_scores", "check_probabilities", "check_same_length"]


def _where(bad: np.ndarray, ids: Sequence | None, limit: int = 5) -> str:
    idx = np.flatnonzero(bad)
    names = [str(ids[i]) for i in idx[:limit]] if ids is not None else [f"#{i}" for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ", ".join(names) + more


def check_same_length(what: str, **arrays: np.ndarray) -> None:
    """All arrays have the same length (names them when not)."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise NpcaiError(f"{what}: inputs have different lengths ({desc}); pass one value per patient")


def check_binary_labels(y_true, what: str = "labels", ids: Sequence | None = None,
                        require_both: bool = True, metric: str = "AUC") -> np.ndarray:
    """``y_true`` as an int array of 0/1; both classes present when ``require_both``."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise NpcaiError(f"{what}: expected a 1-d array of 0/1 labels, got shape {y.shape}")
    if y.size == 0:
        raise NpcaiError(f"{what}: no patients; {metric} needs at least one patient of each label")
    yf = y.astype(float) if y.dtype.kind in "biuf" else None
    if yf is None:
        raise NpcaiError(f"{what}: labels must be 0 or 1, got values of type {y.dtype}")
    bad = ~np.isin(yf, (0.0, 1.0))
    if bad.any():
        raise NpcaiError(f"{what}: {int(bad.sum())} label(s) are not 0 or 1 (at {_where(bad, ids)}); "
                         "labels must be 0/1")
    y = yf.astype(int)
    if require_both:
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == y.size:
            lab = 1 if n_pos else 0
            raise NpcaiError(f"{metric} is undefined: all {y.size} patients in {what} have label {lab}; "
                             "it needs patients of both labels (use a larger or stratified split)")
    return y


def check_scores(y_score, what: str = "scores", ids: Sequence | None = None) -> np.ndarray:
    """``y_score`` as a finite float array (NaN/inf named by position or patient)."""
    s = np.asarray(y_score, dtype=float)
    if s.ndim != 1:
        raise NpcaiError(f"{what}: expected a 1-d array of scores, got shape {s.shape}")
    bad = ~np.isfinite(s)
    if bad.any():
        raise NpcaiError(f"{what}: {int(bad.sum())} of {s.size} score(s) are NaN or infinite "
                         f"(at {_where(bad, ids)}); remove those patients or re-run prediction")
    return s


def check_probabilities(prob, what: str = "probabilities", ids: Sequence | None = None,
                        open_interval: bool = False) -> np.ndarray:
    """``prob`` as floats in [0, 1] (or (0, 1) when ``open_interval``), no NaN."""
    p = check_scores(prob, what, ids)
    bad = (p <= 0) | (p >= 1) if open_interval else (p < 0) | (p > 1)
    if bad.any():
        rng = "strictly between 0 and 1" if open_interval else "in [0, 1]"
        raise NpcaiError(f"{what}: {int(bad.sum())} of {p.size} probabilities are not {rng} "
                         f"(at {_where(bad, ids)}); pass probabilities, not logits")
    return p
