"""Backbone registry and classifier factory: the seven seed backbones, weights handling."""
import pytest
import torch

from npcai.errors import NpcaiError
from npcai.models import (ImageClassifier, PatientMILClassifier, create_classifier,
                          create_patient_classifier, list_backbones, min_input_size)
from npcai.models import factory


def test_list_backbones_are_the_seven_seed_backbones():
    assert list_backbones() == ["inception_resnet_v2", "ecaresnet50t", "efficientnet_b0", "efficientnet_b3",
                                "resnet50", "legacy_xception", "seresnet50"]


@pytest.mark.parametrize("backbone", list_backbones())
def test_seed_backbone_builds_and_takes_one_step(backbone):
    torch.manual_seed(0)
    net = create_classifier(backbone, in_chans=1, pretrained=False, dropout=0.5)
    assert isinstance(net, ImageClassifier)
    assert isinstance(net.head[0], torch.nn.Dropout) and isinstance(net.head[1], torch.nn.Linear)
    assert net.backbone.num_classes == 0
    side = max(48, min_input_size(backbone))
    x = torch.randn(2, 1, side, side)
    logits = net(x)
    assert logits.shape == (2,)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([0.0, 1.0]))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    before = net.head[1].weight.detach().clone()
    loss.backward()
    opt.step()
    assert not torch.equal(before, net.head[1].weight)


def test_in_chans_and_mil_pooling():
    net = create_patient_classifier("resnet18", in_chans=3, pooling="attention")
    assert isinstance(net, PatientMILClassifier)
    bags = torch.randn(2, 5, 3, 32, 32)
    assert net(bags).shape == (2,)
    assert net.pool.weights_.shape == (2, 5)
    assert torch.allclose(net.pool.weights_.sum(1), torch.ones(2))
    mean = create_patient_classifier("resnet18", in_chans=1, pooling="mean").eval()
    one = torch.randn(1, 4, 1, 32, 32)
    # mean pooling of identical slices = the slice model on one slice
    same = one[:, :1].expand(1, 4, 1, 32, 32).contiguous()
    assert torch.allclose(mean(same), mean.slice_model(one[:, 0]), atol=1e-5)


def test_unknown_backbone_fails_with_one_line():
    with pytest.raises(NpcaiError, match="not a timm model"):
        create_classifier("resnet_does_not_exist")


def test_pretrained_offline_fails_clearly(monkeypatch):
    monkeypatch.setattr(factory, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-npcai-hf-cache")
    with pytest.raises(NpcaiError, match=r"could not download pretrained weights for resnet18 .*--weights PATH.*--no-pretrained"):
        create_classifier("resnet18", pretrained=True)


def test_local_weights_load_strictly(tmp_path):
    torch.manual_seed(0)
    src = create_classifier("resnet18", in_chans=3)
    state = {f"module.{k}": v for k, v in src.backbone.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet head: ignored
    torch.save(state, tmp_path / "r18.pth")
    net = create_classifier("resnet18", in_chans=1, weights=tmp_path / "r18.pth")
    # stem adapted to 1 channel (timm sums the RGB kernels), the rest identical
    assert torch.allclose(net.backbone.conv1.weight, src.backbone.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(net.backbone.layer4[1].conv2.weight, src.backbone.layer4[1].conv2.weight)
    with pytest.raises(NpcaiError, match="missing keys"):
        create_classifier("resnet34", weights=tmp_path / "r18.pth")
    with pytest.raises(NpcaiError, match="not found"):
        create_classifier("resnet18", weights=tmp_path / "nope.pth")
    with pytest.raises(NpcaiError, match="not both"):
        create_classifier("resnet18", pretrained=True, weights=tmp_path / "r18.pth")
