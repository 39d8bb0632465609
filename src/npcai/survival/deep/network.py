"""Study 004's multi-task survival network: per-sequence MIL encoders, a shared trunk, two heads.

Architecture (seed 004, sections 2.3 and Appendix C)::

    bag of a patient's tumour slices (K, C, H, W), C = sequences stacked as channels
      ├─ sequence 1 ─ backbone (SE-ResNet) per slice ─ attention-MIL pool ─┐
      ├─ sequence 2 ─ backbone per slice ─ attention-MIL pool ─────────────┼─ concat ─ trunk (FC)
      └─ ...                                                              ┘      ├─ g(x): Prognostic-score
                                                                                 └─ f(x): Predictive-score
    log-hazard(x, T) = g(x) + (T - 1/2) * f(x)

With ``stacked=True`` one backbone sees all sequences as channels (faster, one encoder).
One sequence works too (C = 1).

Treatment coding (the modified covariate method, Tian et al., JASA 2014, cited by study
004 as [18]): ``T = 1`` for IC+CCRT and ``T = 0`` for CCRT, entered as ``T - 1/2`` (i.e.
+1/2 / -1/2). Then

* log-hazard under IC+CCRT = ``g(x) + f(x)/2``, under CCRT = ``g(x) - f(x)/2``;
* ``f(x)`` = log hazard ratio of IC+CCRT vs CCRT for a patient like ``x``: ``f < 0`` means
  IC+CCRT lowers the hazard (IC+CCRT preferred), ``f > 0`` means CCRT is preferred;
* ``g(x)`` = the mean of the two log-hazards, the patient's prognosis averaged over the
  two treatments, not the prognosis under one arm.

The symmetric +-1/2 coding (rather than 0/1) is what makes the method work: when treatment
is independent of ``x`` with equal arms (randomised, or matched as in study 004's cohort),
``E[(T - 1/2) f(x) h(x)] = 0`` for any ``h``, so the interaction column is orthogonal to the
prognostic part: ``f`` is learnt as the treatment interaction even where ``g`` is imperfect,
and ``g`` is the arm-averaged prognosis instead of the prognosis under the arm coded 0.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> class Tiny(nn.Module):
    ...     num_features = 8
    ...     def __init__(self, c): super().__init__(); self.net = nn.Sequential(
    ...         nn.Conv2d(c, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    ...     def forward(self, x): return self.net(x)
    >>> net = MultiTaskSurvivalNet([Tiny(1), Tiny(1)], sequences=["T1", "T2"])
    >>> net(torch.zeros(3, 5, 2, 16, 16)).shape
    torch.Size([3, 2])
    >>> out = net.predict(torch.zeros(3, 5, 2, 16, 16), treatment=torch.tensor([0., 1., 1.]))
    >>> out.log_hazard.shape, out.log_hazard_ccrt.shape
    (torch.Size([3]), torch.Size([3]))
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from npcai.models.classifier import AttentionPool

__all__ = ["MultiTaskSurvivalNet", "SurvivalOutput", "MaskedAttentionPool", "create_survival_network",
           "TREATMENT_CODING", "PROGNOSTIC", "PREDICTIVE", "log_hazard", "survival_output"]

#: treatment -> T of the modified covariate coding (entered as T - 1/2)
TREATMENT_CODING = {"CCRT": 0, "IC+CCRT": 1}
#: columns of the network's (B, 2) output
PROGNOSTIC, PREDICTIVE = 0, 1


@dataclass
class SurvivalOutput:
    """The network's outputs for a batch of patients (each a (B,) tensor).

    ``log_hazard`` is the log-hazard under each patient's received treatment (None when no
    treatment was given); ``log_hazard_ccrt`` / ``log_hazard_ic_ccrt`` under each arm.
    """

    prognostic: torch.Tensor
    predictive: torch.Tensor
    log_hazard: torch.Tensor | None

    @property
    def log_hazard_ccrt(self) -> torch.Tensor:
        return self.prognostic - 0.5 * self.predictive

    @property
    def log_hazard_ic_ccrt(self) -> torch.Tensor:
        return self.prognostic + 0.5 * self.predictive


def log_hazard(scores: torch.Tensor, treatment: torch.Tensor) -> torch.Tensor:
    """``g + (T - 1/2) f`` from scores (B, 2) and treatment T (B,) of 0 (CCRT) / 1 (IC+CCRT)."""
    if scores.ndim != 2 or scores.shape[1] != 2:
        raise ValueError(f"scores must be (B, 2) [prognostic, predictive], got {tuple(scores.shape)}")
    t = torch.as_tensor(treatment, dtype=scores.dtype, device=scores.device)
    if t.shape != scores.shape[:1]:
        raise ValueError(f"treatment must have shape ({scores.shape[0]},), got {tuple(t.shape)}")
    return scores[:, PROGNOSTIC] + (t - 0.5) * scores[:, PREDICTIVE]


def survival_output(scores: torch.Tensor, treatment: torch.Tensor | None = None) -> SurvivalOutput:
    """Split scores (B, 2) into a :class:`SurvivalOutput` (log-hazard when ``treatment`` is given)."""
    lh = None if treatment is None else log_hazard(scores, treatment)
    return SurvivalOutput(scores[:, PROGNOSTIC], scores[:, PREDICTIVE], lh)


class MaskedAttentionPool(AttentionPool):
    """:class:`~npcai.models.classifier.AttentionPool` over padded bags: padded slices get weight 0.

    ``forward(h (B,K,F), mask (B,K) bool or None) -> (B,F)``; ``weights_`` as in the parent.
    """

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(h)
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        a = torch.softmax(scores, dim=1)
        self.weights_ = a.detach()
        return (a.unsqueeze(-1) * h).sum(dim=1)


class MultiTaskSurvivalNet(nn.Module):
    """Per-sequence (or stacked) MIL encoders -> shared trunk -> prognostic and predictive heads.

    Args:
        backbones: one feature extractor per sequence (each maps (N, 1, H, W) -> (N, F) and
            has ``num_features``), or a single one over all channels when ``stacked``.
        sequences: the sequence of each input channel, in channel order (e.g. T1, T2, T1c).
        stacked: one backbone over all channels instead of one per sequence.
        hidden: width of the shared fully connected trunk.
        dropout: dropout in the trunk.
        attention_hidden: hidden width of the attention-MIL scorer.

    ``forward(bags (B, K, C, H, W), mask (B, K) bool or None)`` returns scores (B, 2)
    [prognostic g(x), predictive f(x)]; ``predict(bags, treatment)`` a :class:`SurvivalOutput`
    with the log-hazard under the given treatment and under each arm.
    """

    def __init__(self, backbones: Sequence[nn.Module], sequences: Sequence[str], *, stacked: bool = False,
                 hidden: int = 64, dropout: float = 0.2, attention_hidden: int = 64):
        super().__init__()
        self.sequences = list(sequences)
        if not self.sequences:
            raise ValueError("sequences is empty: the network needs at least one input sequence")
        self.stacked = bool(stacked)
        expected = 1 if self.stacked else len(self.sequences)
        if len(backbones) != expected:
            raise ValueError(f"{len(backbones)} backbones for {len(self.sequences)} sequences "
                             f"({'stacked' if stacked else 'one per sequence'}): expected {expected}")
        self.backbones = nn.ModuleList(backbones)
        feats = [int(b.num_features) for b in backbones]
        self.pools = nn.ModuleList(MaskedAttentionPool(f, attention_hidden) for f in feats)
        self.trunk = nn.Sequential(nn.Linear(sum(feats), hidden), nn.ReLU(), nn.Dropout(dropout))
        self.prognostic_head = nn.Linear(hidden, 1)
        self.predictive_head = nn.Linear(hidden, 1)

    @property
    def in_chans(self) -> int:
        return len(self.sequences)

    def encode(self, bags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The shared trunk's representation (B, hidden) of bags (B, K, C, H, W)."""
        if bags.ndim != 5 or bags.shape[2] != self.in_chans:
            raise ValueError(f"bags must be (B, K, {self.in_chans}, H, W) for sequences {self.sequences}, "
                             f"got {tuple(bags.shape)}")
        b, k = bags.shape[:2]
        if mask is not None and (mask.dtype != torch.bool or mask.shape != (b, k)):
            raise ValueError(f"mask must be a bool tensor of shape ({b}, {k}), got {mask.dtype} {tuple(mask.shape)}")
        flat = bags.flatten(0, 1)                                   # (B*K, C, H, W)
        inputs = [flat] if self.stacked else [flat[:, i:i + 1] for i in range(self.in_chans)]
        pooled = [pool(net(x).view(b, k, -1), mask)
                  for net, pool, x in zip(self.backbones, self.pools, inputs)]
        return self.trunk(torch.cat(pooled, dim=1))

    def forward(self, bags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, 2): column :data:`PROGNOSTIC` = g(x), column :data:`PREDICTIVE` = f(x).

        A plain tensor, so the trainer and Grad-CAM treat the two heads like two output units
        (Grad-CAM of the prognostic head = target unit 0, of the predictive head = unit 1).
        """
        z = self.encode(bags, mask)
        return torch.cat([self.prognostic_head(z), self.predictive_head(z)], dim=1)

    def predict(self, bags: torch.Tensor, treatment: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> SurvivalOutput:
        """:class:`SurvivalOutput` of bags, with the log-hazard under ``treatment`` (0/1) when given."""
        return survival_output(self(bags, mask), treatment)

    def attention(self) -> dict[str, torch.Tensor | None]:
        """Last forward pass's attention weights (B, K) per encoder (sequence name or 'stacked')."""
        names = ["+".join(self.sequences)] if self.stacked else self.sequences
        return {n: p.weights_ for n, p in zip(names, self.pools)}


def create_survival_network(backbone: str = "seresnet50", *, sequences: Sequence[str] = ("T1", "T2", "T1c"),
                            stacked: bool = False, pretrained: bool = False, weights: str | Path | None = None,
                            hidden: int = 64, dropout: float = 0.2) -> MultiTaskSurvivalNet:
    """Study 004's network on timm backbones (``seresnet50`` as the seed; any timm name).

    Per-sequence mode builds one single-channel backbone per sequence; ``stacked=True``
    builds one backbone with ``len(sequences)`` input channels.
    """
    from npcai.models.factory import create_backbone

    seqs = list(sequences)
    if stacked:
        nets = [create_backbone(backbone, in_chans=len(seqs), pretrained=pretrained, weights=weights)]
    else:
        nets = [create_backbone(backbone, in_chans=1, pretrained=pretrained, weights=weights) for _ in seqs]
    return MultiTaskSurvivalNet(nets, seqs, stacked=stacked, hidden=hidden, dropout=dropout)
