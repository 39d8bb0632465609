"""Post-processing of predicted label maps, the same for ``segment evaluate`` and ``segment predict``.

Two steps, in this order, both saved in the segmentation run's ``config.yaml`` (options
``min_component`` and ``keep_largest_3d``) so every consumer of a run applies the same rule:

* per slice, drop 2D components whose bounding box fits inside ``min_component`` px
  (study 000's 10 x 10; :func:`npcai.imaging.masks.drop_small_components`);
* with ``keep_largest_3d``, keep only the largest 3D connected component (26-connected) of
  each label in the volume: a single target such as a PTV is one connected body, so
  scattered false positives on other slices go. Not meant for labels with several separate
  lesions (nodes).

Examples:
    >>> import numpy as np
    >>> m = np.zeros((3, 4, 4), np.uint8); m[0, :2, :2] = 1; m[2, 3, 3] = 1
    >>> int(keep_largest_3d(m).sum())
    4
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from npcai.imaging.masks import drop_small_components, parse_min_component

__all__ = ["keep_largest_3d", "postprocess"]


def keep_largest_3d(labels: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected 3D component of every label of a ``(z, y, x)`` label map.

    Ties keep the component found first in scan order. Returns a new array; labels with no
    voxel stay absent.
    """
    labels = np.asarray(labels)
    out = np.zeros_like(labels)
    structure = ndimage.generate_binary_structure(3, 3)
    for value in np.unique(labels):
        if value == 0:
            continue
        comp, n = ndimage.label(labels == value, structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel(), minlength=n + 1)[1:]
        out[comp == int(np.argmax(sizes)) + 1] = value
    return out


def postprocess(labels: np.ndarray, *, min_component: tuple[int, int] | str = (10, 10),
                largest_3d: bool = False) -> np.ndarray:
    """Drop small 2D components, then (``largest_3d``) keep each label's largest 3D component."""
    out = drop_small_components(labels, parse_min_component(min_component))
    return keep_largest_3d(out) if largest_3d else out
