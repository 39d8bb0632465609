"""2.5D inputs, sampling of slices without the target, 3D post-processing, and that a run's
saved options are the ones evaluate/predict apply."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import yaml

from npcai.cohort.model import Cohort
from npcai.errors import NpcaiError
from npcai.segmentation.data import SliceDataset, SliceSampler, load_slices, neighbour_slices
from npcai.segmentation.postprocess import keep_largest_3d, postprocess

from .synthetic import make_cohort

SLICES = 6


@pytest.fixture(scope="module")
def gap_cohort(tmp_path_factory) -> Path:
    """6 patients, 6 slices each; the tumour/nodes only on slices 1-4 (slices 0 and 5 are empty)."""
    root = make_cohort(tmp_path_factory.mktemp("ctx") / "c", patients=6, size=32, slices=SLICES, seed=4)
    co = Cohort.load(root)
    for scan in co.scans():
        path = str(root / scan.mask)
        m = sitk.ReadImage(path)
        a = sitk.GetArrayFromImage(m)
        a[0] = 0
        a[-1] = 0
        out = sitk.GetImageFromArray(a)
        out.CopyInformation(m)
        sitk.WriteImage(out, path)
    # a marker intensity per slice, so the channels can be traced back to their slices
    for scan in co.scans():
        path = str(root / scan.image)
        im = sitk.ReadImage(path)
        a = sitk.GetArrayFromImage(im)
        a[:] = np.arange(SLICES, dtype=np.float32)[:, None, None] * 10
        out = sitk.GetImageFromArray(a)
        out.CopyInformation(im)
        sitk.WriteImage(out, path)
    return root


def test_neighbour_slices_repeat_the_edges():
    n = neighbour_slices(4, 2)
    assert n.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]
    assert neighbour_slices(3, 0).tolist() == [[0], [1], [2]]
    assert neighbour_slices(1, 1).tolist() == [[0, 0, 0]]
    with pytest.raises(NpcaiError, match="--context-slices"):
        neighbour_slices(3, -1)


def test_load_slices_builds_25d_channels_at_the_volume_edges(gap_cohort):
    s = load_slices(gap_cohort, labels="tumour", size=32, normalise="none", context=1, negatives=True)
    assert len(s) == 6 * SLICES and s.context == 1
    assert s.positive.sum() == 6 * 4 and not s.positive[s.index["slice_index"].isin([0, SLICES - 1])].any()
    ds = SliceDataset(s)
    for i, k in enumerate(s.index["slice_index"]):
        x, y = ds[i]
        assert x.shape == (3, 32, 32) and y.shape == (1, 32, 32)
        # channel c shows slice clip(k - 1 + c): the marker intensity is 10 * slice index
        want = [10 * min(max(k + d, 0), SLICES - 1) for d in (-1, 0, 1)]
        assert [float(x[c].mean()) for c in range(3)] == pytest.approx(want), k
    # a patient subset renumbers the neighbour rows: the same inputs as in the whole set
    pats = sorted(set(s.index["patient_id"]))[2:4]
    sub = s.subset(pats)
    rows = np.flatnonzero(s.index["patient_id"].isin(pats).to_numpy())
    assert len(sub) == 2 * SLICES
    for j, i in enumerate(rows):
        np.testing.assert_array_equal(sub.input(j), s.input(i))
    # 2D without negatives: only the slices with the target, one channel (as before)
    flat = load_slices(gap_cohort, labels="tumour", size=32, normalise="none")
    assert len(flat) == 6 * 4 and flat.context == 0 and flat.input(0).shape == (1, 32, 32)
    # context without negatives still reads whole scans (the neighbours), targets marked
    ctx_only = load_slices(gap_cohort, labels="tumour", size=32, normalise="none", context=2)
    assert len(ctx_only) == 6 * SLICES and ctx_only.input(0).shape == (5, 32, 32)


def test_slice_sampler_draws_negatives_in_proportion():
    positive = np.r_[np.ones(30, bool), np.zeros(100, bool)]
    sampler = SliceSampler(positive, negative_fraction=0.25, seed=1)
    assert len(sampler) == 40                                   # 10 / 40 = 25% without the target
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        rows = list(sampler)
        assert len(rows) == 40 and len(set(rows)) == 40
        assert set(range(30)) <= set(rows)                     # every positive slice, every epoch
        neg = {r for r in rows if r >= 30}
        assert len(neg) == 10
        epochs.append(neg)
    assert epochs[0] != epochs[1]                              # a fresh draw each epoch ...
    sampler.set_epoch(0)
    assert {r for r in sampler if r >= 30} == epochs[0]        # ... reproducible for a seed and epoch
    assert sorted(SliceSampler(positive)) == list(range(30))   # 0: the positive slices only
    assert len(SliceSampler(positive, negative_fraction=0.9)) == 130    # capped at every negative
    with pytest.raises(NpcaiError, match="--negative-fraction"):
        SliceSampler(positive, negative_fraction=1.0)


def test_keep_largest_3d_keeps_the_right_voxels():
    m = np.zeros((4, 8, 8), np.uint8)
    m[0:3, 1:4, 1:4] = 1            # 27 voxels
    m[3, 4, 4] = 1                  # touches the block only diagonally (26-connected): same body
    m[0, 6:8, 6:8] = 1              # 4 voxels, separate: dropped
    m[2:4, 6:8, 0:2] = 2            # nodes: two bodies, the larger stays
    m[0, 7, 3] = 2
    out = keep_largest_3d(m)
    want = np.zeros_like(m)
    want[0:3, 1:4, 1:4] = 1
    want[3, 4, 4] = 1
    want[2:4, 6:8, 0:2] = 2
    np.testing.assert_array_equal(out, want)
    assert keep_largest_3d(np.zeros((2, 3, 3), np.uint8)).sum() == 0
    # postprocess: the 2D small-component drop first (every 2x2 node patch and the lone
    # voxel fit inside 3x3 px), then the 3D step
    p = postprocess(m, min_component=(3, 3), largest_3d=True)
    assert (p == 1).sum() == 27 and (p == 2).sum() == 0
    assert (postprocess(m, min_component=(2, 2), largest_3d=True) == 2).sum() == 8
    np.testing.assert_array_equal(postprocess(m, min_component=(0, 0), largest_3d=False), m)


@pytest.fixture(scope="module")
def ctx_run(gap_cohort, tmp_path_factory):
    from npcai.segmentation.train import train_segmenter

    out = tmp_path_factory.mktemp("ctxrun") / "run"
    run = train_segmenter(gap_cohort, out, arch="unet", encoder="resnet18", encoder_depth=3, size=32,
                          batch_size=4, epochs=1, labels="tumour", normalise="none", context=1,
                          negative_fraction=0.3, min_component="0", keep_largest_3d=True, optimizer="adam")
    return run


def test_config_round_trip_and_predict_uses_saved_options(ctx_run, gap_cohort):
    from npcai.segmentation.predict import predict_volume, run_postprocessing
    from npcai.segmentation.train import load_segrun

    cfg = yaml.safe_load((ctx_run.path / "config.yaml").read_text())
    o = cfg["options"]
    assert (o["context"], o["negative_fraction"], o["min_component"], o["keep_largest_3d"]) == (1, 0.3, "0x0", True)
    assert cfg["input"]["channels"] == 3 and cfg["postprocess"]["keep_largest_3d"] is True
    assert ctx_run.summary["slices"]["train_without_target_per_epoch"] > 0
    run = load_segrun(ctx_run.path)
    assert run.module.hparams.in_channels == 3
    assert run_postprocessing(run) == ((0, 0), True)
    assert run_postprocessing(run, "3x3", False) == ((3, 3), False)

    seen = []

    class Probe(torch.nn.Module):
        """Records the input; predicts label 1 in two separate blobs on every slice."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.append(x.clone())
            logits = torch.zeros(len(x), 2, *x.shape[-2:])
            logits[:, 1, 4:20, 4:20] = 5.0        # a big body through every slice
            logits[:, 1, 26:30, 26:30] = 5.0      # a small one: also connected across slices
            logits[:, 0] = 1.0
            return logits + 0 * self.w

    run.module.model = Probe()
    vol = np.repeat(np.arange(SLICES, dtype=np.float32)[:, None, None] * 10, 32, 1).repeat(32, 2)
    pred = predict_volume(run, vol, batch_size=4)
    x = torch.cat(seen)
    assert x.shape == (SLICES, 3, 32, 32)
    means = x.mean((2, 3)).numpy()
    want = [[10 * min(max(k + d, 0), SLICES - 1) for d in (-1, 0, 1)] for k in range(SLICES)]
    np.testing.assert_allclose(means, want, atol=1e-3)          # the training input, edges repeated
    assert (pred[:, 26:30, 26:30] == 0).all() and (pred[:, 6:18, 6:18] == 1).all()   # largest 3D kept
    seen.clear()
    kept = predict_volume(run, vol, keep_largest_3d=False)
    assert (kept[:, 26:30, 26:30] == 1).all()


