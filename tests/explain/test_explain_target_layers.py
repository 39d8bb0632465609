"""The Grad-CAM target layer is found for every seed backbone: the last stage when its map is at
least 7x7, an earlier stage at small inputs (64 px), and CAMs of the input's shape."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import timm
import torch

from npcai.errors import NpcaiError
from npcai.explain.cam import compute_cams
from npcai.explain.target_layers import find_target_layer
from npcai.models import create_classifier, min_input_size

# backbone -> the module Grad-CAM hooks at the paper's input size (the tensor its global pooling
# averages, 7x7 or 8x8 there)
SEED_TARGETS = {
    "inception_resnet_v2": "conv2d_7b",
    "ecaresnet50t": "layer4",
    "efficientnet_b0": "bn2",
    "efficientnet_b3": "bn2",
    "resnet50": "layer4",
    "legacy_xception": "act4",
    "seresnet50": "layer4",
}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# backbone -> the deepest stage with a map of at least 7x7 at 64 px (80 px for inception_resnet_v2)
SMALL_TARGETS = {
    "inception_resnet_v2": "repeat",
    "ecaresnet50t": "layer2",
    "efficientnet_b0": "blocks.2",
    "efficientnet_b3": "blocks.2",
    "resnet50": "layer2",
    "legacy_xception": "block3.rep.0",
    "seresnet50": "layer2",
}
PAPER_SIZE = {"inception_resnet_v2": 299, "legacy_xception": 299}


def _stage_sizes(model, size):
    """(h, w) of every timm feature_info stage at a size x size input."""
    feats = {}
    hooks = [model.backbone.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: feats.update({n: tuple(o.shape[-2:])}))
             for n in (d["module"] for d in model.backbone.feature_info)]
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    for h in hooks:
        h.remove()
    return feats


@pytest.mark.parametrize("backbone", list(SEED_TARGETS))
def test_seed_backbone_last_stage_at_paper_size(backbone, caplog):
    model = create_classifier(backbone, in_chans=1, pretrained=False).eval()
    size = PAPER_SIZE.get(backbone, 224)
    with caplog.at_level(logging.WARNING, logger="npcai.explain.target_layers"):
        layer = find_target_layer(model, input_shape=(1, 1, size, size))
    assert layer.name == layer.last_stage == SEED_TARGETS[backbone]
    assert min(layer.map_size) >= 7
    assert not caplog.records


@pytest.mark.parametrize("backbone", list(SEED_TARGETS))
def test_seed_backbone_walks_back_to_a_7x7_map_at_small_size(backbone, caplog):
    torch.manual_seed(0)
    size = max(64, min_input_size(backbone))
    size = 80 if backbone == "inception_resnet_v2" else size   # >= 75 px
    model = create_classifier(backbone, in_chans=1, pretrained=False).eval()
    with caplog.at_level(logging.WARNING, logger="npcai.explain.target_layers"):
        layer = find_target_layer(model, input_shape=(1, 1, size, size))
    assert not caplog.records
    assert layer.name == SMALL_TARGETS[backbone] and layer.rule == "stage>=7x7"
    assert layer.last_stage == SEED_TARGETS[backbone]
    assert layer.module is model.backbone.get_submodule(layer.name)
    # the deepest such stage: every later feature stage has a map under 7x7
    sizes = _stage_sizes(model, size)
    names = list(sizes)
    assert min(sizes[layer.name]) >= 7 and sizes[layer.name] == layer.map_size
    assert all(min(sizes[n]) < 7 for n in names[names.index(layer.name) + 1:])
    h, w = size, size + 8          # a non-square slice catches transposed maps
    x = np.random.default_rng(0).normal(size=(1, 1, h, w)).astype(np.float32)
    res = compute_cams(model, x, method="gradcam", target="high-risk", target_layer=layer)
    assert res.cams.shape == (1, h, w)
    assert np.isfinite(res.cams).all() and (res.cams >= 0).all()
    assert res.logits.shape == (1,)


def test_resnet18_at_64px_uses_layer2_and_warns_on_small_maps(caplog):
    model = create_classifier("resnet18", in_chans=2, pretrained=False).eval()
    with caplog.at_level(logging.WARNING, logger="npcai.explain.target_layers"):
        layer = find_target_layer(model, input_shape=(1, 2, 64, 64))
    assert (layer.name, layer.feature_shape, layer.last_stage) == ("layer2", (128, 8, 8), "layer4")
    assert layer.describe() == "layer2 (8x8 map at 64x64 px; last stage layer4)"
    assert not caplog.records
    res = compute_cams(model, np.random.rand(3, 2, 64, 48).astype(np.float32), method="layercam")
    assert res.cams.shape == (3, 64, 48)
    assert res.target_layer.name == "layer1"      # 48 px wide: layer2 would be 8x6, under 7
    # the user's choice wins, with a warning when it cannot resolve anything
    for name, shape in (("layer4", (2, 2)), ("backbone.layer3", (4, 4))):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="npcai.explain.target_layers"):
            chosen = find_target_layer(model, input_shape=(1, 2, 64, 64), layer=name)
        assert chosen.rule == "user" and chosen.map_size == shape
        (rec,) = caplog.records
        assert f"{shape[0]}x{shape[1]} map at 64x64 px input" in rec.getMessage()
    res = compute_cams(model, np.random.rand(1, 2, 64, 64).astype(np.float32), layer="layer3")
    assert res.target_layer.name == "layer3"
    with pytest.raises(NpcaiError, match="target layer 'layer9'.*stages are act1, layer1, layer2, layer3, layer4"):
        find_target_layer(model, input_shape=(1, 2, 64, 64), layer="layer9")


def test_input_too_small_says_so(caplog):
    model = create_classifier("resnet18", in_chans=1, pretrained=False).eval()
    with caplog.at_level(logging.WARNING, logger="npcai.explain.target_layers"):
        layer = find_target_layer(model, input_shape=(1, 1, 12, 12))
    assert (layer.name, layer.map_size, layer.rule) == ("act1", (6, 6), "input-too-small")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "input (12x12 px) is too small for Grad-CAM" in text and "at least 14 px" in text


def test_vit_backbone_is_refused_by_name():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, in_chans=1, img_size=64)
    with pytest.raises(NpcaiError, match="vit_tiny_patch16_224.*not a convolutional feature map"):
        find_target_layer(vit, input_shape=(1, 1, 64, 64))


def test_probe_input_too_small_is_a_clear_error():
    model = create_classifier("inception_resnet_v2", in_chans=1, pretrained=False)
    with pytest.raises(NpcaiError, match="inception_resnet_v2.*larger ROI"):
        find_target_layer(model, input_shape=(1, 1, 32, 32))
