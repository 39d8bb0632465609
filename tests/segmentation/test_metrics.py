"""npcai's Dice/HD95 agree with MONAI on fixtures; volume errors have the right sign and unit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from npcai.segmentation.metrics import dice_per_slice, dice_score, hd95, relative_volume_error, volume_error


def _onehot(a: np.ndarray, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(a.astype(np.int64)), n).permute(0, 3, 1, 2).float()


@pytest.fixture
def label_maps():
    rng = np.random.default_rng(3)
    truth = np.zeros((6, 32, 32), np.uint8)
    pred = np.zeros_like(truth)
    for k in range(5):   # slice 5 stays empty in both (undefined Dice)
        y, x = rng.integers(6, 20, 2)
        truth[k, y:y + 8, x:x + 9] = 1
        pred[k, y + rng.integers(-3, 4):y + 7, x:x + 9 + rng.integers(-2, 3)] = 1
        if k % 2 == 0:
            truth[k, 24:30, 2:8] = 2
        if k in (0, 3):
            pred[k, 25:31, 3:9] = 2     # slice 3: a node predicted where there is none
    return truth, pred


def test_dice_equals_monai_dicemetric(label_maps):
    from monai.metrics import DiceMetric

    truth, pred = label_maps
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    monai = metric(_onehot(pred, 3), _onehot(truth, 3)).numpy()          # (slices, 2 classes)
    for c, label in enumerate((1, 2)):
        ours = dice_per_slice(truth, pred, label)
        ours_loop = np.array([dice_score(truth[k], pred[k], label) for k in range(len(truth))])
        defined = np.isfinite(ours)
        # both empty: MONAI says 1, npcai says undefined (the slice does not count)
        both_empty = ~(truth == label).any((1, 2)) & ~(pred == label).any((1, 2))
        np.testing.assert_array_equal(~defined, both_empty)
        np.testing.assert_allclose(ours[defined], monai[defined, c], rtol=1e-6)
        np.testing.assert_allclose(ours_loop[defined], ours[defined])
    assert dice_per_slice(truth, pred, 2)[3] == 0.0     # a false alarm counts as 0
    # volume Dice = MONAI on the whole stack as one 3D image
    m3 = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    v = m3(_onehot(pred, 3).permute(1, 0, 2, 3)[None], _onehot(truth, 3).permute(1, 0, 2, 3)[None]).numpy()[0]
    assert dice_score(truth, pred, 1) == pytest.approx(v[0], rel=1e-6)
    assert dice_score(truth, pred, 2) == pytest.approx(v[1], rel=1e-6)


def test_union_dice_and_undefined():
    t = np.zeros((10, 10), np.uint8)
    p = np.zeros_like(t)
    assert np.isnan(dice_score(t, p, 1))
    t[2:4, 2:4], p[2:4, 2:4] = 1, 2      # right place, wrong label
    assert dice_score(t, p, 1) == 0.0
    assert dice_score(t, p, (1, 2)) == 1.0


def test_hd95_volume_error():
    t = np.zeros((1, 40, 40), np.uint8)
    p = np.zeros_like(t)
    t[0, 10:20, 10:20] = 1
    p[0, 10:20, 13:23] = 1                 # shifted 3 columns
    assert hd95(t, p, 1, spacing=(5.0, 1.0, 2.0)) == pytest.approx(6.0)   # 3 px x 2 mm
    assert np.isnan(hd95(t, np.zeros_like(t), 1))
    p2 = np.zeros_like(t)
    p2[0, 10:20, 10:15] = 1
    assert volume_error(t, p2, 1, voxel_ml=0.01) == pytest.approx(-0.5)
    assert relative_volume_error(t, p2, 1) == pytest.approx(-0.5)
    assert np.isnan(relative_volume_error(p2 * 0, p2, 1))
