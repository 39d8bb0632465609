"""Harrell's concordance index (C-index) with a confidence interval.

For survival data a pair of patients is *comparable* when the one with the shorter time had
the event (or both share a time and only that one had the event); it is *concordant* when
that patient also has the higher risk score, and a tie in the score counts 1/2. This is
``survival::concordance(Surv(time, event) ~ risk, reverse = TRUE)`` and
``1 - Hmisc::rcorr.cens(risk, Surv(time, event))["C Index"]`` (rcorr.cens treats a larger
``x`` as predicting *longer* survival, so a risk score is passed negated or the result
complemented).

Two standard errors are offered, both checked against R in ``tests/stats``:

* ``"ij"`` (default): the infinitesimal-jackknife variance of ``survival::concordance``;
* ``"noether"``: the Quade/Noether U-statistic SD of Hmisc's ``rcorr.cens``, whose printed
  ``S.D.`` is the SD of Somers' Dxy = 2 (C - 0.5), so SD(C) = S.D. / 2.

For a binary outcome the C-index equals the ROC AUC; :func:`c_index_binary` returns it with
the DeLong interval.

Examples:
    >>> from npcai.stats.concordance import harrell_c
    >>> r = harrell_c([5, 10, 15, 20], [1, 1, 0, 1], [0.9, 0.5, 0.6, 0.1])
    >>> round(r.c_index, 3)
    0.8
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.stats._validate import check_binary_labels, check_same_length, check_scores

__all__ = ["ConcordanceResult", "harrell_c", "c_index_binary"]


@dataclass(frozen=True)
class ConcordanceResult:
    """Harrell's C with its standard error and a normal CI (clipped to [0, 1])."""

    c_index: float
    se: float
    low: float
    high: float
    n: int
    n_events: int
    comparable: float
    concordant: float
    discordant: float
    tied_risk: float
    se_method: str
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.c_index:.3f} ({self.low:.3f}-{self.high:.3f})"


def _pair_matrices(time: np.ndarray, event: np.ndarray, risk: np.ndarray):
    """``first[i, j]``: i failed before j (comparable, i the earlier event); and risk order."""
    t_i, t_j = time[:, None], time[None, :]
    e_i, e_j = event[:, None].astype(bool), event[None, :].astype(bool)
    first = e_i & ((t_i < t_j) | ((t_i == t_j) & ~e_j))
    np.fill_diagonal(first, False)
    d = risk[:, None] - risk[None, :]
    conc = first & (d > 0)
    disc = first & (d < 0)
    tie = first & (d == 0)
    return first, conc, disc, tie


def harrell_c(time, event, risk, *, se_method: Literal["ij", "noether"] = "ij",
              level: float = 0.95, ids: Sequence | None = None,
              what: str = "C-index") -> ConcordanceResult:
    """Harrell's C of a risk score (higher = earlier event) against right-censored times.

    Args:
        time: follow-up time per patient (>= 0).
        event: 1 if the event was observed at ``time``, 0 if censored.
        risk: the model's risk score (a probability of the bad outcome, a log hazard, ...).
        se_method: ``"ij"`` (survival::concordance) or ``"noether"`` (Hmisc::rcorr.cens).
        level: CI level; the interval is ``C +- z * se`` clipped to [0, 1].

    Examples:
        >>> harrell_c([2, 4, 6], [1, 1, 1], [3, 2, 1]).c_index
        1.0
    """
    t = check_scores(time, f"{what} times", ids)
    if (t < 0).any():
        raise NpcaiError(f"{what} times: {int((t < 0).sum())} negative time(s); times must be >= 0")
    e = check_binary_labels(event, f"{what} events", ids, require_both=False)
    r = check_scores(risk, f"{what} risk scores", ids)
    check_same_length(what, time=t, event=e, risk=r)
    if e.sum() == 0:
        raise NpcaiError(f"{what} is undefined: none of the {t.size} patients had an event; "
                         "it needs at least one observed event")
    first, conc, disc, tie = _pair_matrices(t, e, r)
    n_pairs = float(first.sum())
    if n_pairs == 0:
        raise NpcaiError(f"{what} is undefined: no comparable pairs among {t.size} patients "
                         "(every event is tied with or later than all others' times)")
    nc, nd, nt = float(conc.sum()), float(disc.sum()), float(tie.sum())
    c = (nc + nt / 2) / n_pairs

    if se_method == "ij":
        # Influence of each patient's weight on C (pair weight w_i * w_j), at w = 1.
        comp_i = first.sum(1) + first.sum(0)
        score_i = (conc.sum(1) + conc.sum(0)) + 0.5 * (tie.sum(1) + tie.sum(0))
        infl = (score_i - c * comp_i) / n_pairs
        se = float(np.sqrt(np.sum(infl ** 2)))
    elif se_method == "noether":
        rel = first | first.T
        ri = rel.sum(1).astype(float)
        signed = (conc.astype(float) - disc) + (conc.T.astype(float) - disc.T)
        wi = signed.sum(1)
        sr, sw = ri.sum(), wi.sum()
        v = (ri ** 2).sum() * sw ** 2 - 2 * sr * sw * (ri * wi).sum() + (wi ** 2).sum() * sr ** 2
        sd_dxy = 2 * np.sqrt(max(v, 0.0)) / sr / sr
        se = float(sd_dxy / 2)
    else:
        raise NpcaiError(f"{what}: se_method {se_method!r} is not 'ij' or 'noether'")
    z = _st.norm.ppf(1 - (1 - level) / 2)
    return ConcordanceResult(c_index=float(c), se=se, low=float(max(0.0, c - z * se)),
                             high=float(min(1.0, c + z * se)), n=int(t.size), n_events=int(e.sum()),
                             comparable=n_pairs, concordant=nc, discordant=nd, tied_risk=nt,
                             se_method=se_method, level=level)


def c_index_binary(y_true, y_score, level: float = 0.95,
                   ids: Sequence | None = None) -> ConcordanceResult:
    """C-index for a binary outcome: the ROC AUC, with DeLong's SE and CI."""
    from npcai.stats.auc import auc_ci

    a = auc_ci(y_true, y_score, level, what="C-index (binary outcome)", ids=ids)
    y = np.asarray(y_true).astype(int)
    s = np.asarray(y_score, dtype=float)
    d = s[y == 1][:, None] - s[y == 0][None, :]
    return ConcordanceResult(c_index=a.auc, se=a.se, low=a.low, high=a.high, n=int(y.size),
                             n_events=int(y.sum()), comparable=float(d.size),
                             concordant=float((d > 0).sum()), discordant=float((d < 0).sum()),
                             tied_risk=float((d == 0).sum()), se_method="delong", level=level)
