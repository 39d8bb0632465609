"""Localisation shares: partition of the slice, distances in native px and mm, uniform baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from npcai.errors import NpcaiError
from npcai.explain.localisation import (RoiGeometry, band_mask, band_share, energy_shares, excluded_share,
                                        flatten_shares, informative_pixels, region_names, roi_geometry,
                                        uniform_shares)


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


# --------------------------------------------------------------------------- padding and air
def _head(size=64, pad=8):
    """A slice as robust normalisation leaves it: tissue disc (with a dark airway inside) on the
    clipped air floor, and zeroed padding in the first ``pad`` rows."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    body = (yy - 36) ** 2 + (xx - 32) ** 2 <= 20 ** 2
    image = np.full((size, size), -1.5, np.float32)            # the floor: clipped background
    image[body] = rng.normal(0.3, 0.6, body.sum()).clip(-1.2, None)
    airway = (yy - 36) ** 2 + (xx - 32) ** 2 <= 4 ** 2
    image[airway] = -1.5                                       # internal air sits on the floor too
    image[:pad] = 0.0
    return image, body


def test_informative_pixels_leave_out_padding_and_outside_air_only():
    image, body = _head()
    valid = informative_pixels(image[None])
    assert not valid[:8].any()                                 # padding
    assert (valid == body).all()                               # air outside gone, the airway kept
    assert (informative_pixels(image, air=False) == (image != 0)).all()
    # a crop inside the body has no air plateau: only padding is excluded
    inside = image.copy()
    inside[~body] = 0.2
    inside[:8] = 0.0
    assert (informative_pixels(inside) == (inside != 0)).all()
    flat = np.zeros((16, 16), np.float32)
    flat[4:12, 4:12] = 1.0                                     # no contrast inside the kept region
    assert (informative_pixels(flat) == (flat != 0)).all()
    with pytest.raises(NpcaiError, match=r"expected shape \(C, H, W\)"):
        informative_pixels(np.zeros((1, 1, 4, 4)))


def test_padding_and_air_are_out_of_the_shares_and_the_uniform_baseline():
    image, body = _head()
    labels = np.zeros(image.shape, np.uint8)
    labels[30:38, 26:34] = 1
    g = RoiGeometry(native_px=1.0, pixel_mm=(1.0, 1.0))
    valid = informative_pixels(image)
    # a CAM that peaks in the padding and the air, plus uniform attention on the body
    cam = np.where(body, 1.0, 0.0)
    cam[:8] = 50.0
    cam[60:, :4] = 50.0
    with_air = energy_shares(cam, labels, g)
    shares = energy_shares(cam, labels, g, valid=valid)
    uniform = uniform_shares(labels, g, valid=valid)
    assert with_air["px"]["band_20_40px"] > 0.9                # the padding looked like attention 20-40 px out
    for scale in ("px", "mm"):                                 # on the body the CAM is uniform: shares = baseline
        assert shares[scale] == pytest.approx(uniform[scale])
        assert sum(shares[scale].values()) == pytest.approx(1.0)
    assert uniform["px"]["tumour"] == pytest.approx(64 / body.sum())
    assert excluded_share(cam, valid) == pytest.approx(cam[~body].sum() / cam.sum())
    assert np.isnan(excluded_share(np.zeros_like(cam), valid))
    share, base = band_share(cam, labels, g, (0, 5), valid=valid)
    assert share == pytest.approx(base)
    assert np.isnan(energy_shares(np.where(body, 0.0, 1.0), labels, g, valid=valid)["px"]["tumour"])
    with pytest.raises(NpcaiError, match="valid-pixel mask shape"):
        energy_shares(cam, labels, g, valid=valid[:-1])


def test_informative_pixels_on_phantom_roi_images(small_cohort, tmp_path):
    import shutil

    from npcai.imaging.roi_cache import RoiDataset, build_roi

    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort, ignore=shutil.ignore_patterns("roi"))
    build_roi(cohort, "orig", "original", size=64)
    build_roi(cohort, "exp", "expand:10px", size=64)
    orig, exp = RoiDataset.open(cohort, "orig"), RoiDataset.open(cohort, "exp")
    for ds in (orig, exp):
        for i in range(len(ds.index)):
            image, labels = ds[i]
            valid = informative_pixels(image)
            assert valid[labels > 0].all()                     # every lesion pixel counts
            assert not valid[np.all(image == 0, axis=0)].any()
            if ds is orig:
                assert 0.2 < (~valid).mean() < 0.9             # the air around the head is left out
