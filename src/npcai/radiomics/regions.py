"""Which pixels of an ROI slice the radiomics features describe.

The ROI cache stores what a network sees: ``images.npy`` is exactly 0 outside the region
the variant kept (the tumour for ``segmented``, the tumour grown by N for ``expand:N``, the
rectangle for ``bbox`` variants, the whole slice for ``original``) and ``masks.npy`` holds
the label map in ROI space. The feature region of a slice is therefore the kept region as
the ROI dataset defines it: the pixels where any channel is non-zero, together with the
slice's region labels (a tumour pixel whose normalised intensity happens to be exactly 0 is
still tumour). For ``original`` the zero padding around a non-square slice is left out.
"""
from __future__ import annotations

import numpy as np

__all__ = ["REGION_LABELS", "feature_region"]

#: ROI ``region`` -> the label values of ``masks.npy`` that belong to it
REGION_LABELS = {"primary": (1,), "nodes": (2,), "both": (1, 2)}


def feature_region(image: np.ndarray, labels: np.ndarray, region: str, *, uses_mask: bool = True) -> np.ndarray:
    """The bool ``(S, S)`` mask of the pixels whose features are computed.

    Args:
        image: ``(C, S, S)`` one row of ``images.npy``.
        labels: ``(S, S)`` the row of ``masks.npy`` (1 tumour, 2 nodes).
        region: the ROI's region (``primary``, ``nodes`` or ``both``).
        uses_mask: False for the ``original`` variant (whole slice): the region labels are
            then not added (they are inside the slice anyway).

    Examples:
        >>> img = np.zeros((1, 4, 4), np.float32); img[0, 1:3, 1:3] = 1.0
        >>> lab = np.zeros((4, 4), np.uint8); lab[1, 1] = 1
        >>> int(feature_region(img, lab, "primary").sum())
        4
    """
    kept = np.any(np.asarray(image) != 0, axis=0)
    if uses_mask:
        kept |= np.isin(np.asarray(labels), REGION_LABELS.get(region, (1, 2)))
    return kept
