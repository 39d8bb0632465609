"""Which layer Grad-CAM should look at: the deepest convolutional stage that still resolves something.

Grad-CAM weights the feature maps of one layer by the gradient of the target and upsamples
the result to the input. The usual choice, the last convolutional feature map (the tensor
the backbone's global pooling averages), has stride 32: at 224 px it is 7x7, but at the
64 px of a quick study it is 2x2, and a 2x2 map upsampled is a blob whose energy shares are
close to uniform. :func:`find_target_layer` therefore walks back from the last stage to the
deepest stage whose map is at least ``min_size`` x ``min_size`` (default 7x7, the resolution
of the classic choice at 224 px) at the run's input size:

1. the **last stage** is the outermost module whose output *is* the global pooling's input
   (``layer4`` for ResNets, ``bn2`` for EfficientNets, ``conv2d_7b`` for Inception-ResNet-V2,
   ``act4`` for Xception, ...); otherwise timm's ``feature_info[-1]["module"]``; otherwise the
   last module, in execution order, with a 4-D ``(B, C, h, w)`` output, provided only
   classifier-head layers (linear, 1-D norm, dropout, pooling) run after it;
2. the **earlier stages** are timm's ``feature_info`` modules (one per stride: 2, 4, 8, 16;
   e.g. ``layer1``-``layer3``); models without ``feature_info`` use the last module at each
   spatial resolution;
3. the target is the deepest of these whose output is at least ``min_size`` in both
   directions (rule ``"stage>=7x7"`` when it is not the last stage). When none is, the input
   is too small: the highest-resolution stage is used and a warning says so and names the
   input size that would give a ``min_size`` map. Any map of 4x4 or smaller is warned about.

``layer="layer3"`` picks a layer by its dotted name instead (in the backbone or the full
model); it is checked to output a feature map. The choice is made on one dummy forward pass.
Backbones without a spatial map (vision transformers output tokens) raise :class:`NpcaiError`
naming the backbone.

Examples:
    >>> import timm
    >>> net = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=1)
    >>> find_target_layer(net, input_shape=(1, 1, 224, 224)).name
    'layer4'
    >>> t = find_target_layer(net, input_shape=(1, 1, 64, 64))
    >>> t.name, t.feature_shape, t.last_stage
    ('layer2', (128, 8, 8), 'layer4')
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from npcai.errors import NpcaiError
from npcai.models.classifier import DeepEnsemble

__all__ = ["MIN_MAP_SIZE", "SMALL_MAP_SIZE", "TargetLayer", "find_target_layer", "backbone_name"]

log = logging.getLogger(__name__)

#: the smallest feature map (both directions) chosen automatically: the last stage's map at 224 px
MIN_MAP_SIZE = 7
#: maps this small or smaller (either direction) are warned about: upsampled, they are blobs
SMALL_MAP_SIZE = 4

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
        rule: how it was found: ``"global_pool-input"``, ``"feature_info"`` or
            ``"last-4d-module"`` (the last stage itself), ``"stage>=7x7"`` (walked back to an
            earlier stage with a large enough map), ``"input-too-small"`` (no stage reaches
            ``min_size``: the highest-resolution one) or ``"user"`` (chosen by name).
        last_stage: name of the backbone's last stage (the classic Grad-CAM layer).
        input_size: ``(H, W)`` of the probe input.
    """

    name: str
    module: nn.Module
    feature_shape: tuple[int, int, int]
    rule: str
    last_stage: str = ""
    input_size: tuple[int, int] = (0, 0)

    @property
    def map_size(self) -> tuple[int, int]:
        """``(h, w)`` of the feature map."""
        return int(self.feature_shape[1]), int(self.feature_shape[2])

    def describe(self) -> str:
        """``"layer2 (8x8 map at 64x64 px; last stage layer4)"``, for logs and reports."""
        h, w = self.map_size
        text = f"{self.name} ({h}x{w} map at {self.input_size[0]}x{self.input_size[1]} px"
        if self.last_stage and self.last_stage != self.name:
            text += f"; last stage {self.last_stage}"
        return text + ")"


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


