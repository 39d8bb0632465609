"""The multi-task survival network: shapes, the modified covariate coding, and learning a planted interaction."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from npcai.stats.auc import auc_ci
from npcai.stats.concordance import harrell_c
from npcai.survival.deep.losses import cox_loss
from npcai.survival.deep.network import MultiTaskSurvivalNet, create_survival_network, log_hazard


class TinyCNN(nn.Module):
    """A few-thousand-parameter feature extractor, so the test learns in seconds."""

    num_features = 8

    def __init__(self, in_chans: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.net(x)


def _synthetic(n: int, seed: int, k: int = 3, size: int = 12):
    """Bags of 2-channel slices: channel 0 brightness = prognosis, a bright centre spot on
    channel 1 = 'necrosis' (CCRT better for them, IC+CCRT better for the others)."""
    rng = np.random.default_rng(seed)
    prog = rng.normal(size=n)
    group = rng.random(n) < 0.5
    treat = (rng.random(n) < 0.5).astype(np.float32)
    x = rng.normal(0, 0.3, (n, k, 2, size, size)).astype(np.float32)
    x[:, :, 0] += prog[:, None, None, None]
    c = size // 2
    x[group, :, 1, c - 2:c + 2, c - 2:c + 2] += 2.0
    f_true = np.where(group, 1.5, -1.5)
    log_h = 0.8 * prog + (treat - 0.5) * f_true
    t = rng.exponential(np.exp(-log_h))
    cens = rng.exponential(2.0, n)
    return (torch.from_numpy(x), torch.from_numpy(treat), torch.from_numpy(np.minimum(t, cens)),
            torch.from_numpy((t <= cens).astype(np.int64)), group, prog)


def test_coding_and_log_hazard_under_each_treatment():
    torch.manual_seed(0)
    net = MultiTaskSurvivalNet([TinyCNN(), TinyCNN()], sequences=["T1", "T2"]).eval()
    bags = torch.randn(4, 3, 2, 12, 12)
    out = net.predict(bags, treatment=torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(out.log_hazard_ic_ccrt - out.log_hazard_ccrt, out.predictive)
    torch.testing.assert_close((out.log_hazard_ic_ccrt + out.log_hazard_ccrt) / 2, out.prognostic)
    torch.testing.assert_close(out.log_hazard[[0, 2]], out.log_hazard_ccrt[[0, 2]])
    torch.testing.assert_close(out.log_hazard[[1, 3]], out.log_hazard_ic_ccrt[[1, 3]])
    assert net.predict(bags).log_hazard is None
    torch.testing.assert_close(net(bags), torch.stack([out.prognostic, out.predictive], dim=1))
    # padded slices are ignored: a bag padded with garbage scores like the unpadded bag
    padded = torch.cat([bags, 100 * torch.randn(4, 2, 2, 12, 12)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 4)
    padded_score = net(padded, mask=mask)
    weights = net.attention()["T1"]
    assert weights.shape == (4, 5) and torch.all(weights[:, 3:] == 0)
    torch.testing.assert_close(padded_score, net(bags))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        net(bags, torch.ones(4))
    with pytest.raises(ValueError, match=r"bags must be \(B, K, 2, H, W\)"):
        net(torch.zeros(4, 3, 1, 12, 12))


def test_timm_backbones_per_sequence_stacked_and_single_sequence():
    bags = torch.randn(2, 2, 3, 32, 32)
    per_seq = create_survival_network("seresnet18", sequences=["T1", "T2"])
    assert len(per_seq.backbones) == 2 and per_seq(bags[:, :, :2]).shape == (2, 2)
    assert per_seq.backbones[0] is not per_seq.backbones[1]
    stacked = create_survival_network("resnet10t", sequences=["T1", "T2", "T1c"], stacked=True)
    assert len(stacked.backbones) == 1 and stacked.predict(bags, torch.ones(2)).log_hazard.shape == (2,)
    one = create_survival_network("resnet10t", sequences=["T1c"])
    assert one.predict(bags[:, :, :1]).predictive.shape == (2,)


@pytest.mark.slow
def test_tiny_model_learns_a_planted_treatment_interaction():
    torch.manual_seed(0)
    x, treat, time, event, _, _ = _synthetic(256, seed=1)
    xv, _, tv, ev, group_v, prog_v = _synthetic(256, seed=2)
    net = MultiTaskSurvivalNet([TinyCNN(), TinyCNN()], sequences=["T1", "T2"], hidden=16, dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        for idx in torch.randperm(len(x), generator=gen).split(128):  # risk sets over 128 patients
            loss = cox_loss(log_hazard(net(x[idx]), treat[idx]), time[idx], event[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        out = net.predict(xv)
    # the predictive score separates the interacting group (f > 0: CCRT preferred) ...
    auc = auc_ci(group_v.astype(int), out.predictive.numpy()).auc
    assert auc > 0.8, auc
    # ... and the prognostic score ranks the planted prognosis
    assert np.corrcoef(out.prognostic.numpy(), prog_v)[0, 1] > 0.6
    assert harrell_c(tv.numpy(), ev.numpy(), out.prognostic.numpy()).c_index > 0.6
