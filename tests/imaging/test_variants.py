"""Variant strings and applying a variant to one slice."""
from __future__ import annotations

import numpy as np
import pytest

from npcai.errors import NpcaiError
from npcai.imaging.masks import expand_mask
from npcai.imaging.normalise import normalise_volume, parse_normalisation
from npcai.imaging.variants import Variant, apply_variant, crop_square, parse_variant


@pytest.mark.parametrize("text, expected", [
    ("original", Variant("original")),
    ("segmented", Variant("segmented")),
    ("expand:20px", Variant("expand", 20.0, "px")),
    ("expand:3mm", Variant("expand", 3.0, "mm")),
    ("expand:2.5mm", Variant("expand", 2.5, "mm")),
    ("bbox", Variant("bbox")),
    ("bbox:10px", Variant("bbox", 10.0, "px")),
    ("bbox:3mm", Variant("bbox", 3.0, "mm")),
    ("bbox-expand:5px", Variant("bbox-expand", 5.0, "px")),
    (" Expand:5PX ", Variant("expand", 5.0, "px")),
])
def test_parse_variant_round_trips(text, expected):
    v = parse_variant(text)
    assert v == expected
    assert parse_variant(str(v)) == v


@pytest.mark.parametrize("bad", ["", "expand", "expand:20", "expand:px", "expand:-3px", "expand:0px",
                                 "bbox:", "bbox-expand", "segment", "original:5px", "expand:5cm",
                                 "expand:5px:2"])
def test_bad_variant_strings_fail_clearly(bad):
    with pytest.raises(NpcaiError) as err:
        parse_variant(bad)
    msg = str(err.value)
    assert "\n" not in msg
    assert ("original, segmented, expand:Npx" in msg) or "segmented" in msg


def _slice():
    rng = np.random.default_rng(3)
    image = rng.normal(0, 1, (2, 50, 40)).astype(np.float32) + 2.0   # nothing is 0 by chance
    labels = np.zeros((50, 40), np.uint8)
    labels[20:30, 8:18] = 1
    labels[10:16, 30:36] = 2
    return image, labels


def test_segmented_keeps_only_mask_pixels():
    image, labels = _slice()
    region = labels == 1
    roi = apply_variant(image, labels, region, "segmented", size=50, pixel_mm=(1, 1))
    assert roi.crop == (0, -5, 50)                                 # 50x40 centred in a 50 square
    native = crop_square(image, 0, -5, 50)
    keep = crop_square(region, 0, -5, 50)
    np.testing.assert_array_equal(roi.image[:, keep], native[:, keep])
    assert (roi.image[:, ~keep] == 0).all()
    np.testing.assert_array_equal(roi.labels, crop_square(labels, 0, -5, 50))


def test_original_keeps_everything_and_expand_keeps_the_ring():
    image, labels = _slice()
    region = labels > 0
    roi = apply_variant(image, labels, region, "original", size=50, pixel_mm=(1, 1))
    np.testing.assert_array_equal(roi.image, crop_square(image, 0, -5, 50))
    roi = apply_variant(image, labels, region, "expand:4px", size=50, pixel_mm=(1, 1))
    keep = crop_square(expand_mask(region, 4), 0, -5, 50)
    assert (roi.image[:, ~keep] == 0).all() and (roi.image[:, keep] != 0).all()


@pytest.mark.parametrize("variant", ["bbox", "bbox:3px", "bbox-expand:4px", "bbox:2mm"])
def test_bbox_window_contains_the_whole_expanded_mask(variant):
    image, labels = _slice()
    region = labels > 0
    v = parse_variant(variant)
    pixel_mm = (0.8, 0.5)
    roi = apply_variant(image, labels, region, v, size=64, pixel_mm=pixel_mm)
    y0, x0, side = roi.crop
    grown = expand_mask(region, v.expansion, v.unit, pixel_mm) if v.expansion else region
    rows, cols = np.nonzero(grown)
    assert y0 <= rows.min() and rows.max() < y0 + side
    assert x0 <= cols.min() and cols.max() < x0 + side
    if v.margin:                                                   # margin on every side
        mr, mc = v.to_pixels(v.margin, pixel_mm)
        mr, mc = int(np.ceil(mr)), int(np.ceil(mc))
        assert y0 <= rows.min() - mr and rows.max() + mr < y0 + side
        assert x0 <= cols.min() - mc and cols.max() + mc < x0 + side
    # the rectangle's content is kept, everything else in the square is zero padding
    assert roi.image.shape == (2, 64, 64)
    assert roi.kept.any() and (roi.image[:, ~roi.kept] == 0).all()
    assert (roi.labels == 1).any() and (roi.labels == 2).any()


def test_frame_bbox_crops_around_the_expanded_region():
    image, labels = _slice()
    region = labels == 1
    roi = apply_variant(image, labels, region, "expand:3px", size=32, pixel_mm=(1, 1), frame="bbox")
    assert roi.crop == (17, 5, 16)                                  # rows 17..32, cols 5..20
    with pytest.raises(NpcaiError, match="frame"):
        apply_variant(image, labels, region, "bbox", size=32, pixel_mm=(1, 1), frame="slice")
    with pytest.raises(NpcaiError, match="frame"):
        apply_variant(image, labels, region, "segmented", size=32, pixel_mm=(1, 1), frame="crop")


def test_robust_normalisation_z_scores_body_and_handles_ct():
    rng = np.random.default_rng(0)
    ct = np.full((4, 40, 40), -1024.0, np.float32)                 # air padding, HU
    ct[:, 5:35, 5:35] = rng.normal(40, 30, (4, 30, 30))            # soft tissue
    ct[0, 10, 10] = 3000.0                                          # metal spike
    z = normalise_volume(ct, "robust")
    body = z[:, 5:35, 5:35]
    assert abs(float(body.mean())) < 0.05 and abs(float(body.std()) - 1) < 0.1
    assert z.max() < 4.0                                            # the spike was clipped
    w = normalise_volume(ct, "window:40,400")
    assert w.min() == -1.0 and w.max() == 1.0
    assert str(parse_normalisation("robust:1-99")) == "robust:1-99"
    for bad in ("zscore", "robust:99-1", "window:40,0"):
        with pytest.raises(NpcaiError, match="normalisation"):
            parse_normalisation(bad)


def test_empty_region_slice_uses_the_scan_box_and_is_zero_when_masked():
    image, labels = _slice()
    empty = np.zeros_like(labels, bool)
    roi = apply_variant(image, labels, empty, "segmented", size=32, pixel_mm=(1, 1), frame="bbox",
                        fallback_box=(20, 8, 30, 18))
    assert roi.crop == (20, 8, 10) and (roi.image == 0).all()
    roi = apply_variant(image, labels, empty, "original", size=32, pixel_mm=(1, 1), frame="bbox",
                        fallback_box=(20, 8, 30, 18))
    assert roi.crop == (20, 8, 10) and (roi.image != 0).all()
