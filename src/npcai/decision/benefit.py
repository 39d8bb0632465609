"""C-for-benefit (van Klaveren et al. 2018): does a model's *predicted* treatment benefit rank
patients the way the *observed* benefit does?

Real data shows one treatment per patient, so no patient's benefit is observed. The
C-for-benefit pairs each patient of one arm with a patient of the other arm who has a
similar predicted benefit (1:1, nearest predicted benefit, without replacement); within a
pair the *observed* benefit is the difference of their binary outcomes,

    observed = outcome(control patient) - outcome(experimental patient)   in {-1, 0, 1}

(1: the patient who got the experimental treatment did well and the one without it did not),
and the pair's *predicted* benefit is the mean of the two patients' predicted benefits. The
C-for-benefit is the concordance between predicted and observed pair benefit over all pairs
of pairs whose observed benefits differ (ties in predicted benefit count one half), as
Harrell's C over the matched pairs.

Here the outcome is the event before a horizon (e.g. DFS event within 60 months); patients
censored before the horizon without an event have no binary outcome and are left out
(counted in :attr:`BenefitConcordance.n_excluded`).

Known limits (van Klaveren 2018 and the later discussion by Hoogland et al. 2024, Efthimiou
et al. 2023):

* it scores the *ranking* of benefit only, not its calibration: a model predicting benefits
  ten times too large has the same C-for-benefit;
* pairing on predicted benefit makes the result depend on the matching (ties, which patients
  stay unmatched when the arms differ in size) and on the model being judged;
* observed pair benefit is a coarse, very noisy proxy (three values), so the statistic has a
  wide sampling distribution: hundreds of pairs are needed for a useful CI;
* dropping patients censored before the horizon favours short follow-up and can bias it;
* in an observational cohort the arms are not exchangeable: confounding shifts it. On the
  phantom, score the recommendation against the counterfactual truth instead
  (:mod:`npcai.decision.truth`).

Examples:
    Four patients per arm, paired by predicted benefit (0.1 with 0.1, ...); the observed pair
    benefits are 0, -1, 1, 1, and four of the five pairs of pairs with different observed
    benefit are ranked the same way by the predicted benefit:

    >>> r = c_for_benefit([0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4],
    ...                   [0, 0, 0, 0, 1, 1, 1, 1],
    ...                   [0, 0, 1, 1, 0, 1, 0, 0], n_boot=0)
    >>> r.n_pairs, round(r.c_for_benefit, 3)
    (4, 0.8)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["BenefitConcordance", "c_for_benefit", "match_on_benefit", "binary_outcome_at",
           "c_for_benefit_survival"]


@dataclass(frozen=True)
class BenefitConcordance:
    """The C-for-benefit with a bootstrap CI over pairs.

    Attributes:
        c_for_benefit: concordance of predicted vs observed pair benefit (0.5 = no ranking).
        low, high: percentile bootstrap 95% CI (NaN without bootstrap).
        n_pairs: matched pairs; n_unmatched: patients of the larger arm left without a partner.
        n_comparable: pairs of pairs with different observed benefit (the denominator).
        n_excluded: patients without a binary outcome (censored before the horizon).
        pairs: DataFrame per pair: control, experimental (positions or ids), predicted, observed.
    """

    c_for_benefit: float
    low: float
    high: float
    n_pairs: int
    n_unmatched: int
    n_comparable: int
    n_excluded: int
    pairs: pd.DataFrame

    def to_dict(self) -> dict:
        return {"c_for_benefit": self.c_for_benefit, "low": self.low, "high": self.high,
                "n_pairs": self.n_pairs, "n_unmatched": self.n_unmatched, "n_comparable": self.n_comparable,
                "n_excluded": self.n_excluded}


def match_on_benefit(benefit, treated) -> list[tuple[int, int]]:
    """1:1 pairs (control position, experimental position) nearest in predicted benefit.

    Patients of the smaller arm are taken in increasing order of predicted benefit (ties by
    position); each takes the nearest still-unmatched patient of the other arm (ties: the
    lower benefit, then the earlier position). Deterministic, without replacement.
    """
    b = np.asarray(benefit, dtype=float)
    t = np.asarray(treated).astype(int)
    ctrl, expt = np.flatnonzero(t == 0), np.flatnonzero(t == 1)
    small, large = (ctrl, expt) if ctrl.size <= expt.size else (expt, ctrl)
    small = small[np.lexsort((small, b[small]))]
    free = np.ones(large.size, bool)
    order = np.lexsort((large, b[large]))
    large, free = large[order], free[order]
    pairs = []
    for i in small:
        cand = np.flatnonzero(free)
        if cand.size == 0:
            break
        j = cand[int(np.argmin(np.abs(b[large[cand]] - b[i])))]
        free[j] = False
        pairs.append((int(i), int(large[j])) if t[i] == 0 else (int(large[j]), int(i)))
    return pairs


def _concordance(pred: np.ndarray, obs: np.ndarray) -> tuple[float, int]:
    """Harrell-type concordance of ``pred`` with ``obs`` over pairs with different ``obs``."""
    d_obs = np.sign(obs[:, None] - obs[None, :])
    d_pred = np.sign(pred[:, None] - pred[None, :])
    upper = np.triu(np.ones_like(d_obs, dtype=bool), 1)
    use = upper & (d_obs != 0)
    n = int(use.sum())
    if n == 0:
        return float("nan"), 0
    agree = (d_obs[use] * d_pred[use])
    return float(((agree > 0).sum() + 0.5 * (agree == 0).sum()) / n), n


def c_for_benefit(predicted_benefit, treated, outcome, *, n_boot: int = 200, seed: int = 0,
                  ids=None) -> BenefitConcordance:
    """C-for-benefit of a predicted benefit (higher = the experimental treatment helps more).

    Args:
        predicted_benefit: per patient, e.g. predicted 5-year DFS under IC+CCRT minus under CCRT.
        treated: 1 = received the experimental treatment, 0 = control.
        outcome: 1 = bad outcome (event before the horizon), 0 = good; NaN = unknown (left out).
        n_boot: bootstrap resamples of the matched pairs for the CI (0: none).
        seed: bootstrap seed.
        ids: patient ids for the pair table (default: positions).
    """
    b = np.asarray(predicted_benefit, dtype=float)
    t = np.asarray(treated, dtype=float)
    y = np.asarray(outcome, dtype=float)
    if not (b.size == t.size == y.size):
        raise NpcaiError(f"C-for-benefit: {b.size} benefits, {t.size} treatments and {y.size} outcomes; give one "
                         "of each per patient")
    if not np.isin(t, (0.0, 1.0)).all():
        raise NpcaiError("C-for-benefit: treatment must be coded 0 (control) / 1 (experimental)")
    if not np.isfinite(b).all():
        raise NpcaiError("C-for-benefit: a predicted benefit is missing; every patient needs one")
    known = np.isfinite(y)
    if not np.isin(y[known], (0.0, 1.0)).all():
        raise NpcaiError("C-for-benefit: outcomes must be 0/1 (1 = event before the horizon) or missing")
    ids = np.asarray(ids if ids is not None else np.arange(b.size), dtype=object)
    keep = np.flatnonzero(known)
    bk, tk, yk = b[keep], t[keep].astype(int), y[keep]
    if min((tk == 0).sum(), (tk == 1).sum()) < 2:
        raise NpcaiError("C-for-benefit: fewer than two patients with a known outcome in one arm; it needs "
                         "patients of both treatments")
    pairs = match_on_benefit(bk, tk)
    c_idx = np.array([p[0] for p in pairs])
    e_idx = np.array([p[1] for p in pairs])
    pred = (bk[c_idx] + bk[e_idx]) / 2
    obs = yk[c_idx] - yk[e_idx]
    c, n_comp = _concordance(pred, obs)
    low = high = float("nan")
    if n_boot and len(pairs) >= 2:
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(n_boot):
            i = rng.integers(0, len(pairs), len(pairs))
            v, n = _concordance(pred[i], obs[i])
            if n:
                vals.append(v)
        if vals:
            low, high = (float(q) for q in np.quantile(vals, [0.025, 0.975]))
    table = pd.DataFrame({"control": ids[keep][c_idx], "experimental": ids[keep][e_idx],
                          "benefit_control": bk[c_idx], "benefit_experimental": bk[e_idx],
                          "predicted": pred, "observed": obs})
    return BenefitConcordance(c_for_benefit=c, low=low, high=high, n_pairs=len(pairs),
                              n_unmatched=int(tk.size - 2 * len(pairs)), n_comparable=n_comp,
                              n_excluded=int((~known).sum()), pairs=table)


def binary_outcome_at(time, event, horizon: float) -> np.ndarray:
    """1 = event at or before ``horizon``, 0 = followed beyond it without event, NaN = censored
    before it (unknown)."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    out = np.full(t.size, np.nan)
    out[(e == 1) & (t <= horizon)] = 1.0
    out[t > horizon] = 0.0
    return out


def c_for_benefit_survival(predicted_benefit, treated, time, event, horizon: float, **kwargs) -> BenefitConcordance:
    """:func:`c_for_benefit` with the binary outcome "event by ``horizon``" (:func:`binary_outcome_at`)."""
    return c_for_benefit(predicted_benefit, treated, binary_outcome_at(time, event, horizon), **kwargs)