def _not_a_map(arch: str, name: str, out: object) -> NpcaiError:
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    return NpcaiError(f"backbone {arch!r}: its layer {name!r} outputs {shape}, not a convolutional "
                      "feature map (B, C, h, w); Grad-CAM needs a CNN backbone (e.g. resnet50, efficientnet_b0)")


def _outermost(records, out: object) -> str:
    """The outermost module whose output is the tensor ``out`` (the last to complete among
    equals: after in-place ops)."""
    same = [name for name, _, o in records if o is out]
    return min(same, key=lambda n: (n.count("."), -same.index(n)))


def _last_stage(search: nn.Module, arch: str, records, pool_inputs, by_name) -> tuple[str, str]:
    """The last convolutional stage and the rule that found it (see the module docstring)."""
    for pool_name, pooled in pool_inputs.items():             # the tensor the global pooling consumes
        if not _is_map(pooled):
            continue
        producers = [name for name, _, out in records if out is pooled and not pool_name.startswith(name + ".")
                     and name != pool_name]
        if producers:
            return min(producers, key=lambda n: (n.count("."), -producers.index(n))), "global_pool-input"
    names = _feature_info_names(search)                        # timm's feature_info
    if names and names[-1] in by_name:
        return names[-1], "feature_info"
    last = max((k for k, (_, _, out) in enumerate(records) if _is_map(out)), default=None)
    if last is None:
        raise NpcaiError(f"backbone {arch!r}: no layer outputs a convolutional feature map (B, C, h, w); "
                         "Grad-CAM needs a CNN backbone (e.g. resnet50, efficientnet_b0)")
    later = [(n, m) for n, m, _ in records[last + 1:] if not list(m.children())]
    foreign = [n for n, m in later if not isinstance(m, _HEAD_LEAVES)]
    if foreign:
        raise NpcaiError(f"backbone {arch!r}: layers {foreign[:3]} run after its last convolutional feature map "
                         f"{records[last][0]!r}; Grad-CAM needs a CNN backbone whose last feature map is pooled")
    return _outermost(records, records[last][2]), "last-4d-module"


def _feature_info_names(search: nn.Module) -> list[str]:
    info = getattr(search, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "module_name"):                           # timm FeatureInfo object
        return [str(n) for n in info.module_name()]
    if isinstance(info, list):
        return [str(d["module"]) for d in info if isinstance(d, dict) and d.get("module")]
    return []


def _stages(search: nn.Module, records, by_name, last: str) -> list[str]:
    """Candidate stages, shallow to deep, ending with ``last``: timm's feature_info modules
    before it, else the last module at each spatial resolution."""
    order = {name: k for k, (name, _, _) in enumerate(records)}
    names = [n for n in _feature_info_names(search) if n in by_name and _is_map(by_name[n][1])]
    if not names:
        last_of_shape: dict[tuple[int, int], int] = {}
        for k, (_, _, out) in enumerate(records):
            if _is_map(out):
                last_of_shape[tuple(out.shape[-2:])] = k
        names = [_outermost(records, records[k][2]) for k in sorted(last_of_shape.values())]
    names = [n for n in dict.fromkeys(names) if order[n] < order[last] and n != last]
    return sorted(names, key=order.__getitem__) + [last]


def _resolve_user_layer(model: nn.Module, search: nn.Module, layer: str, arch: str) -> str:
    """``layer`` as a module name of ``search`` (also accepts ``backbone.NAME`` of the full model)."""
    names = dict(search.named_modules())
    for cand in (layer, layer.removeprefix("backbone.")):
        if cand and cand in names:
            return cand
    stages = ", ".join(_feature_info_names(search)) or "see model.named_modules()"
    raise NpcaiError(f"target layer {layer!r}: backbone {arch!r} has no such module; its stages are {stages}")


