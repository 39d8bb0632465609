"""Datasets over the ROI memmap, augmentation, slice -> patient aggregation."""
import numpy as np
import pandas as pd
import pytest
import torch

from npcai.models.data import PatientBagDataset, SliceAugment, SliceDataset, read_rows
from npcai.models.lightning_module import aggregate_patients


@pytest.fixture
def images(tmp_path):
    arr = np.arange(10 * 1 * 8 * 8, dtype=np.float16).reshape(10, 1, 8, 8)
    np.save(tmp_path / "images.npy", arr)
    return np.load(tmp_path / "images.npy", mmap_mode="r")


def test_read_rows_keeps_requested_order(images):
    x = read_rows(images, np.array([7, 2, 5]))
    assert x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(np.asarray(images[[7, 2, 5]], dtype=np.float32)))
    assert torch.equal(read_rows(images, np.array([3, 4, 5])), torch.from_numpy(np.asarray(images[3:6], np.float32)))


def test_slice_dataset_holds_only_its_rows(images):
    ds = SliceDataset(images, rows=[1, 3, 9], labels=[0, 1, 1], size=16)
    x, y, rows = ds.__getitems__([2, 0])
    assert x.shape == (2, 1, 16, 16) and rows.tolist() == [9, 1] and y.tolist() == [1.0, 0.0]


def test_patient_bags_sample_with_replacement_and_are_reproducible(images):
    ds = PatientBagDataset(images, {"A": np.array([0, 1]), "B": np.array([4, 5, 6, 7, 8])},
                           {"A": 0, "B": 1}, bag_size=4, seed=1)
    x, y, rows = ds.__getitems__([0, 1])
    assert x.shape == (2, 4, 1, 8, 8) and y.tolist() == [0.0, 1.0]
    assert set(rows[0].tolist()) <= {0, 1} and len(set(rows[1].tolist())) == 4
    again = ds.__getitems__([0, 1])[2]
    assert torch.equal(rows, again)
    ds.set_epoch(1)
    assert not torch.equal(ds.__getitems__([1])[2], rows[1:])
    whole = PatientBagDataset(images, {"B": np.array([4, 5, 6])}, {"B": 1}, bag_size=None)
    assert whole.__getitems__([0])[0].shape == (1, 3, 1, 8, 8)


def test_augment_is_deterministic_and_geometrically_right():
    x = torch.rand(4, 1, 32, 32)
    aug = SliceAugment(seed=0)
    assert torch.equal(aug(x, step=5), aug(x, step=5))
    assert not torch.equal(aug(x, step=5), aug(x, step=6))
    flip = SliceAugment(flip_p=1, max_rotate_deg=0, max_scale=0, max_shift=0, contrast=0, brightness=0)
    assert torch.allclose(flip(x), x.flip(-1), atol=1e-5)
    ident = SliceAugment(flip_p=0, max_rotate_deg=0, max_scale=0, max_shift=0, contrast=0, brightness=0)
    assert torch.allclose(ident(x), x, atol=1e-5)
    # a 90-degree rotation of a disc drawn in mm on 2:1 pixels stays a disc (physical spacing respected)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    disc = (((yy - 15.5) * 2) ** 2 + (xx - 31.5) ** 2 < 20 ** 2).float()[None, None]
    rot = SliceAugment(flip_p=0, max_rotate_deg=90, max_scale=0, max_shift=0, contrast=0, brightness=0,
                       pixel_aspect=2.0)
    for step in range(3):
        out = rot(disc, step=step)
        assert (out > 0.5).float().sub(disc).abs().mean() < 0.03
    bags = torch.rand(2, 3, 1, 16, 16)
    assert aug(bags, step=1).shape == bags.shape


def test_aggregate_patients():
    s = pd.DataFrame({"patient_id": ["a", "a", "b"], "prob": [0.2, 0.6, 0.9], "weight": [3, 1, 5]})
    assert aggregate_patients(s, "mean")["prob"].round(6).to_dict() == {"a": 0.4, "b": 0.9}
    assert aggregate_patients(s, "max")["prob"].to_dict() == {"a": 0.6, "b": 0.9}
    w = aggregate_patients(s, "area-weighted")
    assert w.loc["a", "prob"] == pytest.approx((0.2 * 3 + 0.6) / 4, rel=1e-5)
    assert w["n_slices"].to_dict() == {"a": 2, "b": 1}


@pytest.mark.parametrize("n_train, sizes", [(9, [4, 4]), (10, [4, 4, 2]), (8, [4, 4])])
def test_training_never_ends_on_a_batch_of_one(images, n_train, sizes):
    """A lone last training sample would reach BatchNorm as a batch of one (training error);
    it is dropped that epoch, any other remainder is kept."""
    from npcai.models.lightning_module import SelectionDataModule

    rows = list(range(10))[:n_train]
    train = SliceDataset(images, rows=rows, labels=[i % 2 for i in rows], size=8)
    val = SliceDataset(images, rows=[0, 1], labels=[0, 1], size=8)
    loader = SelectionDataModule(train, val, batch_size=4).train_dataloader()
    assert [len(y) for _, y, _ in loader] == sizes
