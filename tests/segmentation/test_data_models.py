"""Slice loading, geometry round trip, patient splits, label sets, architectures and weights."""
from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from npcai.errors import NpcaiError
from npcai.segmentation.data import (LabelSet, classes_to_labels, from_model_grid, labels_to_classes,
                                     load_slices, split_by_patient, to_model_grid)
from npcai.segmentation.models import create_segmenter

from .synthetic import make_cohort


def _one_error_line(stderr: str, text: str) -> bool:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    return len(errors) == 1 and text in errors[0] and "Traceback" not in stderr


@pytest.fixture(scope="module")
def rect_cohort(tmp_path_factory) -> Path:
    """6 patients with non-square slices (48 rows x 64 cols)."""
    return make_cohort(tmp_path_factory.mktemp("seg") / "rect", patients=6, size=64, rows=48, slices=3, seed=2)


def test_labelset():
    assert LabelSet.parse("nodes").values == (2,)
    m = np.array([[0, 1, 2]], np.uint8)
    ls = LabelSet.parse("nodes")
    np.testing.assert_array_equal(labels_to_classes(m, ls), [[0, 0, 1]])
    np.testing.assert_array_equal(classes_to_labels(labels_to_classes(m, ls), ls), [[0, 0, 2]])
    for bad in ("tumour,tumour", "liver", ""):
        with pytest.raises(NpcaiError, match="--labels"):
            LabelSet.parse(bad)


def test_model_grid_round_trip_non_square():
    rng = np.random.default_rng(0)
    lab = np.zeros((2, 48, 64), np.uint8)
    lab[:, 10:30, 20:50] = 1
    grid = to_model_grid(lab, 32, nearest=True)
    assert grid.shape == (2, 32, 32)
    assert grid[:, :5].max() == 0          # the padding rows are background
    # one-hot "logits" on the model grid come back onto the native grid in the right place
    onehot = np.stack([grid == 0, grid == 1], 1).astype(np.float32)
    back = from_model_grid(onehot, (48, 64)).argmax(1)
    assert back.shape == (2, 48, 64)
    assert (back == lab).mean() > 0.97
    img = rng.normal(size=(48, 64)).astype(np.float32)
    assert to_model_grid(img, 64).shape == (64, 64)


def test_load_slices_and_split(rect_cohort):
    s = load_slices(rect_cohort, size=32)
    assert s.images.shape[1:] == (1, 32, 32) and s.images.dtype == np.float16
    assert len(s) == 6 * 3 and set(np.unique(s.classes)) == {0, 1, 2}
    assert (s.index[["rows", "cols"]].drop_duplicates().to_numpy() == [[48, 64]]).all()
    split = split_by_patient(s.index, seed=1)
    assert split.value_counts().to_dict() == {"train": 4, "test": 1, "val": 1}
    assert split.equals(split_by_patient(s.index, seed=1))
    tumour_only = load_slices(rect_cohort, size=32, labels="tumour")
    assert set(np.unique(tumour_only.classes)) == {0, 1}


def test_no_labelled_slices_fails_in_one_line(tmp_path, cli):
    c = make_cohort(tmp_path / "nonodes", patients=3, nodes=False, slices=2)
    r = cli("segment", "train", c, "--out", tmp_path / "run", "--labels", "nodes", "--no-pretrained")
    assert r.code == 2
    assert _one_error_line(r.stderr, "no T1c slice contains nodes")


def test_unknown_arch_and_missing_init_fail_in_one_line(tmp_path, cli, rect_cohort):
    r = cli("segment", "train", rect_cohort, "--out", tmp_path / "r", "--arch", "segformer", "--no-pretrained")
    assert r.code == 2 and _one_error_line(r.stderr, "--arch 'segformer' is not known")
    r = cli("segment", "train", rect_cohort, "--out", tmp_path / "r")
    assert r.code == 2 and "--no-pretrained" in r.stderr
    r = cli("segment", "evaluate", tmp_path)
    assert r.code == 2 and "not a segmentation run" in r.stderr


@pytest.mark.parametrize("arch", ["unet", "deeplabv3"])
def test_architectures_shapes(arch):
    net = create_segmenter(arch, encoder="resnet18", classes=3)
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 3, 64, 64)


def test_pretrained_offline_fails_clearly(monkeypatch):
    def no_network(*a, **k):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-npcai-test")
    with pytest.raises(NpcaiError, match="--weights PATH.*--no-pretrained"):
        create_segmenter("unet", encoder="resnet18", pretrained=True)


def test_weights_file_whole_and_encoder_only(tmp_path):
    torch.manual_seed(0)
    a = create_segmenter("unet", encoder="resnet18", encoder_depth=3)
    torch.save(a.state_dict(), tmp_path / "whole.pt")
    b = create_segmenter("unet", encoder="resnet18", encoder_depth=3, weights=tmp_path / "whole.pt")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    # an ImageNet-style 3-channel encoder (torchvision resnet18 keys incl. fc) adapts to 1 channel
    enc3 = create_segmenter("unet", encoder="resnet18", in_channels=3).encoder.state_dict()
    enc3["fc.weight"], enc3["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(enc3, tmp_path / "enc.pth")
    c = create_segmenter("unet", encoder="resnet18", weights=tmp_path / "enc.pth")
    assert torch.allclose(c.encoder.conv1.weight, enc3["conv1.weight"].sum(1, keepdim=True))
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(NpcaiError, match="do not fit"):
        create_segmenter("unet", encoder="resnet18", weights=tmp_path / "bad.pt")
