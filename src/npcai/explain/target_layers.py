"""Which layer Grad-CAM should look at: the last convolutional stage of a CNN backbone.

Grad-CAM weights the feature maps of one layer by the gradient of the target; the usual and
most interpretable choice is the last convolutional feature map, i.e. exactly the tensor
that the backbone's global pooling averages. :func:`find_target_layer` finds it for every
timm CNN (the seven seed backbones and any other) without a per-architecture table:

1. when the model has a timm ``global_pool`` module, the target is the outermost module
   whose output *is* the pooling's input (``layer4`` for ResNets, ``bn2`` for EfficientNets,
   ``conv2d_7b`` for Inception-ResNet-V2, ``act4`` for Xception, ...);
2. otherwise timm's ``feature_info[-1]["module"]`` (the last feature stage);
3. otherwise the last module, in execution order, with a 4-D ``(B, C, h, w)`` output,
   provided only classifier-head layers (linear, 1-D norm, dropout, pooling) run after it.

The choice is checked with one dummy forward pass: the layer must output a spatial feature
map. Backbones without one (vision transformers output tokens) raise :class:`NpcaiError`
naming the backbone.

Examples:
    >>> import timm
    >>> net = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=1)
    >>> find_target_layer(net, input_shape=(1, 1, 64, 64)).name
    'layer4'
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from npcai.errors import NpcaiError

__all__ = ["TargetLayer", "find_target_layer", "backbone_name"]

# Leaf modules that may run after the target layer (a classifier head), in rule 3.
_HEAD_LEAVES = (nn.Linear, nn.BatchNorm1d, nn.Dropout, nn.Identity, nn.Flatten,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.ReLU, nn.SiLU, nn.GELU,
                nn.Sigmoid, nn.Tanh)


@dataclass(frozen=True)
class TargetLayer:
    """The layer that Grad-CAM hooks, with how it was found.

    Attributes:
        name: dotted module name inside the model it was searched in (e.g. ``"layer4"``).
        module: the ``nn.Module`` itself (hook it in the full model: it is the same object).
        feature_shape: its output shape ``(C, h, w)`` for the probe input.
        rule: ``"global_pool-input"``, ``"feature_info"`` or ``"last-4d-module"``.
    """

    name: str
    module: nn.Module
    feature_shape: tuple[int, int, int]
    rule: str


def backbone_name(model: nn.Module) -> str:
    """A readable name for a model: the timm architecture when known, else the class name."""
    inner = getattr(model, "backbone", model)
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(inner, attr, None)
        if isinstance(cfg, dict) and cfg.get("architecture"):
            return str(cfg["architecture"])
    return type(inner).__name__


def _probe(model: nn.Module, input_shape: tuple[int, ...]):
    """One no-grad forward pass recording every module's output and the global pool's input."""
    records: list[tuple[str, nn.Module, object]] = []   # in completion order
    pool_inputs: dict[str, object] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue
        handles.append(module.register_forward_hook(
            lambda m, i, o, name=name: records.append((name, m, o))))
        if name.split(".")[-1] == "global_pool" and isinstance(module, nn.Module):
            handles.append(module.register_forward_pre_hook(
                lambda m, i, name=name: pool_inputs.setdefault(name, i[0] if i else None)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    except RuntimeError as exc:
        raise NpcaiError(f"backbone {backbone_name(model)!r}: a probe input of shape {tuple(input_shape)} "
                         f"fails ({str(exc).splitlines()[0]}); use larger ROI images") from exc
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return records, pool_inputs


def _is_map(o: object) -> bool:
    return isinstance(o, torch.Tensor) and o.ndim == 4


def find_target_layer(model: nn.Module, *, input_shape: tuple[int, int, int, int] = (1, 1, 96, 96)
                      ) -> TargetLayer:
    """Find the last convolutional stage of ``model`` (a timm backbone or a classifier with
    a ``.backbone``), checked on a probe input of ``input_shape`` ``(B, C, H, W)``.

    Raises:
        NpcaiError: the model has no spatial feature map before pooling (e.g. a ViT), or the
            probe input is too small for it.
    """
    search = model.backbone if isinstance(getattr(model, "backbone", None), nn.Module) else model
    arch = backbone_name(model)
    records, pool_inputs = _probe(search, tuple(input_shape))
    by_name = {name: (module, out) for name, module, out in records}

    def _make(name: str, rule: str) -> TargetLayer:
        module, out = by_name[name]
        if not _is_map(out):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise NpcaiError(f"backbone {arch!r}: its last stage {name!r} outputs {shape}, not a convolutional "
                             "feature map (B, C, h, w); Grad-CAM needs a CNN backbone (e.g. resnet50, efficientnet_b0)")
        return TargetLayer(name=name, module=module, feature_shape=tuple(out.shape[1:]), rule=rule)

    # Rule 1: the tensor that the global pooling consumes.
    for pool_name, pooled in pool_inputs.items():
        if not _is_map(pooled):
            continue
        producers = [name for name, _, out in records if out is pooled and not pool_name.startswith(name + ".")
                     and name != pool_name]
        if producers:
            outermost = min(producers, key=lambda n: (n.count("."), -producers.index(n)))  # last-completed: after in-place ops
            return _make(outermost, "global_pool-input")

    # Rule 2: timm's feature_info.
    info = getattr(search, "feature_info", None)
    if isinstance(info, list) and info and isinstance(info[-1], dict) and info[-1].get("module") in by_name:
        return _make(info[-1]["module"], "feature_info")
    if info is not None and hasattr(info, "module_name"):   # timm FeatureInfo object
        name = info.module_name()[-1]
        if name in by_name:
            return _make(name, "feature_info")

    # Rule 3: the last 4-D output, with only head layers after it.
    last = max((k for k, (_, _, out) in enumerate(records) if _is_map(out)), default=None)
    if last is None:
        raise NpcaiError(f"backbone {arch!r}: no layer outputs a convolutional feature map (B, C, h, w); "
                         "Grad-CAM needs a CNN backbone (e.g. resnet50, efficientnet_b0)")
    later = [(n, m) for n, m, _ in records[last + 1:] if not list(m.children())]
    foreign = [n for n, m in later if not isinstance(m, _HEAD_LEAVES)]
    if foreign:
        raise NpcaiError(f"backbone {arch!r}: layers {foreign[:3]} run after its last convolutional feature map "
                         f"{records[last][0]!r}; Grad-CAM needs a CNN backbone whose last feature map is pooled")
    name = records[last][0]
    same = [n for n, _, out in records if out is records[last][2]]
    return _make(min(same, key=lambda n: n.count(".")) if same else name, "last-4d-module")
