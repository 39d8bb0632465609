"""Segmentation metrics as pure functions ``metric(y_true, y_pred)`` on label maps.

Conventions (the same for slices and volumes):

* ``dice_score(y_true, y_pred, label)``: ``2|T∩P| / (|T|+|P|)`` for the pixels equal to
  ``label`` (an int, or a tuple of ints for a union such as tumour+nodes). When both are
  empty the Dice is undefined and NaN is returned (the slice/patient does not count); when
  only one is empty it is 0 (a miss or a false alarm counts against the model). On every
  defined case this equals MONAI's ``DiceMetric(include_background=False, ignore_empty=False)``
  (checked in the tests).
* ``hd95(y_true, y_pred, label, spacing)``: MONAI's 95th-percentile symmetric Hausdorff
  distance between the surfaces, in mm (``spacing`` in numpy axis order); NaN when either
  is empty.
* ``volume_error(y_true, y_pred, label, voxel_ml)``: predicted minus true volume in ml, and
  :func:`relative_volume_error` as a fraction of the true volume (NaN when the truth is empty).

Examples:
    >>> import numpy as np
    >>> t = np.zeros((8, 8), np.uint8); t[2:6, 2:6] = 1
    >>> p = np.zeros((8, 8), np.uint8); p[2:6, 3:7] = 1
    >>> round(dice_score(t, p, 1), 3)
    0.75
"""
from __future__ import annotations

import numpy as np

__all__ = ["dice_score", "dice_per_slice", "hd95", "volume_error", "relative_volume_error"]


def _region(a: np.ndarray, label: int | tuple[int, ...]) -> np.ndarray:
    labels = (label,) if np.isscalar(label) else tuple(label)
    return np.isin(np.asarray(a), labels)


def dice_score(y_true: np.ndarray, y_pred: np.ndarray, label: int | tuple[int, ...] = 1) -> float:
    """Dice of ``label`` between two label maps of the same shape (NaN when both are empty)."""
    t, p = _region(y_true, label), _region(y_pred, label)
    if t.shape != p.shape:
        raise ValueError(f"dice_score: shapes differ: {t.shape} vs {p.shape}")
    denom = int(t.sum()) + int(p.sum())
    if denom == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(t, p).sum()) / denom


def dice_per_slice(y_true: np.ndarray, y_pred: np.ndarray, label: int | tuple[int, ...] = 1) -> np.ndarray:
    """Dice of ``label`` for every axial slice of ``(z, y, x)`` label maps (NaN where both empty)."""
    t = _region(y_true, label).reshape(len(y_true), -1)
    p = _region(y_pred, label).reshape(len(y_pred), -1)
    if t.shape != p.shape:
        raise ValueError(f"dice_per_slice: shapes differ: {y_true.shape} vs {y_pred.shape}")
    inter = np.logical_and(t, p).sum(1).astype(float)
    denom = t.sum(1).astype(float) + p.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * inter / np.maximum(denom, 1), np.nan)


def hd95(y_true: np.ndarray, y_pred: np.ndarray, label: int | tuple[int, ...] = 1,
         spacing: tuple[float, ...] | None = None) -> float:
    """95th-percentile Hausdorff distance (mm with ``spacing``, else px); NaN if either is empty."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    t, p = _region(y_true, label), _region(y_pred, label)
    if not t.any() or not p.any():
        return float("nan")
    yt = torch.from_numpy(t)[None, None].float()
    yp = torch.from_numpy(p)[None, None].float()
    value = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95,
                                       spacing=list(spacing) if spacing is not None else None)
    return float(value.item())


def volume_error(y_true: np.ndarray, y_pred: np.ndarray, label: int | tuple[int, ...] = 1,
                 voxel_ml: float = 1.0) -> float:
    """Predicted minus true volume of ``label`` (in ml when ``voxel_ml`` is the voxel volume)."""
    return (int(_region(y_pred, label).sum()) - int(_region(y_true, label).sum())) * voxel_ml


def relative_volume_error(y_true: np.ndarray, y_pred: np.ndarray, label: int | tuple[int, ...] = 1) -> float:
    """``(V_pred - V_true) / V_true``; NaN when the true region is empty."""
    vt = int(_region(y_true, label).sum())
    if vt == 0:
        return float("nan")
    return (int(_region(y_pred, label).sum()) - vt) / vt
