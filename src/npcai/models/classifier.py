"""The seeds' classifiers: a timm backbone + dropout + linear head, per slice or per patient.

:class:`ImageClassifier` scores one slice (the image-as-unit design of studies 000-003);
:class:`PatientMILClassifier` scores a bag of a patient's slices through the same kind of
backbone and a pooling layer (mean or attention), the patient-as-unit design of study 002
and the multiple-instance learning of study 004.

Examples:
    >>> import timm, torch
    >>> net = ImageClassifier(timm.create_model("resnet18", num_classes=0, in_chans=1))
    >>> net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2])
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ImageClassifier", "DeepEnsemble", "PatientMILClassifier", "AttentionPool", "MeanPool", "POOLINGS"]


class ImageClassifier(nn.Module):
    """Backbone features -> Dropout -> Linear(1): one logit per image (sigmoid = P(label 1)).

    Args:
        backbone: a timm model created with ``num_classes=0`` (returns pooled features).
        dropout: dropout probability before the linear layer (the seeds use 0.5).
    """

    def __init__(self, backbone: nn.Module, dropout: float = 0.5):
        super().__init__()
        self.backbone = backbone
        self.num_features = int(backbone.num_features)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features, shape (B, num_features)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B,) for images of shape (B, C, H, W)."""
        return self.head(self.features(x)).squeeze(-1)


class DeepEnsemble(nn.Module):
    """K image classifiers of the same architecture (a deep ensemble, Lakshminarayanan et al.,
    2017): one logit per image, that of the members' mean probability.

    ``npcai train --members K`` trains each member alone, as the one-network run of its own seed
    (initialisation, augmentation, batch order) on the run's split, stopped and selected at its
    own best validation epoch (:func:`npcai.models.train.train`); averaging them removes much of
    the run-to-run variation of one small network trained on a small cohort.

    Args:
        members: two or more :class:`ImageClassifier` of the same architecture.

    Examples:
        >>> import timm, torch
        >>> nets = [ImageClassifier(timm.create_model("resnet18", num_classes=0, in_chans=1)) for _ in range(2)]
        >>> DeepEnsemble(nets)(torch.zeros(3, 1, 64, 64)).shape
        torch.Size([3])
    """

    def __init__(self, members: list[ImageClassifier]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a deep ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits, shape (K, B)."""
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B,) of the members' mean probability."""
        p = torch.sigmoid(self.member_logits(x)).mean(dim=0)
        return torch.logit(p, eps=1e-7)


class MeanPool(nn.Module):
    """Mean of instance features over the bag: (B, K, F) -> (B, F)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=1)


class AttentionPool(nn.Module):
    """Attention-based MIL pooling (Ilse et al., 2018): a learned weight per instance.

    ``weights_`` holds the last forward pass's attention weights (B, K) for inspection.
    """

    def __init__(self, num_features: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.weights_: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.score(h).squeeze(-1), dim=1)  # (B, K)
        self.weights_ = a.detach()
        return (a.unsqueeze(-1) * h).sum(dim=1)


POOLINGS = {"mean": MeanPool, "attention": AttentionPool}


class PatientMILClassifier(nn.Module):
    """A bag of a patient's slices -> one logit per patient (multiple-instance learning).

    The per-slice network is an :class:`ImageClassifier` (``.slice_model``) whose backbone
    embeds every slice of the bag; the embeddings are pooled (mean or attention) and the
    slice model's own head scores the pooled feature. Because the head is shared,
    ``slice_model`` alone also gives per-slice probabilities (used for slice predictions
    and Grad-CAM).

    Args:
        slice_model: the per-slice classifier.
        pooling: ``"mean"`` or ``"attention"``.
    """

    def __init__(self, slice_model: ImageClassifier, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, not {pooling!r}")
        self.slice_model = slice_model
        self.pooling_name = pooling
        self.pool = MeanPool() if pooling == "mean" else AttentionPool(slice_model.num_features)

    def forward(self, bags: torch.Tensor) -> torch.Tensor:
        """Logits (B,) for bags of shape (B, K, C, H, W)."""
        b, k = bags.shape[:2]
        h = self.slice_model.features(bags.flatten(0, 1)).view(b, k, -1)
        return self.slice_model.head(self.pool(h)).squeeze(-1)
