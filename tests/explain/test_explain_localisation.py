"""Localisation shares: partition of the slice, distances in native px and mm, uniform baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from npcai.errors import NpcaiError
from npcai.explain.localisation import (RoiGeometry, band_mask, band_share, energy_shares, flatten_shares,
                                        region_names, roi_geometry, uniform_shares)


def _labels(size=64):
    labels = np.zeros((size, size), np.uint8)
    labels[20:30, 20:30] = 1
    labels[44:48, 40:52] = 2
    return labels


def test_region_names():
    assert region_names("px") == ["tumour", "nodes", "band_0_5px", "band_5_10px", "band_10_20px",
                                  "band_20_40px", "band_gt40px"]
    assert region_names("mm") == ["tumour", "nodes", "band_0_3mm", "band_3_5mm", "band_5_10mm",
                                  "band_10_20mm", "far"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shares_sum_to_one_on_both_scales(seed):
    rng = np.random.default_rng(seed)
    cam = rng.normal(size=(64, 64))          # negative part ignored
    g = RoiGeometry(native_px=rng.uniform(0.5, 4), pixel_mm=(rng.uniform(0.3, 1), rng.uniform(0.3, 1)))
    shares = energy_shares(cam, _labels(), g)
    for scale in ("px", "mm"):
        assert sum(shares[scale].values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in shares[scale].values())
    assert sum(uniform_shares(_labels(), g)["px"].values()) == pytest.approx(1.0)


def test_bands_use_native_pixels_and_millimetres():
    labels = np.zeros((1, 101), np.uint8)
    labels[0, 0] = 1                                   # a 1-row strip: distance = column index
    cam = np.zeros((1, 101))
    cam[0, 3] = 1.0                                    # 3 ROI px from the tumour
    # one ROI pixel = 2 native px = 1.5 mm: 6 native px, 4.5 mm
    shares = energy_shares(cam, labels, RoiGeometry(native_px=2.0, pixel_mm=(1.5, 1.5)))
    assert shares["px"]["band_5_10px"] == 1.0
    assert shares["mm"]["band_3_5mm"] == 1.0
    # the uniform baseline is each region's area fraction
    uni = uniform_shares(labels, RoiGeometry(native_px=1.0, pixel_mm=(1.0, 1.0)))["px"]
    assert uni["tumour"] == pytest.approx(1 / 101)
    assert uni["band_0_5px"] == pytest.approx(5 / 101)   # distances 1..5 (bands are (a, b])
    assert uni["band_gt40px"] == pytest.approx(60 / 101)


def test_column_spacing_is_used_for_columns():
    labels = np.zeros((41, 41), np.uint8)
    labels[20, 20] = 1
    cam = np.zeros((41, 41))
    cam[20, 24] = 1.0                                  # 4 px along the row direction: columns
    shares = energy_shares(cam, labels, RoiGeometry(native_px=1.0, pixel_mm=(0.5, 2.0)))
    assert shares["mm"]["band_5_10mm"] == 1.0          # 4 columns x 2 mm = 8 mm


def test_slice_without_lesion_and_zero_map_give_nan():
    g = RoiGeometry(1.0, (1.0, 1.0))
    shares = energy_shares(np.ones((8, 8)), np.zeros((8, 8), np.uint8), g)
    assert shares["px"]["tumour"] == 0 and np.isnan(shares["px"]["band_0_5px"])
    assert all(np.isnan(v) for v in energy_shares(np.zeros((8, 8)), _labels(8), g)["mm"].values())


def test_shape_mismatch_is_an_error():
    with pytest.raises(NpcaiError, match="must be the same"):
        energy_shares(np.ones((8, 8)), np.zeros((8, 9)), RoiGeometry(1.0, (1.0, 1.0)))


def test_band_share_against_uniform():
    labels = np.zeros((64, 64), np.uint8)
    labels[28:36, 28:36] = 1
    g = RoiGeometry(native_px=2.0, pixel_mm=(1.0, 1.0))
    yy, xx = np.mgrid[:64, :64]
    d = np.maximum(np.maximum(28 - yy, yy - 35), np.maximum(28 - xx, xx - 35))   # Chebyshev, ROI px
    cam = ((d >= 3) & (d <= 4)).astype(float)          # a square ring 3-4 ROI px = 6-8 native px out
    share, uniform = band_share(cam, labels, g, (4, 10))          # native px
    assert share > 0.95 and uniform < 0.2
    assert band_share(np.ones((64, 64)), labels, g, (4, 10))[0] == pytest.approx(uniform)
    with pytest.raises(NpcaiError, match="inner < outer"):
        band_share(cam, labels, g, (10, 4))


def test_roi_geometry_from_index_row_and_flatten():
    row = pd.Series({"crop_size": 96, "pixel_mm": 0.75, "pixel_mm_col": 0.8})
    g = roi_geometry(row, 64)
    assert g.native_px == 1.5 and g.pixel_mm == (0.75, 0.8)
    with pytest.raises(NpcaiError, match="crop_size"):
        roi_geometry({"pixel_mm": 1.0}, 64)
    flat = flatten_shares(energy_shares(np.ones((64, 64)), _labels(), g))
    assert list(flat)[:3] == ["share_tumour", "share_nodes", "share_band_0_5px"] and "share_far" in flat


def test_band_mask_in_mm_uses_pixel_spacing():
    labels = np.zeros((1, 40), np.uint8)
    labels[0, 0] = 1
    g = RoiGeometry(native_px=1.0, pixel_mm=(1.0, 0.5))
    ring = band_mask(labels, g, (2.0, 4.0), unit="mm")
    assert np.flatnonzero(ring[0]).tolist() == [5, 6, 7, 8]     # columns 5-8 = 2.5-4 mm
    assert band_mask(np.zeros((4, 4), np.uint8), g, (1, 2)) is None