def test_crop_box_round_trip():
    from npcai.segmentation.data import crop_box, crop_stack, paste_crop

    assert crop_box(128, 128, (3.9, 3.9, 2.5), None) == (0, 0, 128, 128)
    box = crop_box(10, 12, (2.0, 1.0, 3.0), 6.0)         # 6 rows of 1 mm, 3 columns of 2 mm
    assert box == (2, 4, 6, 3)
    a = np.arange(2 * 10 * 12).reshape(2, 10, 12)
    c = crop_stack(a, box)
    np.testing.assert_array_equal(c, a[:, 2:8, 4:7])
    back = paste_crop(c, box, (10, 12))
    assert (back[:, 2:8, 4:7] == c).all() and back.sum() == c.sum()
    big = crop_box(4, 4, (1.0, 1.0), 6.0)                 # larger than the slice: padded, pasted back
    assert big == (-1, -1, 6, 6)
    b = np.ones((1, 4, 4), np.uint8)
    padded = crop_stack(b, big, fill=0)
    assert padded.shape == (1, 6, 6) and padded.sum() == 16 and padded[0, 0].sum() == 0
    np.testing.assert_array_equal(paste_crop(padded, big, (4, 4)), b)
    with pytest.raises(NpcaiError, match="--crop-mm"):
        crop_box(4, 4, (0.0, 1.0), 6.0)


