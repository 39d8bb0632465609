"""Mask operations: expansion by exact Euclidean distances, small components, boxes, slices."""
from __future__ import annotations

import numpy as np
import pytest

from npcai.errors import NpcaiError
from npcai.imaging.masks import (bounding_box, drop_small_components, expand_mask,
                                 parse_min_component, region_mask, square_window)
from npcai.imaging.slices import parse_slice_rule, select_slices


def _brute_distance(mask: np.ndarray, sampling=(1.0, 1.0)) -> np.ndarray:
    """Distance (in sampling units) from every pixel centre to the nearest mask pixel centre,
    computed by brute force (independent of scipy's distance transform)."""
    rr, cc = np.mgrid[: mask.shape[0], : mask.shape[1]]
    pts = np.stack([rr.ravel() * sampling[0], cc.ravel() * sampling[1]], 1)
    src = pts[mask.ravel()]
    d = np.sqrt(((pts[:, None, :] - src[None, :, :]) ** 2).sum(-1)).min(1)
    return d.reshape(mask.shape)


def _blob() -> np.ndarray:
    m = np.zeros((40, 36), bool)
    m[12:20, 10:22] = True
    m[18:27, 15:19] = True          # an L-shape: concave corner
    m[5, 30] = True                 # an isolated pixel
    return m


@pytest.mark.parametrize("n", [1, 3, 5])
def test_expand_px_grows_exactly_n_pixels_at_every_edge_point(n):
    mask = _blob()
    grown = expand_mask(mask, n, "px")
    dist = _brute_distance(mask)
    assert grown.shape == mask.shape
    assert grown[mask].all()                                   # the mask itself is kept
    np.testing.assert_array_equal(grown, dist <= n)            # exactly the pixels within N
    # every pixel on the outer edge of the grown mask lies between N-1 and N from the tumour
    from scipy.ndimage import binary_erosion

    # border_value=1: pixels on the image border are clipped, not an edge of the growth
    edge = grown & ~binary_erosion(grown, border_value=1) & ~mask
    assert edge.any()
    assert (dist[edge] > n - 1).all() and (dist[edge] <= n).all()
    assert (dist[~grown] > n).all()


def test_expand_px_is_clipped_to_the_image():
    mask = np.zeros((20, 20), bool)
    mask[0:3, 17:20] = True                                    # touches the top-right corner
    grown = expand_mask(mask, 6, "px")
    assert grown.shape == (20, 20)
    np.testing.assert_array_equal(grown, _brute_distance(mask) <= 6)
    assert grown[0, 11] and not grown[0, 10]                   # grows 6 px left along the edge


def test_expand_mm_uses_anisotropic_spacing():
    mask = np.zeros((41, 41), bool)
    mask[20, 20] = True
    row_mm, col_mm = 0.5, 2.0
    grown = expand_mask(mask, 4.0, "mm", pixel_mm=(row_mm, col_mm))
    rows = np.flatnonzero(grown[:, 20])
    cols = np.flatnonzero(grown[20, :])
    assert (rows.min(), rows.max()) == (12, 28)               # 4 mm / 0.5 mm = 8 px up and down
    assert (cols.min(), cols.max()) == (18, 22)               # 4 mm / 2 mm = 2 px left and right
    np.testing.assert_array_equal(grown, _brute_distance(mask, (row_mm, col_mm)) <= 4.0)
    blob = _blob()
    np.testing.assert_array_equal(expand_mask(blob, 3.0, "mm", (0.8, 0.5)),
                                  _brute_distance(blob, (0.8, 0.5)) <= 3.0)


def test_expand_mm_without_spacing_fails_clearly():
    with pytest.raises(NpcaiError, match="spacing"):
        expand_mask(_blob(), 3.0, "mm", pixel_mm=(0.0, 0.0))


def test_expand_empty_mask_stays_empty():
    assert not expand_mask(np.zeros((8, 8), bool), 3).any()


def test_small_components_are_dropped_per_slice_and_label():
    lab = np.zeros((2, 40, 40), np.uint8)
    lab[0, 1:10, 1:10] = 1          # 9x9: dropped (smaller than 10x10 in both directions)
    lab[0, 20:30, 1:4] = 1          # 10 rows x 3 cols: kept (10 rows is not smaller)
    lab[0, 35:38, 20:32] = 2        # 3 x 12: kept
    lab[0, 12:22, 12:22] = 2        # 10x10 nodes: kept
    lab[1, 1:10, 1:10] = 1          # same 9x9 on another slice: dropped too
    lab[1, 20:22, 20:22] = 1        # 2x2 diagonal neighbours form one component of 4x4 box
    lab[1, 22:24, 22:24] = 1
    out = drop_small_components(lab, (10, 10))
    assert not out[0, 1:10, 1:10].any() and not out[1, 1:10, 1:10].any()
    assert (out[0, 20:30, 1:4] == 1).all()
    assert (out[0, 35:38, 20:32] == 2).all() and (out[0, 12:22, 12:22] == 2).all()
    assert not out[1].any()
    assert lab[0, 1:10, 1:10].all()                            # input untouched
    np.testing.assert_array_equal(drop_small_components(lab, (0, 0)), lab)


def test_parse_min_component():
    assert parse_min_component("10x10") == (10, 10)
    assert parse_min_component("12x8") == (12, 8)
    assert parse_min_component("0") == (0, 0)
    for bad in ("ten", "10x", "1x2x3", "-1x3"):
        with pytest.raises(NpcaiError, match="min-component"):
            parse_min_component(bad)


def test_region_mask_and_bad_region():
    lab = np.array([[0, 1, 2]], np.uint8)
    assert region_mask(lab, "primary").tolist() == [[False, True, False]]
    assert region_mask(lab, "nodes").tolist() == [[False, False, True]]
    assert region_mask(lab, "both").tolist() == [[False, True, True]]
    with pytest.raises(NpcaiError, match="primary, nodes, both"):
        region_mask(lab, "tumor")


def test_square_window_contains_the_box():
    box = (5, 10, 12, 30)            # 7 rows x 20 cols
    y0, x0, side = square_window(box)
    assert side == 20 and x0 == 10 and y0 <= 5 and y0 + side >= 12
    y0, x0, side = square_window(box, (3, 3))
    assert side == 26 and y0 <= 2 and x0 == 7
    assert bounding_box(np.zeros((4, 4), bool)) is None


def test_max_area_picks_the_k_largest_slices():
    areas = [0, 30, 5, 50, 40, 0, 10, 45]
    region = np.zeros((len(areas), 10, 10), bool)
    for k, a in enumerate(areas):
        region[k].flat[:a] = True
    assert select_slices(region, "max-area:3").tolist() == [3, 4, 7]
    assert select_slices(region, "max-area:1").tolist() == [3]
    assert select_slices(region, "max-area:20").tolist() == [1, 2, 3, 4, 6, 7]
    assert select_slices(region, "tumour").tolist() == [1, 2, 3, 4, 6, 7]
    assert select_slices(region, "all").tolist() == list(range(8))


@pytest.mark.parametrize("bad", ["max-area", "max-area:0", "largest", "max-area:x"])
def test_bad_slice_rules_fail_clearly(bad):
    with pytest.raises(NpcaiError, match="tumour, max-area:K"):
        parse_slice_rule(bad)
