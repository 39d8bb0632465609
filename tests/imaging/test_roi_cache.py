"""The ROI cache on a tiny hand-made cohort: format, content, caching, channels, errors."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import SimpleITK as sitk

from npcai.cohort.model import Cohort
from npcai.errors import NpcaiError
from npcai.imaging.masks import drop_small_components, expand_mask, region_mask
from npcai.imaging.roi_cache import INDEX_COLUMNS, RoiDataset, build_roi
from npcai.imaging.variants import crop_square

from .tiny import write_tiny_cohort


def test_build_writes_the_contract_format(tiny_cohort, caplog):
    with caplog.at_level(logging.WARNING, logger="npcai.imaging.roi_cache"):
        out = build_roi(tiny_cohort, "seg", "segmented", region="both", size=32)
    assert "skipped patient P0004" in caplog.text
    assert out == tiny_cohort / "roi" / "seg"
    images = np.load(out / "images.npy", mmap_mode="r")
    masks = np.load(out / "masks.npy", mmap_mode="r")
    assert isinstance(images, np.memmap) and images.dtype == np.float16 and masks.dtype == np.uint8
    ds = RoiDataset.open(tiny_cohort, "seg")
    assert list(ds.index.columns) == INDEX_COLUMNS
    assert ds.images.shape == (len(ds.index), 1, 32, 32) and ds.masks.shape == (len(ds.index), 32, 32)
    # P0001 loses slice 1 (8x8 tumour < 10x10), P0002/3 keep slices 1-3; P0004 only has a speck
    assert ds.index.groupby("patient_id").slice_index.apply(list).to_dict() == {
        "P0001": [2, 3], "P0002": [1, 2, 3], "P0003": [1, 2, 3]}
    assert ds.params["skipped"] == {"P0004": "both region empty on every slice after dropping "
                                              "components under 10x10 px"}
    for key in ("variant", "region", "slices", "sequences", "timepoint", "mask", "size",
                "min_component", "normalisation", "frame", "input_hash", "n_slices", "n_patients"):
        assert key in ds.params
    assert ds.params["n_slices"] == 8 and ds.params["n_patients"] == 3
    row = ds.index.iloc[0]
    assert row.tumour_area_px == 144 and row.nodes_area_px == 72 and row.mask_area_px == 216
    assert row.position_mm == pytest.approx(-10.0 + 2 * 3.0)
    assert row.crop_size == 48 and row.pixel_mm == pytest.approx(48 * 0.8 / 32)
    assert row.pixel_mm_col == pytest.approx(48 * 0.5 / 32)
    image, labels = ds[0]
    assert image.dtype == np.float32 and labels.shape == (32, 32)
    assert set(np.unique(ds.masks)) == {0, 1, 2}
    assert not (np.asarray(ds.masks[:, 28:, :8]) == 1).any()      # the 3x3 speck was dropped


def test_segmented_and_expand_in_the_cache_keep_exactly_the_region(tiny_cohort):
    cohort = Cohort.load(tiny_cohort)
    for variant in ("segmented", "expand:2mm"):
        name = variant.replace(":", "")
        build_roi(tiny_cohort, name, variant, region="primary", size=48)   # native: no resize
        ds = RoiDataset.open(tiny_cohort, name)
        for i, row in ds.index.iterrows():
            scan = cohort.scan(row.scan_id)
            labels = drop_small_components(cohort.read_mask(scan)[row.slice_index], (10, 10))
            region = region_mask(labels, "primary")
            if variant != "segmented":
                region = expand_mask(region, 2.0, "mm", (0.8, 0.5))
            keep = crop_square(region, row.crop_y0, row.crop_x0, row.crop_size)
            img = np.asarray(ds.images[i, 0], np.float32)
            assert (img[~keep] == 0).all()
            assert (img[keep] != 0).mean() > 0.95        # content kept (z-scores are rarely exactly 0)
            np.testing.assert_array_equal(ds.masks[i], crop_square(labels, row.crop_y0, row.crop_x0, 48))


def test_bbox_variant_crop_holds_the_expanded_mask(tiny_cohort):
    cohort = Cohort.load(tiny_cohort)
    build_roi(tiny_cohort, "bb", "bbox-expand:3px", region="both", size=64)
    ds = RoiDataset.open(tiny_cohort, "bb")
    assert ds.params["frame"] == "bbox"
    for _, row in ds.index.iterrows():
        labels = drop_small_components(cohort.read_mask(cohort.scan(row.scan_id))[row.slice_index], (10, 10))
        rows, cols = np.nonzero(expand_mask(labels > 0, 3))
        assert row.crop_y0 <= rows.min() and rows.max() < row.crop_y0 + row.crop_size
        assert row.crop_x0 <= cols.min() and cols.max() < row.crop_x0 + row.crop_size
        assert row.crop_size == max(np.ptp(rows), np.ptp(cols)) + 1


def test_max_area_3_picks_the_three_largest_slices(tmp_path):
    root = write_tiny_cohort(tmp_path / "c", n_slices=6)
    build_roi(root, "all", "segmented", region="both", slices="tumour", size=32, min_component=0)
    build_roi(root, "max3", "segmented", region="both", slices="max-area:2", size=32, min_component=0)
    full = RoiDataset.open(root, "all").index
    top = RoiDataset.open(root, "max3").index
    for pid, g in full.groupby("patient_id"):
        expected = sorted(g.sort_values(["mask_area_px", "slice_index"], ascending=[False, True])
                          .slice_index.head(2))
        assert top[top.patient_id == pid].slice_index.tolist() == expected
    build_roi(root, "m3", "segmented", region="both", slices="max-area:3", size=32, min_component=0)
    m3 = RoiDataset.open(root, "m3").index
    assert m3.groupby("patient_id").size().to_dict() == {"P0001": 3, "P0002": 3, "P0003": 3, "P0004": 1}


def test_cache_is_deterministic_and_reads_back_bit_exact(tiny_cohort):
    from npcai.imaging.normalise import normalise_volume
    from npcai.imaging.variants import apply_variant

    a = build_roi(tiny_cohort, "a", "expand:3px", region="both", size=40)
    b = build_roi(tiny_cohort, "b", "expand:3px", region="both", size=40)
    for f in ("images.npy", "masks.npy", "index.csv"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert json.loads((a / "variant.json").read_text())["input_hash"] == \
        json.loads((b / "variant.json").read_text())["input_hash"]
    # what was written is exactly what the variant produces, rounded to float16
    ds = RoiDataset.open(tiny_cohort, "a")
    cohort = Cohort.load(tiny_cohort)
    row = ds.index.iloc[3]
    scan = cohort.scan(row.scan_id)
    vol = normalise_volume(cohort.read_array(scan))
    labels = drop_small_components(cohort.read_mask(scan), (10, 10))
    roi = apply_variant(vol[row.slice_index][None], labels[row.slice_index],
                        labels[row.slice_index] > 0, "expand:3px", size=40, pixel_mm=(0.8, 0.5))
    np.testing.assert_array_equal(np.asarray(ds.images[3]), roi.image.astype(np.float16))


def test_rebuild_is_a_no_op_and_changed_inputs_rebuild(tiny_cohort, caplog):
    out = build_roi(tiny_cohort, "e", "expand:2px", size=32)
    stamp = os.stat(out / "images.npy").st_mtime_ns
    hash1 = RoiDataset.open(tiny_cohort, "e").input_hash
    with caplog.at_level(logging.INFO, logger="npcai.imaging.roi_cache"):
        build_roi(tiny_cohort, "e", "expand:2px", size=32)
    assert "up to date" in caplog.text
    assert os.stat(out / "images.npy").st_mtime_ns == stamp
    # change one patient's mask: the cache notices and rebuilds
    path = tiny_cohort / "masks" / "P0002_pre_T1c.nii.gz"
    m = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(m)
    arr[2, 28:38, 5:15] = 1                     # a new 10x10 component (apart from the speck)
    m2 = sitk.GetImageFromArray(arr)
    m2.CopyInformation(m)
    sitk.WriteImage(m2, str(path))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="npcai.imaging.roi_cache"):
        build_roi(tiny_cohort, "e", "expand:2px", size=32)
    assert "rebuilding" in caplog.text
    ds = RoiDataset.open(tiny_cohort, "e")
    assert ds.input_hash != hash1
    row = ds.index[(ds.index.patient_id == "P0002") & (ds.index.slice_index == 2)].iloc[0]
    assert row.tumour_area_px == 196 + 100
    # changed parameters are refused (runs trained on "e" would read new data) unless overwrite,
    # and nothing partial is left behind
    with pytest.raises(NpcaiError, match=r"ROI dataset e .* built with other parameters \(size 32 -> 48\)"):
        build_roi(tiny_cohort, "e", "expand:2px", size=48)
    assert RoiDataset.open(tiny_cohort, "e").images.shape[-1] == 32
    build_roi(tiny_cohort, "e", "expand:2px", size=48, overwrite=True)
    assert RoiDataset.open(tiny_cohort, "e").images.shape[-1] == 48
    assert [p.name for p in (tiny_cohort / "roi").iterdir()] == ["e"]


def test_cli_refuses_to_replace_a_dataset_built_with_other_parameters(tiny_cohort, cli):
    r = cli("roi", "build", tiny_cohort, "--variant", "expand:2px", "--name", "e", "--size", "32")
    assert r.code == 0, r
    stamp = os.stat(tiny_cohort / "roi" / "e" / "images.npy").st_mtime_ns
    r = cli("roi", "build", tiny_cohort, "--variant", "expand:4px", "--name", "e", "--size", "32")
    assert r.code == 2 and "built with other parameters (variant 'expand:2px' -> 'expand:4px')" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert os.stat(tiny_cohort / "roi" / "e" / "images.npy").st_mtime_ns == stamp
    r = cli("roi", "build", tiny_cohort, "--variant", "expand:4px", "--name", "e", "--size", "32", "--overwrite")
    assert r.code == 0, r
    assert json.loads((tiny_cohort / "roi" / "e" / "variant.json").read_text())["variant"] == "expand:4px"


def test_sequences_become_channels_resampled_onto_the_first_grid(tmp_path):
    root = write_tiny_cohort(tmp_path / "c", sequences=("T1c", "T2"))
    cohort = Cohort.load(root)
    # put P0001's T2 on a coarser grid (same physical extent): it must be resampled
    scan = cohort.scan("P0001_pre_T2")
    img = sitk.ReadImage(str(root / scan.image))
    coarse = sitk.Resample(img, [20, 24, 5], sitk.Transform(), sitk.sitkLinear, img.GetOrigin(),
                           (1.0, 1.6, 3.0), img.GetDirection(), 0.0, img.GetPixelID())
    sitk.WriteImage(coarse, str(root / scan.image))
    build_roi(root, "two", "segmented", sequences="T1c,T2", size=32)
    ds = RoiDataset.open(root, "two")
    assert ds.images.shape[1] == 2 and ds.params["channels"] == ["T1c", "T2"]
    assert (ds.index.sequences == "T1c+T2").all()
    first = np.asarray(ds.images[ds.rows_of("P0001")[0]], np.float32)
    inside = first[0] != 0
    assert (first[1][inside] != 0).mean() > 0.9 and (first[1][~inside] == 0).all()
    with pytest.raises(NpcaiError, match="repeats"):
        build_roi(root, "x", "segmented", sequences="T1c,T1c")


def test_timepoint_both_stacks_pre_and_post_only_on_matching_grids(tmp_path):
    root = write_tiny_cohort(tmp_path / "c", post=True)
    build_roi(root, "pp", "segmented", timepoint="both", size=32)
    ds = RoiDataset.open(root, "pp")
    assert ds.params["channels"] == ["pre:T1c", "post:T1c"] and ds.images.shape[1] == 2
    img = sitk.ReadImage(str(root / "images" / "P0002_post_T1c.nii.gz"))
    img.SetOrigin((5.0, 0.0, -10.0))
    sitk.WriteImage(img, str(root / "images" / "P0002_post_T1c.nii.gz"))
    with pytest.raises(NpcaiError, match="separate ROI datasets"):
        build_roi(root, "pp2", "segmented", timepoint="both", size=32)


def test_bad_inputs_fail_with_one_clear_line(tiny_cohort):
    cases = [
        (dict(variant="expand:20"), "not valid"),
        (dict(variant="segmented", size=16), "at least 32"),
        (dict(variant="segmented", region="tumor"), "--region"),
        (dict(variant="segmented", slices="max-area"), "--slices"),
        (dict(variant="segmented", mask="auto"), "npcai segment predict"),
        (dict(variant="segmented", timepoint="during"), "--timepoint"),
        (dict(variant="segmented", sequences="T2"), "no patient has a usable"),
        (dict(variant="segmented", min_component="200x200"), "no patient has a usable"),
        (dict(variant="bbox", frame="slice"), "--frame"),
        (dict(variant="segmented", normalise="zscore"), "normalisation"),
    ]
    for kwargs, match in cases:
        variant = kwargs.pop("variant")
        with pytest.raises(NpcaiError, match=match) as err:
            build_roi(tiny_cohort, "bad", variant, **kwargs)
        assert "\n" not in str(err.value)
    assert not (tiny_cohort / "roi" / "bad").exists()
    with pytest.raises(NpcaiError, match="no ROI dataset 'nothing'"):
        RoiDataset.open(tiny_cohort, "nothing")
    with pytest.raises(NpcaiError, match="not an npcai cohort"):
        build_roi(tiny_cohort / "images", "x", "segmented")


def test_batch_returns_torch_tensors_in_the_order_asked(tiny_cohort):
    build_roi(tiny_cohort, "o", "original", region="both", size=32)
    ds = RoiDataset.open(tiny_cohort, "o")
    x, y = ds.batch([5, 1, 3])
    assert x.dtype.is_floating_point and tuple(x.shape) == (3, 1, 32, 32) and tuple(y.shape) == (3, 32, 32)
    for j, i in enumerate([5, 1, 3]):
        np.testing.assert_array_equal(x[j].numpy(), ds[i][0])
        np.testing.assert_array_equal(y[j].numpy(), ds[i][1])


def test_mask_auto_reads_the_automatic_masks(tiny_cohort):
    cohort = Cohort.load(tiny_cohort)
    for scan in cohort.scans():
        m = sitk.ReadImage(str(cohort.path(scan.mask)))
        arr = sitk.GetArrayFromImage(m)
        auto = np.zeros_like(arr)
        auto[2, 10:22, 10:22] = 1                    # one 12x12 tumour on slice 2 only
        a = sitk.GetImageFromArray(auto)
        a.CopyInformation(m)
        scan.auto_mask = f"masks/{scan.scan_id}_auto.nii.gz"
        sitk.WriteImage(a, str(cohort.path(scan.auto_mask)))
    cohort.save()
    build_roi(tiny_cohort, "auto", "segmented", mask="auto", size=48)
    ds = RoiDataset.open(tiny_cohort, "auto")
    assert ds.params["mask"] == "auto" and len(ds) == 4
    assert (ds.index.slice_index == 2).all() and (ds.index.tumour_area_px == 144).all()


def test_preview_never_writes_over_a_cohort_file(tiny_cohort, cli):
    before = (tiny_cohort / "cohort.json").read_bytes()
    r = cli("roi", "preview", tiny_cohort, "--patient", "P0001", "--out", tiny_cohort / "cohort.json")
    assert r.code == 2 and "give a path ending in .png" in r.stderr
    assert (tiny_cohort / "cohort.json").read_bytes() == before