def _min_input_for(size: int, feature: int, input_size: int) -> int:
    """The input size at which a map of ``feature`` px at ``input_size`` px would be ``size`` px."""
    return int(math.ceil(size * input_size / max(feature, 1)))


def find_target_layer(model: nn.Module, *, input_shape: tuple[int, int, int, int] = (1, 1, 96, 96),
                      layer: str | None = None, min_size: int = MIN_MAP_SIZE) -> TargetLayer:
    """The layer Grad-CAM hooks in ``model`` (a timm backbone or a classifier with a
    ``.backbone``), for inputs of ``input_shape`` ``(B, C, H, W)``. For a deep ensemble it is
    the layer of its first member; :func:`npcai.explain.cam.compute_cams` hooks the layer of
    the same name in every member.

    Args:
        model: the network.
        input_shape: the run's input shape (its ROI size); the choice depends on it.
        layer: a module name (e.g. ``"layer3"``) to use instead of the automatic choice.
        min_size: the automatic choice is the deepest stage whose map is at least this
            large in both directions (see the module docstring).

    Raises:
        NpcaiError: the model has no spatial feature map before pooling (e.g. a ViT), the
            probe input is too small for it, or ``layer`` is not one of its modules.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if isinstance(model, DeepEnsemble):      # its members share the architecture
        return find_target_layer(model.members[0], input_shape=input_shape, layer=layer, min_size=min_size)
    search = model.backbone if isinstance(getattr(model, "backbone", None), nn.Module) else model
    arch = backbone_name(model)
    records, pool_inputs = _probe(search, tuple(input_shape))
    by_name = {name: (module, out) for name, module, out in records}
    in_hw = (int(input_shape[-2]), int(input_shape[-1]))
    last, rule = _last_stage(search, arch, records, pool_inputs, by_name)

    def make(name: str, rule: str) -> TargetLayer:
        module, out = by_name[name]
        if not _is_map(out):
            raise _not_a_map(arch, name, out)
        return TargetLayer(name=name, module=module, feature_shape=tuple(int(v) for v in out.shape[1:]),
                           rule=rule, last_stage=last, input_size=in_hw)

    if layer is not None:
        name = _resolve_user_layer(model, search, layer, arch)
        if name not in by_name:
            raise NpcaiError(f"target layer {layer!r}: backbone {arch!r} does not run it on a "
                             f"{in_hw[0]}x{in_hw[1]} px input; choose one of {', '.join(_feature_info_names(search))}")
        chosen = make(name, "user")
    else:
        make(last, rule)                       # the last stage must be a map (refuses ViTs by name)
        stages = _stages(search, records, by_name, last)
        sizes = {n: tuple(by_name[n][1].shape[-2:]) for n in stages}
        deep_enough = [n for n in stages if min(sizes[n]) >= min_size]
        if deep_enough:
            name = deep_enough[-1]
            chosen = make(name, rule if name == last else f"stage>={min_size}x{min_size}")
        else:
            name = max(stages, key=lambda n: (min(sizes[n]), stages.index(n)))
            chosen = make(name, "input-too-small")
            h, w = chosen.map_size
            need = _min_input_for(min_size, min(h, w), min(in_hw))
            log.warning("backbone %s: the input (%dx%d px) is too small for Grad-CAM: no stage gives a %dx%d map; "
                        "using %s, the largest (%dx%d); build ROI images of at least %d px for a resolved map",
                        arch, in_hw[0], in_hw[1], min_size, min_size, name, h, w, need)
    h, w = chosen.map_size
    if min(h, w) <= SMALL_MAP_SIZE:
        log.warning("backbone %s: Grad-CAM layer %s gives a %dx%d map at %dx%d px input: upsampled, it is a blob "
                    "and its energy shares are close to uniform; use a larger input or an earlier layer",
                    arch, chosen.name, h, w, in_hw[0], in_hw[1])
    return chosen
