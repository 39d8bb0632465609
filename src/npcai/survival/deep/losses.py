"""The Cox partial log-likelihood as a torch loss, with Efron's or Breslow's handling of ties.

The loss of a batch is the negative partial log-likelihood of its patients, with risk sets
formed over the batch: for each distinct event time ``t`` with ``d`` events ``D`` and risk
set ``R = {j: time_j >= t}``,

* Efron:   ``sum_{i in D} eta_i - sum_{k=0}^{d-1} log(sum_{R} e^eta - k/d * sum_{D} e^eta)``
* Breslow: ``sum_{i in D} eta_i - d * log(sum_{R} e^eta)``

(a censored patient whose time equals an event time is in that event's risk set, as in R's
``survival::coxph`` and lifelines). With ``reduction="mean"`` the sum is divided by the
number of events, so the loss scale does not depend on the batch's event count.

A batch without any event has no partial likelihood. It returns a zero that is still a
function of ``log_hazard`` (``0 * sum(log_hazard)``), so ``backward()`` works and every
parameter receives a (zero) gradient: no NaN, no detached tensor, no unused parameters under
DDP. (torchsurv's ``neg_partial_log_likelihood`` returns a fresh leaf tensor there, which is
detached from the model; see the report of issue 14.)

Checked against R's ``survival::coxph`` log-likelihood at fixed coefficients on a batch with
tied event times (``tests/survival/deep/fixtures``).

Examples:
    >>> import torch
    >>> eta = torch.tensor([0.5, -0.2, 0.1, 0.0], requires_grad=True)
    >>> loss = cox_loss(eta, time=torch.tensor([2., 3., 3., 5.]), event=torch.tensor([1, 1, 1, 0]))
    >>> loss.backward(); bool(torch.isfinite(eta.grad).all())
    True
"""
from __future__ import annotations

from typing import Literal

import torch

__all__ = ["cox_partial_log_likelihood", "cox_loss", "TIES"]

TIES = ("efron", "breslow")


def _check(log_hazard: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
    if log_hazard.ndim != 1:
        raise ValueError(f"log_hazard must be 1-D (one value per patient), got shape {tuple(log_hazard.shape)}")
    if time.shape != log_hazard.shape or event.shape != log_hazard.shape:
        raise ValueError(f"log_hazard {tuple(log_hazard.shape)}, time {tuple(time.shape)} and event "
                         f"{tuple(event.shape)} must have the same shape")
    if not torch.isfinite(time).all() or (time < 0).any():
        raise ValueError("time must be finite and >= 0")
    if not ((event == 0) | (event == 1)).all():
        raise ValueError("event must be 0 (censored) or 1 (event)")


def cox_partial_log_likelihood(log_hazard: torch.Tensor, time: torch.Tensor, event: torch.Tensor,
                               ties: Literal["efron", "breslow"] = "efron") -> torch.Tensor:
    """The Cox partial log-likelihood (a scalar, summed over events) of one batch.

    Args:
        log_hazard: (n,) the model's log relative hazard per patient.
        time: (n,) follow-up times.
        event: (n,) 1 event, 0 censored.
        ties: ``"efron"`` (R's and lifelines' default) or ``"breslow"``.

    Returns:
        A 0-d tensor; ``0 * log_hazard.sum()`` when the batch has no event.
    """
    time = torch.as_tensor(time, device=log_hazard.device)
    event = torch.as_tensor(event, device=log_hazard.device)
    _check(log_hazard, time, event, ties)
    ev = event.bool()
    if not ev.any():
        return log_hazard.sum() * 0.0
    eta = log_hazard
    t_event = torch.unique(time[ev])                                     # (m,) distinct event times
    at_risk = time.unsqueeze(0) >= t_event.unsqueeze(1)                  # (m, n)
    died = (time.unsqueeze(0) == t_event.unsqueeze(1)) & ev.unsqueeze(0)
    d = died.sum(1).to(eta.dtype)                                        # (m,) events per time
    neg_inf = torch.full_like(at_risk, float("-inf"), dtype=eta.dtype)
    # log-sum-exp over each risk set: finite whatever the spread of log-hazards
    log_risk = torch.logsumexp(torch.where(at_risk, eta.unsqueeze(0), neg_inf), dim=1)
    numerator = (eta * ev.to(eta.dtype)).sum()
    if ties == "breslow":
        return numerator - (d * log_risk).sum()
    log_died = torch.logsumexp(torch.where(died, eta.unsqueeze(0), neg_inf), dim=1)
    ratio = torch.exp(log_died - log_risk)                               # S_D / S_R in (0, 1]
    k = torch.arange(int(d.max().item()), device=eta.device, dtype=eta.dtype)  # (K,)
    valid = k.unsqueeze(0) < d.unsqueeze(1)                              # (m, K)
    frac = torch.where(valid, k.unsqueeze(0) / d.unsqueeze(1), torch.zeros_like(valid, dtype=eta.dtype))
    # log(S_R - k/d S_D) = log S_R + log1p(-k/d * S_D/S_R); k/d <= (d-1)/d keeps it finite
    log_terms = torch.log1p(-frac * ratio.unsqueeze(1)) * valid.to(eta.dtype)
    return numerator - (d * log_risk).sum() - log_terms.sum()


def cox_loss(log_hazard: torch.Tensor, time: torch.Tensor, event: torch.Tensor,
             ties: Literal["efron", "breslow"] = "efron",
             reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Negative Cox partial log-likelihood of a batch: the training loss of a deep Cox model.

    Args:
        log_hazard, time, event, ties: as for :func:`cox_partial_log_likelihood`.
        reduction: ``"mean"`` divides by the number of events in the batch, ``"sum"`` does not.

    Returns:
        A 0-d tensor, a finite zero connected to ``log_hazard`` when the batch has no event.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    ll = cox_partial_log_likelihood(log_hazard, time, event, ties)
    if reduction == "mean":
        n_events = torch.as_tensor(event, device=log_hazard.device).sum().clamp(min=1)
        ll = ll / n_events.to(ll.dtype)
    return -ll