def test_cropped_run_predicts_background_outside_the_crop(gap_cohort, tmp_path):
    from npcai.segmentation.predict import predict_volume
    from npcai.segmentation.train import train_segmenter

    run = train_segmenter(gap_cohort, tmp_path / "crop", arch="unet", encoder="resnet18", encoder_depth=3,
                          size=32, batch_size=4, epochs=1, labels="tumour", normalise="none", crop_mm=11.2,
                          min_component="0", optimizer="adam")        # 16 px of 0.7 mm rows, 14 of 0.8 mm cols
    assert yaml.safe_load((run.path / "config.yaml").read_text())["options"]["crop_mm"] == 11.2

    class Everywhere(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.zeros(len(x), 2, *x.shape[-2:])
            logits[:, 1] = 1.0
            return logits + 0 * self.w

    run.module.model = Everywhere()
    vol = np.zeros((3, 32, 32), np.float32)
    with pytest.raises(NpcaiError, match="spacing"):
        predict_volume(run, vol)
    pred = predict_volume(run, vol, spacing=(0.8, 0.7, 3.0))
    rows, cols = np.nonzero(pred[0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 23, 9, 22)
    assert (pred[:, 8:24, 9:23] == 1).all() and pred.sum() == 3 * 16 * 14


@pytest.mark.parametrize("args, text", [(["--negative-fraction", "1"], "--negative-fraction"),
                                        (["--context-slices", "9"], "--context-slices"),
                                        (["--crop-mm", "-5"], "--crop-mm"),
                                        (["--min-component", "ax3"], "--min-component")])
def test_cli_refuses_bad_options_in_one_line(gap_cohort, tmp_path, cli, args, text):
    r = cli("segment", "train", gap_cohort, "--out", tmp_path / "bad", "--no-pretrained", *args)
    assert r.code == 2, r
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


def test_spatial_augmentation_keeps_image_and_labels_aligned():
    from npcai.segmentation.data import random_affine

    y = torch.zeros(1, 32, 32, dtype=torch.int64)
    y[0, 8:20, 10:24] = 1
    x = torch.cat([y.float(), 2 * y.float(), y.float()])          # 3 channels that show the label
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(10):
        xa, ya = random_affine(x, y, rng)
        assert xa.shape == (3, 32, 32) and ya.shape == (1, 32, 32) and ya.dtype == torch.int64
        assert set(ya.unique().tolist()) <= {0, 1}
        agree = ((xa[0] > 0.5) == (ya[0] == 1)).float().mean()
        assert agree > 0.97                                          # the same transform on both
        torch.testing.assert_close(xa[1], 2 * xa[0])
        moved += int(not torch.equal(ya, y))
    assert moved == 10
