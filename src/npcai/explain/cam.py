"""Class activation maps for npcai's one-logit classifiers, through pytorch-grad-cam.

npcai classifiers output one logit per image (``sigmoid(logit) = P(label 1 = high risk)``),
so the usual "class index" targets do not apply. A :class:`LogitTarget` is a callable that
pytorch-grad-cam accepts as a target (it receives ``model_output[i]``) and returns
``sign * logit``:

- ``target="high-risk"``: sign ``+1`` for every image: where is the evidence *for* high risk;
- ``target="predicted"``: sign of the image's own logit: the evidence for whichever class the
  model predicts (low-risk images show what argued for low risk).

The channel weights come from the library's methods (Grad-CAM, Grad-CAM++, Score-CAM,
LayerCAM). Unlike the library's default output, the maps are *not* min-max rescaled per
image: :func:`compute_cams` returns the positive part of the raw map, upsampled bilinearly to
the input size, so the localisation shares (:mod:`npcai.explain.localisation`) are shares of
the actual CAM energy rather than of an arbitrarily shifted map.

Examples:
    >>> import numpy as np, timm, torch
    >>> net = torch.nn.Sequential(timm.create_model("resnet18", pretrained=False, num_classes=1,
    ...                                             in_chans=1), torch.nn.Flatten(0))
    >>> res = compute_cams(net, np.random.rand(2, 1, 64, 64).astype("float32"))  # doctest: +SKIP
    >>> res.cams.shape                                                        # doctest: +SKIP
    (2, 64, 64)
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from npcai.errors import NpcaiError
from npcai.models.classifier import DeepEnsemble
from npcai.explain.target_layers import TargetLayer, backbone_name, find_target_layer

__all__ = ["METHODS", "TARGETS", "LogitTarget", "CamResult", "create_cam", "compute_cams"]


TARGETS = ("high-risk", "predicted")


def _methods() -> dict[str, type]:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM, "layercam": LayerCAM}


METHODS = ("gradcam", "gradcam++", "scorecam", "layercam")


class LogitTarget:
    """A pytorch-grad-cam target for a one-logit model: ``sign * logit``.

    Args:
        sign: ``+1`` explains the high-risk class (label 1), ``-1`` the low-risk class.
    """

    def __init__(self, sign: float = 1.0):
        if sign not in (1, -1, 1.0, -1.0):
            raise ValueError(f"sign must be +1 or -1, got {sign}")
        self.sign = float(sign)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return self.sign * model_output.reshape(-1)[0]

    def __repr__(self) -> str:
        return f"LogitTarget(sign={self.sign:+.0f})"


@dataclass
class CamResult:
    """CAMs of a batch of images.

    Attributes:
        cams: ``(N, H, W)`` float32, the positive part of the raw CAM at input resolution.
        logits: ``(N,)`` the model's logits for the images.
        signs: ``(N,)`` the target sign used per image (+1 high risk, -1 low risk).
        target_layer: the hooked layer.
        method, target: as requested.
    """

    cams: np.ndarray
    logits: np.ndarray
    signs: np.ndarray
    target_layer: TargetLayer
    method: str
    target: str


def create_cam(model: nn.Module, method: str, target_layer: nn.Module):
    """The pytorch-grad-cam object for ``method`` (one of :data:`METHODS`) on one layer."""
    if method not in METHODS:
        raise NpcaiError(f"--method {method!r}: unknown CAM method; choose one of {', '.join(METHODS)}")
    return _methods()[method](model=model, target_layers=[target_layer])


@contextlib.contextmanager
def _quiet_scorecam() -> Iterator[None]:
    """Score-CAM draws a tqdm bar per image; library code must not print, so silence it."""
    import pytorch_grad_cam.score_cam as sc

    original = sc.tqdm

    class _NoBar:
        @staticmethod
        def tqdm(iterable, *args, **kwargs):
            return iterable

    sc.tqdm = _NoBar
    try:
        yield
    finally:
        sc.tqdm = original


def _as_tensor(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 4:
        raise NpcaiError(f"images: expected shape (N, C, H, W), got {tuple(x.shape)}")
    return x


def compute_cams(model: nn.Module, images, *, method: str = "gradcam", target: str = "high-risk",
                 target_layer: TargetLayer | None = None, layer: str | None = None,
                 batch_size: int = 16) -> CamResult:
    """CAMs of ``images`` ``(N, C, H, W)`` for a one-logit ``model`` (``(B,C,H,W) -> (B,)``).

    Args:
        model: npcai ``ImageClassifier`` (or any module returning one logit per image).
        images: array or tensor ``(N, C, H, W)``, already normalised as in training.
        method: ``gradcam``, ``gradcam++``, ``scorecam`` or ``layercam``.
        target: ``high-risk`` (logit) or ``predicted`` (logit times its sign).
        target_layer: the layer to hook; found with :func:`find_target_layer` for these
            images' size when omitted (the deepest stage with a map of at least 7x7).
        layer: a module name (e.g. ``"layer3"``) for :func:`find_target_layer` instead of
            its automatic choice (only without ``target_layer``).
        batch_size: images per backward pass.

    Returns:
        :class:`CamResult` with ``cams`` of shape ``(N, H, W)``, non-negative.
    """
    if target not in TARGETS:
        raise NpcaiError(f"--target {target!r}: unknown target; choose one of {', '.join(TARGETS)}")
    x_all = _as_tensor(images)
    if target_layer is None:    # chosen (and warned about when its map is small) for this input size
        target_layer = find_target_layer(model, input_shape=(1, *x_all.shape[1:]), layer=layer)
    elif layer is not None and layer != target_layer.name:
        raise ValueError(f"target_layer {target_layer.name!r} and layer {layer!r} disagree; give one")
    if isinstance(model, DeepEnsemble):
        return _ensemble_cams(model, x_all, method=method, target=target, target_layer=target_layer,
                              batch_size=batch_size)
    return _layer_cams(model, x_all, method=method, target=target, target_layer=target_layer, batch_size=batch_size)


def _target_signs(logits: np.ndarray, target: str) -> np.ndarray:
    """+1 or -1 per image: the logit's sign explained (``predicted``: the predicted class)."""
    return np.where(logits >= 0, 1.0, -1.0) if target == "predicted" else np.ones_like(logits)


