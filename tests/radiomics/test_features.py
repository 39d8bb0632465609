"""Feature regions, the pyradiomics extractor and the cached feature table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from npcai.errors import NpcaiError
from npcai.radiomics.extractor import FEATURE_CLASSES, ExtractionSettings, SliceExtractor
from npcai.radiomics.regions import feature_region
from npcai.radiomics.table import extract_features, features_dir, open_features


def _phantom_slice(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(1.0, 0.3, (32, 32)).astype(np.float32)
    yy, xx = np.mgrid[:32, :32]
    region = (yy - 16) ** 2 / 81 + (xx - 15) ** 2 / 49 <= 1          # an ellipse, 9 x 7 px semi-axes
    image[region] += 0.5 * np.sin(xx[region] / 2.0)                  # some texture inside
    return image, region


def test_feature_region_is_the_kept_region_plus_the_roi_labels():
    image = np.zeros((2, 6, 6), np.float32)
    image[0, 1:4, 1:4] = 1.0
    image[1, 4, 4] = -2.0                       # another channel's kept pixel counts too
    labels = np.zeros((6, 6), np.uint8)
    labels[2, 2] = 1                             # inside, already kept
    labels[5, 0] = 1                             # tumour pixel whose intensity is exactly 0
    labels[0, 5] = 2                             # nodes: not in a primary ROI
    got = feature_region(image, labels, "primary")
    assert got.sum() == 9 + 1 + 1 and got[5, 0] and not got[0, 5]
    assert feature_region(image, labels, "both")[0, 5]
    assert feature_region(image, labels, "primary", uses_mask=False).sum() == 10


def test_slice_features_are_finite_deterministic_and_cover_every_class():
    image, region = _phantom_slice()
    ex = SliceExtractor(ExtractionSettings(bin_count=16))
    a = ex.features(image, region, pixel_mm=(0.9, 0.8))
    b = SliceExtractor(ExtractionSettings(bin_count=16)).features(image, region, pixel_mm=(0.9, 0.8))
    assert a == b
    assert len(a) > 80 and all(np.isfinite(v) for v in a.values())
    classes = {k.split("_")[1] for k in a}
    assert classes == set(FEATURE_CLASSES)
    # a shape feature in mm: the ellipse's area scales with the pixel size
    big = ex.features(image, region, pixel_mm=(1.8, 1.6))
    assert big["original_shape2D_PixelSurface"] == pytest.approx(4 * a["original_shape2D_PixelSurface"])
    # first-order mean is the region's mean intensity
    assert a["original_firstorder_Mean"] == pytest.approx(float(image[region].mean()), rel=1e-5)


def test_tiny_regions_and_bad_settings_are_refused():
    image, _ = _phantom_slice()
    region = np.zeros_like(image, bool)
    region[3, 3:6] = True
    with pytest.raises(NpcaiError, match="3 pixels"):
        SliceExtractor(ExtractionSettings()).features(image, region, pixel_mm=(1, 1))
    with pytest.raises(NpcaiError, match="bin"):
        ExtractionSettings(bin_count=1)
    with pytest.raises(NpcaiError, match="wavelet"):
        ExtractionSettings(classes=("wavelet",))


def test_feature_table_is_finite_cached_and_tied_to_the_roi(rad_cohort, monkeypatch):
    table = extract_features(rad_cohort, "pre")
    assert table.path == features_dir(rad_cohort, "pre")
    assert table.features.index.str.fullmatch(r"P\d{4}").all()           # pseudonyms only
    assert np.isfinite(table.features.to_numpy()).all()
    assert all(name.startswith("T1c__original_") for name in table.feature_names)
    assert (table.n_slices >= 1).all()
    slices = table.slices()
    assert len(slices) == table.meta["n_slices"] == int(table.n_slices.sum())
    first = table.features.index[0]
    mean = slices[slices.patient_id == first][table.feature_names].mean()
    np.testing.assert_allclose(table.features.loc[first].to_numpy(), mean.to_numpy(), rtol=1e-8)

    # cached: a second call computes nothing
    def no_extraction(*args, **kwargs):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(SliceExtractor, "features", no_extraction)
    again = extract_features(rad_cohort, "pre")
    assert again.sha256 == table.sha256
    assert open_features(rad_cohort, "pre").sha256 == table.sha256
    monkeypatch.undo()

    # another bin count is another table (re-extracted, deterministic)
    other = extract_features(rad_cohort, "pre", settings=ExtractionSettings(bin_count=8))
    assert other.sha256 != table.sha256
    back = extract_features(rad_cohort, "pre")
    assert back.sha256 == table.sha256

    # a table computed from another build of the ROI is refused
    meta_path = table.path / "extraction.json"
    meta = json.loads(meta_path.read_text())
    meta["roi"]["input_hash"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(NpcaiError, match="extract again"):
        open_features(rad_cohort, "pre")
    extract_features(rad_cohort, "pre", force=True)
    assert open_features(rad_cohort, "pre").sha256 == table.sha256


def test_cli_extract(cli, rad_cohort):
    r = cli("radiomics", "extract", rad_cohort, "--roi", "pre")
    assert r.code == 0, r
    assert "features x" in r.stdout and "patients" in r.stdout
    r = cli("radiomics", "extract", rad_cohort, "--roi", "nope")
    assert r.code == 2 and "no ROI dataset 'nope'" in r.stderr
