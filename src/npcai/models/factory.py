"""Backbone registry and classifier factory (timm-style: ``create_classifier(name, ...)``).

The seven backbones of the seed studies are listed by :func:`list_backbones`; any other
timm model name is accepted too. Pretrained weights come from timm's hub
(``pretrained=True``) or a local file (``weights=PATH``); when neither is possible the
factory fails with one line suggesting ``--weights`` or ``--no-pretrained`` and never falls
back silently to random weights.

Examples:
    >>> net = create_classifier("resnet18", in_chans=1, pretrained=False)
    >>> import torch; net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2])
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from npcai.errors import NpcaiError
from npcai.models.classifier import ImageClassifier, PatientMILClassifier

__all__ = ["SEED_BACKBONES", "list_backbones", "create_classifier", "create_backbone",
           "load_backbone_weights", "min_input_size", "hub_reachable"]

log = logging.getLogger(__name__)

#: backbone -> the seed studies that used it
SEED_BACKBONES: dict[str, tuple[str, ...]] = {
    "inception_resnet_v2": ("000", "002"),
    "ecaresnet50t": ("000",),
    "efficientnet_b0": ("000", "002"),
    "efficientnet_b3": ("000",),
    "resnet50": ("002",),
    "legacy_xception": ("002",),
    "seresnet50": ("004",),
}

#: smallest input side that the backbone's strides/valid convolutions accept
_MIN_INPUT = {"inception_resnet_v2": 75, "legacy_xception": 32}


def list_backbones() -> list[str]:
    """The seven backbones of the seed studies (any other timm model name also works)."""
    return list(SEED_BACKBONES)


def min_input_size(backbone: str) -> int:
    """Smallest square input (px) the backbone runs on (e.g. 75 for inception_resnet_v2)."""
    return _MIN_INPUT.get(backbone, 32)


def _check_name(backbone: str) -> None:
    import timm

    if backbone not in SEED_BACKBONES and not timm.is_model(backbone):
        close = timm.list_models(f"*{backbone.split('_')[0]}*")[:5]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise NpcaiError(f"backbone {backbone!r}: not a timm model{hint}; "
                         f"the seed backbones are {', '.join(SEED_BACKBONES)}")


def load_backbone_weights(model: torch.nn.Module, path: str | Path, backbone: str = "") -> None:
    """Load a local state dict (``.pth``/``.pt``/``.bin``/``.safetensors``) into a timm backbone.

    Classifier-head keys (absent from a ``num_classes=0`` model) are ignored; the first
    conv's weight is adapted to ``in_chans`` the way timm does it; any other missing or
    unexpected key is an error naming the keys.
    """
    from npcai.weights import read_state_dict

    path = Path(path)
    state = read_state_dict(path)
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    own = model.state_dict()
    # adapt the stem to the model's input channels (timm's adapt_input_conv)
    from timm.models import adapt_input_conv

    for k, v in list(state.items()):
        if k in own and v.ndim == 4 and own[k].ndim == 4 and v.shape[1] != own[k].shape[1] \
                and v.shape[0] == own[k].shape[0]:
            state[k] = adapt_input_conv(own[k].shape[1], v)
    # drop classifier keys that a num_classes=0 backbone does not have
    head_names = set()
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifier = cfg.get("classifier")
    if classifier:
        head_names.update([classifier] if isinstance(classifier, str) else classifier)
    state = {k: v for k, v in state.items()
             if not (k not in own and any(k.startswith(h + ".") for h in head_names))}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} keys with other shapes (e.g. {', '.join(mismatched[:3])})")
        raise NpcaiError(f"{path}: weights do not fit backbone {backbone or type(model).__name__}: "
                         f"{'; '.join(parts)}; pass the weights of the same architecture")
    model.load_state_dict(state, strict=True)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (True when a proxy is configured).

    Checked before a pretrained download so that an offline machine fails in seconds
    instead of after the hub client's minute of retries.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from concurrent.futures import ThreadPoolExecutor

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"

    def connect() -> bool:  # name resolution ignores socket timeouts, so bound it with a thread
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            return True
        except OSError:
            return False

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout)
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


def _create_pretrained(backbone: str, in_chans: int) -> torch.nn.Module:
    """timm's pretrained model; when the hub is unreachable only the local cache is tried."""
    import contextlib

    import timm
    from huggingface_hub import constants

    offline = not hub_reachable()
    with contextlib.ExitStack() as stack:
        if offline:  # cache only: no minute of network retries
            old = constants.HF_HUB_OFFLINE
            constants.HF_HUB_OFFLINE = True
            stack.callback(setattr, constants, "HF_HUB_OFFLINE", old)
        try:
            return timm.create_model(backbone, pretrained=True, num_classes=0, in_chans=in_chans)
        except Exception as exc:
            why = "no access to the model hub" if offline else f"model hub error: {type(exc).__name__}"
            raise NpcaiError(
                f"could not download pretrained weights for {backbone} ({why}); "
                f"pass --weights PATH to a local file or --no-pretrained") from exc


def create_backbone(backbone: str, *, in_chans: int = 1, pretrained: bool = False,
                    weights: str | Path | None = None) -> torch.nn.Module:
    """A timm feature extractor (``num_classes=0``) with the requested weights."""
    import timm

    _check_name(backbone)
    if pretrained and weights is not None:
        raise NpcaiError("pass either --pretrained or --weights PATH, not both")
    if pretrained:
        return _create_pretrained(backbone, in_chans)
    model = timm.create_model(backbone, pretrained=False, num_classes=0, in_chans=in_chans)
    if weights is not None:
        load_backbone_weights(model, weights, backbone)
    return model


def create_classifier(backbone: str, *, in_chans: int = 1, pretrained: bool = False,
                      weights: str | Path | None = None, dropout: float = 0.5) -> ImageClassifier:
    """Build the seeds' slice classifier: timm backbone + Dropout + Linear -> one logit.

    Args:
        backbone: a seed backbone (see :func:`list_backbones`) or any timm model name.
        in_chans: input channels (the ROI cache's C: sequences stacked).
        pretrained: load ImageNet weights from timm's hub (fails clearly when offline).
        weights: a local state dict / safetensors file for the backbone instead.
        dropout: dropout before the linear head.

    Returns:
        :class:`ImageClassifier` whose ``forward((B,C,H,W))`` gives logits (B,).
    """
    return ImageClassifier(create_backbone(backbone, in_chans=in_chans, pretrained=pretrained,
                                           weights=weights), dropout=dropout)


def create_patient_classifier(backbone: str, *, in_chans: int = 1, pretrained: bool = False,
                              weights: str | Path | None = None, dropout: float = 0.5,
                              pooling: str = "mean") -> PatientMILClassifier:
    """The patient-as-unit (multiple-instance) classifier: bags (B,K,C,H,W) -> logits (B,)."""
    return PatientMILClassifier(create_classifier(backbone, in_chans=in_chans, pretrained=pretrained,
                                                  weights=weights, dropout=dropout), pooling=pooling)


__all__.append("create_patient_classifier")
