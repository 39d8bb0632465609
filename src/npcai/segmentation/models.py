"""Segmentation architectures (timm-style factory): U-Net and DeepLabV3 from segmentation-models-pytorch.

Studies 000 and 002 compare DeepLabv3 and U-Net trained by transfer learning. Both come
from segmentation-models-pytorch with any of its encoders (``resnet34``, ``resnet18``,
``efficientnet-b0``, or a timm encoder as ``tu-<timm name>``). Encoder weights:

* ``pretrained=True`` asks smp for its ImageNet weights (needs the model hub);
* ``weights=PATH`` loads a local state dict: a whole segmenter (keys ``encoder.*``,
  ``decoder.*``, ...) or an encoder alone; a 3-channel stem is adapted to ``in_channels``;
* neither: random initialisation, said out loud by the caller (``--no-pretrained``).

When the hub is unreachable the factory fails with one line suggesting ``--weights`` or
``--no-pretrained``; it never falls back silently to random weights.

Examples:
    >>> net = create_segmenter("unet", encoder="resnet18", classes=3)
    >>> import torch; net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 3, 64, 64])
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from npcai.errors import NpcaiError

__all__ = ["ARCHITECTURES", "list_architectures", "create_segmenter", "load_segmenter_weights"]

log = logging.getLogger(__name__)

#: architecture name -> smp class name
ARCHITECTURES: dict[str, str] = {"unet": "Unet", "deeplabv3": "DeepLabV3"}


def list_architectures() -> list[str]:
    """The segmentation architectures of the seed studies."""
    return list(ARCHITECTURES)


def _check(arch: str, encoder: str) -> None:
    import segmentation_models_pytorch as smp

    if arch not in ARCHITECTURES:
        raise NpcaiError(f"--arch {arch!r} is not known; use one of: {', '.join(ARCHITECTURES)}")
    if encoder.startswith("tu-"):
        import timm

        if not timm.is_model(encoder[3:]):
            raise NpcaiError(f"--encoder {encoder!r}: {encoder[3:]!r} is not a timm model")
    elif encoder not in smp.encoders.get_encoder_names():
        raise NpcaiError(f"--encoder {encoder!r} is not an smp encoder; use e.g. resnet34, resnet18, "
                         f"efficientnet-b0, or a timm model as tu-<name>")


def create_segmenter(arch: str, *, encoder: str = "resnet34", in_channels: int = 1, classes: int = 3,
                     pretrained: bool = False, weights: str | Path | None = None,
                     encoder_depth: int = 5) -> torch.nn.Module:
    """Build a U-Net or DeepLabV3 returning logits ``(B, classes, H, W)`` for ``(B, in_channels, H, W)``.

    Args:
        arch: ``unet`` or ``deeplabv3``.
        encoder: an smp encoder name or ``tu-<timm model>``.
        in_channels: image channels (1 for one MR sequence).
        classes: output classes including background.
        pretrained: ImageNet encoder weights from the hub (fails in one line offline).
        weights: local state dict file (whole segmenter or encoder only).
        encoder_depth: encoder stages used (5 as in the papers; 3 makes a light U-Net for tests).
    """
    import segmentation_models_pytorch as smp

    _check(arch, encoder)
    if pretrained and weights is not None:
        raise NpcaiError("give either --pretrained or --weights PATH, not both")
    cls = getattr(smp, ARCHITECTURES[arch])
    kwargs: dict = dict(encoder_name=encoder, in_channels=in_channels, classes=classes,
                        encoder_depth=encoder_depth)
    if arch == "unet":
        kwargs["decoder_channels"] = (256, 128, 64, 32, 16)[5 - encoder_depth:]
    if pretrained:
        try:
            return cls(encoder_weights="imagenet", **kwargs)
        except NpcaiError:
            raise
        except Exception as exc:  # no network, hub down, no imagenet weights for this encoder
            raise NpcaiError(f"encoder {encoder!r}: pretrained ImageNet weights could not be loaded "
                             f"({type(exc).__name__}); pass --weights PATH to a local state dict, "
                             f"or --no-pretrained") from exc
    model = cls(encoder_weights=None, **kwargs)
    if weights is not None:
        load_segmenter_weights(model, weights)
    return model


def load_segmenter_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a local state dict into a whole segmenter or into its encoder (strictly).

    Lightning checkpoints (``state_dict`` with a ``model.`` prefix) and plain state dicts are
    accepted. A 3-channel first convolution is adapted to the model's input channels the
    way timm does. Any missing/unexpected key is an error naming the keys.
    """
    from timm.models import adapt_input_conv

    from npcai.weights import read_state_dict

    path = Path(path)
    state = read_state_dict(path)
    state = {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}
    whole = any(k.startswith(("encoder.", "decoder.", "segmentation_head.")) for k in state)
    target = model if whole else model.encoder
    if not whole:
        # encoder-only files may carry a classifier head (e.g. torchvision's fc.*)
        own_keys = set(target.state_dict())
        state = {k: v for k, v in state.items() if k in own_keys or not k.startswith(("fc.", "classifier.", "head."))}
    own = target.state_dict()
    for k, v in list(state.items()):
        if k in own and v.ndim == 4 and own[k].ndim == 4 and v.shape[1] != own[k].shape[1] \
                and v.shape[0] == own[k].shape[0]:
            state[k] = adapt_input_conv(own[k].shape[1], v)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{len(v)} {n} (e.g. {', '.join(v[:2])})" for n, v in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("keys of other shape", mismatched))
                 if v]
        raise NpcaiError(f"{path}: weights do not fit this {'segmenter' if whole else 'encoder'}: "
                         f"{'; '.join(parts)}; pass weights of the same --arch/--encoder")
    target.load_state_dict(state, strict=True)
    log.info("loaded %s weights from %s", "segmenter" if whole else "encoder", path)