def _ensemble_cams(model: DeepEnsemble, x_all: torch.Tensor, *, method: str, target: str,
                   target_layer: TargetLayer, batch_size: int) -> CamResult:
    """A deep ensemble's CAM: the mean of its members' CAMs, each member explaining its own logit
    with the sign the ensemble chose (``predicted``: the ensemble's predicted class), through the
    layer of the same name in every member."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x_all[i:i + batch_size]) for i in range(0, len(x_all), batch_size)])
    model.train(was_training)
    logits = logits.cpu().numpy().astype(np.float64)
    signs = _target_signs(logits, target)
    cams = []
    for member in model.members:
        layer = dataclasses.replace(target_layer, module=member.backbone.get_submodule(target_layer.name))
        cams.append(_layer_cams(member, x_all, method=method, target=target, target_layer=layer,
                                batch_size=batch_size, signs=signs).cams)
    return CamResult(cams=np.mean(cams, axis=0).astype(np.float32), logits=logits, signs=signs,
                     target_layer=target_layer, method=method, target=target)


def _layer_cams(model: nn.Module, x_all: torch.Tensor, *, method: str, target: str, target_layer: TargetLayer,
                batch_size: int, signs: np.ndarray | None = None) -> CamResult:
    """:func:`compute_cams` of one network through one layer; ``signs`` (one per image) fixes the
    target signs instead of deriving them from ``target`` and this network's logits."""
    n, _, h, w = x_all.shape
    was_training = model.training
    cams, logits, used_signs = [], [], []
    cam_obj = create_cam(model, method, target_layer.module)
    cam_obj.batch_size = batch_size          # used by Score-CAM for its masked forward passes
    try:
        with _quiet_scorecam(), torch.enable_grad():
            for start in range(0, n, batch_size):
                x = x_all[start:start + batch_size].clone().requires_grad_(True)  # grads even if weights are frozen
                outputs = cam_obj.activations_and_grads(x)
                out = outputs.reshape(len(x), -1)
                if out.shape[1] != 1:
                    raise NpcaiError(f"model {backbone_name(model)}: outputs {tuple(outputs.shape)}, "
                                     "expected one logit per image")
                logit = out[:, 0].detach().cpu().numpy().astype(np.float64)
                sign = signs[start:start + len(x)] if signs is not None else _target_signs(logit, target)
                targets = [LogitTarget(s) for s in sign]
                if cam_obj.uses_gradients:
                    model.zero_grad(set_to_none=True)
                    loss = sum(t(o) for t, o in zip(targets, outputs))
                    loss.backward()
                store = cam_obj.activations_and_grads
                acts = store.activations[0].cpu().numpy()
                grads = store.gradients[0].cpu().numpy() if store.gradients else None
                raw = cam_obj.get_cam_image(x, target_layer.module, targets, acts, grads, False)
                raw = np.maximum(np.asarray(raw, dtype=np.float32), 0.0)
                up = F.interpolate(torch.from_numpy(raw)[:, None], size=(h, w), mode="bilinear",
                                   align_corners=False)[:, 0].numpy()
                cams.append(np.maximum(up, 0.0))
                logits.append(logit)
                used_signs.append(sign)
    finally:
        cam_obj.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return CamResult(cams=np.concatenate(cams).astype(np.float32), logits=np.concatenate(logits),
                     signs=np.concatenate(used_signs), target_layer=target_layer, method=method, target=target)
