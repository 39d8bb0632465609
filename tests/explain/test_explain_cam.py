"""CAMs of hand-built models whose logit depends only on a known region land on that region."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from npcai.explain.cam import LogitTarget, compute_cams
from npcai.explain.localisation import RoiGeometry, energy_shares
from npcai.models import ImageClassifier

H, W = 64, 64
REGION = (slice(8, 24), slice(36, 56))     # off the diagonal: a transposed map would miss it


class SpatialMask(nn.Module):
    """Multiplies feature maps by a fixed 0/1 mask: nothing outside it reaches the logit."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x * self.mask


class MaskedNet(nn.Module):
    """A timm-like backbone: stride-2 conv -> ReLU -> fixed spatial mask -> global pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        mask = torch.zeros(H // 2, W // 2)
        mask[REGION[0].start // 2:REGION[0].stop // 2, REGION[1].start // 2:REGION[1].stop // 2] = 1
        self.mask = SpatialMask(mask)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 4
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.fill_(0.0)

    def forward(self, x):
        return self.global_pool(self.mask(self.act(self.conv(x))))


def _model(weight: float, bias: float) -> ImageClassifier:
    model = ImageClassifier(MaskedNet(), dropout=0.0)
    with torch.no_grad():
        model.head[1].weight.fill_(weight)
        model.head[1].bias.fill_(bias)
    return model.eval()


def _region_labels() -> np.ndarray:
    labels = np.zeros((H, W), np.uint8)
    labels[REGION] = 1
    return labels


@pytest.fixture
def images():
    return np.random.default_rng(3).uniform(0.5, 1.5, size=(2, 1, H, W)).astype(np.float32)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "scorecam"])
def test_cam_energy_sits_on_the_only_region_the_logit_sees(method, images):
    model = _model(weight=1.0, bias=0.0)
    res = compute_cams(model, images, method=method, target="high-risk")
    assert res.target_layer.name == "mask"
    assert res.cams.shape == (2, H, W)
    geometry = RoiGeometry(native_px=1.0, pixel_mm=(1.0, 1.0))
    for cam in res.cams:
        shares = energy_shares(cam, _region_labels(), geometry)["px"]
        assert shares["tumour"] > 0.8, shares            # region is 8% of the image
        assert shares["band_gt40px"] < 0.01


def test_predicted_target_explains_the_low_risk_class(images):
    model = _model(weight=-1.0, bias=-1.0)              # logit < 0: predicted low risk
    high = compute_cams(model, images, target="high-risk")
    pred = compute_cams(model, images, target="predicted")
    assert (high.logits < 0).all() and (pred.signs == -1).all()
    assert high.cams.max() == 0                          # no evidence *for* high risk anywhere
    inside = pred.cams[:, REGION[0], REGION[1]].sum() / pred.cams.sum()
    assert inside > 0.8


def test_logit_target_is_signed_logit():
    out = torch.tensor(2.5)
    assert LogitTarget(+1)(out).item() == 2.5 and LogitTarget(-1)(out).item() == -2.5
    with pytest.raises(ValueError):
        LogitTarget(0)
