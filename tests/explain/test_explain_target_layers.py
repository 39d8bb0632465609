"""The Grad-CAM target layer is found for every seed backbone and gives CAMs of the input's shape."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from npcai.errors import NpcaiError
from npcai.explain.cam import compute_cams
from npcai.explain.target_layers import find_target_layer
from npcai.models import create_classifier, min_input_size

# backbone -> the module Grad-CAM must hook (the tensor its global pooling averages)
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


@pytest.mark.parametrize("backbone", list(SEED_TARGETS))
def test_seed_backbone_target_layer_and_cam_shape(backbone):
    torch.manual_seed(0)
    size = max(64, min_input_size(backbone))
    size = 80 if backbone == "inception_resnet_v2" else size   # >= 75 px
    model = create_classifier(backbone, in_chans=1, pretrained=False).eval()
    layer = find_target_layer(model, input_shape=(1, 1, size, size))
    assert layer.name == SEED_TARGETS[backbone]
    assert layer.module is model.backbone.get_submodule(layer.name)
    h, w = size, size + 8          # a non-square slice catches transposed maps
    x = np.random.default_rng(0).normal(size=(1, 1, h, w)).astype(np.float32)
    res = compute_cams(model, x, method="gradcam", target="high-risk", target_layer=layer)
    assert res.cams.shape == (1, h, w)
    assert np.isfinite(res.cams).all() and (res.cams >= 0).all()
    assert res.logits.shape == (1,)


def test_generic_timm_cnn_and_two_channels():
    model = create_classifier("resnet18", in_chans=2, pretrained=False).eval()
    layer = find_target_layer(model, input_shape=(1, 2, 64, 64))
    assert (layer.name, layer.feature_shape) == ("layer4", (512, 2, 2))
    res = compute_cams(model, np.random.rand(3, 2, 64, 48).astype(np.float32), method="layercam")
    assert res.cams.shape == (3, 64, 48)


def test_vit_backbone_is_refused_by_name():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, in_chans=1, img_size=64)
    with pytest.raises(NpcaiError, match="vit_tiny_patch16_224.*not a convolutional feature map"):
        find_target_layer(vit, input_shape=(1, 1, 64, 64))


def test_probe_input_too_small_is_a_clear_error():
    model = create_classifier("inception_resnet_v2", in_chans=1, pretrained=False)
    with pytest.raises(NpcaiError, match="inception_resnet_v2.*larger ROI"):
        find_target_layer(model, input_shape=(1, 1, 32, 32))
