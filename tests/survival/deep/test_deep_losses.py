"""The Cox loss against R's survival::coxph and lifelines, and its behaviour without events."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from npcai.survival.deep.losses import cox_loss, cox_partial_log_likelihood

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def batch():
    d = pd.read_csv(FIX / "cox_batch.csv")
    ref = json.loads((FIX / "cox_reference.json").read_text())
    return d, ref


def _eta(d, beta):
    x = torch.tensor(d[["x1", "x2"]].to_numpy(), dtype=torch.float64)
    return x @ torch.tensor(beta, dtype=torch.float64)


def _te(d):
    return torch.tensor(d["time"].to_numpy(), dtype=torch.float64), torch.tensor(d["event"].to_numpy())


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_partial_likelihood_equals_r_at_fixed_coefficients(batch, ties):
    d, ref = batch
    assert ref["n_tied_event_times"] > 0  # the fixture exercises ties
    t, e = _te(d)
    ll = cox_partial_log_likelihood(_eta(d, ref["beta"]), t, e, ties=ties)
    assert float(ll) == pytest.approx(ref[f"loglik_{ties}"], abs=1e-9)
    mle = ref[f"mle_{ties}"]
    assert float(cox_partial_log_likelihood(_eta(d, mle["coef"]), t, e, ties=ties)) == \
        pytest.approx(mle["loglik"], abs=1e-8)


def test_efron_equals_lifelines_and_is_invariant_to_order_and_shift(batch):
    from lifelines import CoxPHFitter

    d, _ = batch
    cph = CoxPHFitter().fit(d, duration_col="time", event_col="event")
    beta = cph.params_[["x1", "x2"]].to_numpy()
    t, e = _te(d)
    eta = _eta(d, beta)
    ll = cox_partial_log_likelihood(eta, t, e)
    assert float(ll) == pytest.approx(cph.log_likelihood_, abs=1e-6)
    perm = torch.randperm(len(d), generator=torch.Generator().manual_seed(0))
    assert float(cox_partial_log_likelihood(eta[perm] + 50.0, t[perm], e[perm])) == pytest.approx(float(ll), abs=1e-9)
    # mean reduction = minus the sum divided by the number of events
    assert float(cox_loss(eta, t, e)) == pytest.approx(-float(ll) / int(e.sum()), abs=1e-12)
    assert float(cox_loss(eta, t, e, reduction="sum")) == pytest.approx(-float(ll), abs=1e-12)


def test_gradient_matches_finite_differences(batch):
    d, ref = batch
    t, e = _te(d)
    eta = _eta(d, ref["beta"]).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: cox_loss(z, t, e), (eta,))


def test_batch_without_events_gives_finite_zero_with_gradient_path():
    net = torch.nn.Linear(3, 1)
    x = torch.randn(6, 3)
    eta = net(x).squeeze(-1)
    loss = cox_loss(eta, torch.arange(1.0, 7.0), torch.zeros(6, dtype=torch.long))
    assert torch.isfinite(loss) and loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert net.weight.grad is not None and torch.equal(net.weight.grad, torch.zeros_like(net.weight))


def test_large_log_hazards_stay_finite():
    eta = torch.tensor([800.0, 0.0, -800.0], requires_grad=True)
    loss = cox_loss(eta, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, 1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(eta.grad).all()
    # exact value: event 1 has the largest hazard (term 0), event 2 shares its set with -800
    assert loss.item() == pytest.approx(-(0.0 - np.logaddexp(0.0, -800.0)) / 2, abs=1e-6)


def test_bad_arguments_fail_fast():
    eta = torch.zeros(3)
    with pytest.raises(ValueError, match="ties"):
        cox_loss(eta, torch.ones(3), torch.ones(3), ties="exact")
    with pytest.raises(ValueError, match="same shape"):
        cox_loss(eta, torch.ones(4), torch.ones(3))
    with pytest.raises(ValueError, match="event"):
        cox_loss(eta, torch.ones(3), torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="time"):
        cox_loss(eta, torch.tensor([1.0, -1.0, 2.0]), torch.ones(3))
    assert np.isfinite(float(cox_loss(eta, torch.ones(3), torch.ones(3))))
