"""Stepwise Cox model selection by AIC in both directions, as ``MASS::stepAIC``.

At every step the current model, every allowed addition and every allowed removal are
fitted; the move with the lowest AIC (``-2 log L + 2 p``, ties resolved as R: no change,
then removals, then additions, in scope order) is taken, until no move lowers the AIC.
Moves respect marginality as R's ``add.scope``/``drop.scope`` do: an interaction ``a:b``
enters only when ``a`` and ``b`` are in the model, and ``a`` leaves only after every
interaction containing it; a factor (``C(t_stage)``, ``sex``) enters and leaves whole. The
``lower`` scope is never removed. All candidate models are fitted on the same patients
(complete cases over the upper scope, with a logged warning for dropped patients).

Written by hand: neither lifelines, statsmodels nor scikit-survival has stepwise selection
for Cox models (lifelines issue #1205). Every step's candidate AICs are checked against R's
``addterm``/``dropterm`` and the path against ``stepAIC(direction = "both")`` in
``tests/survival``.

Examples:
    >>> import pandas as pd
    >>> d = pd.DataFrame({"time": [5, 8, 12, 3, 9, 15, 7, 11, 4, 6, 14, 2],
    ...                   "event": [1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1],
    ...                   "age": [60, 45, 50, 70, 40, 55, 65, 42, 58, 49, 41, 72],
    ...                   "noise": [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]})
    >>> r = step_aic(d, "time", "event", upper=["age", "noise"])
    >>> r.final_terms
    ['age']
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.progress import track
from npcai.survival._data import check_survival, complete_cases, expand_terms, term_variables
from npcai.survival.cox import CoxPH, Ties, _loglik, _RiskSets

__all__ = ["StepwiseResult", "step_aic"]

log = logging.getLogger(__name__)


@dataclass
class StepwiseResult:
    """The selection path and the final model.

    Attributes:
        steps: DataFrame, one row per candidate per step: step, model (the current terms),
            move (``"<none>"``, ``"+ term"``, ``"- term"``), aic, chosen.
        final_terms: the selected terms.
        final_model: the fitted :class:`CoxPH` of the selected terms (None if no term is left).
        final_aic: its AIC.
    """

    steps: pd.DataFrame
    final_terms: list[str]
    final_model: CoxPH | None
    final_aic: float


def _key(term: str) -> frozenset:
    return frozenset(term.split(":"))


def _can_add(term: str, current: list[str]) -> bool:
    parts = term.split(":")
    if len(parts) == 1:
        return True
    have = {_key(t) for t in current}
    # every lower-order term inside an interaction must be present (R's add.scope)
    return all(frozenset([p]) in have for p in parts)


def _can_drop(term: str, current: list[str]) -> bool:
    k = _key(term)
    return not any(k < _key(t) for t in current)


def step_aic(data: pd.DataFrame, time: str, event: str, *, upper: Sequence[str],
             lower: Sequence[str] = (), start: Sequence[str] | None = None, ties: Ties = "efron",
             k: float = 2.0, max_steps: int = 100) -> StepwiseResult:
    """Select Cox model terms by AIC, adding and removing terms at each step.

    Args:
        data: one row per patient.
        time, event: survival columns.
        upper: the largest model's terms (``a*b`` expands to ``a``, ``b``, ``a:b``).
        lower: terms always kept.
        start: the first model (default: ``upper``, i.e. start from the full model).
        ties: ``"efron"`` or ``"breslow"``.
        k: penalty per coefficient (2 = AIC; log(n events) would be a BIC).
    """
    upper_t = expand_terms(upper)
    lower_t = expand_terms(lower)
    start_t = expand_terms(start) if start is not None else list(upper_t)
    for name, terms in (("lower", lower_t), ("start", start_t)):
        extra = [t for t in terms if _key(t) not in {_key(u) for u in upper_t}]
        if extra:
            raise NpcaiError(f"stepwise: {name} term {extra[0]!r} is not in the upper scope; add it to the "
                             "covariates")
    missing_lower = [t for t in lower_t if _key(t) not in {_key(s) for s in start_t}]
    if missing_lower:
        raise NpcaiError(f"stepwise: the start model lacks the lower-scope term {missing_lower[0]!r}")
    used = [time, event] + [v for t in upper_t for v in term_variables(t)]
    data = complete_cases(data, used, what="stepwise selection")
    t, e = check_survival(data[time], data[event], what=f"stepwise selection ({time}/{event})")
    rs = _RiskSets(t, e, np.zeros(len(t), dtype=int))
    null_ll = _loglik(np.zeros((len(t), 0)), np.zeros(0), rs, ties, need_info=False)[0]
    cache: dict[frozenset, tuple[float, CoxPH | None]] = {}

    def fit(terms: list[str]) -> tuple[float, CoxPH | None]:
        key = frozenset(_key(x) for x in terms)
        if key not in cache:
            if not terms:
                cache[key] = (-2 * null_ll, None)
            else:
                try:
                    m = CoxPH(ties=ties).fit(data, time, event, terms, what=f"stepwise candidate {' + '.join(terms)}")
                    cache[key] = (-2 * m.loglik_[1] + k * len(m.coef_), m)
                except NpcaiError as exc:
                    log.warning("stepwise: candidate model %s skipped: %s", " + ".join(terms), exc)
                    cache[key] = (float("inf"), None)
        return cache[key]

    current = list(start_t)
    rows = []
    for step in track(range(1, max_steps + 1), "Stepwise AIC"):
        aic_now = fit(current)[0]
        if not np.isfinite(aic_now):
            raise NpcaiError(f"stepwise: the model {' + '.join(current) or '(null)'} cannot be fitted; see the "
                             "warning above")
        cands = [("<none>", current, aic_now)]
        lower_keys = {_key(x) for x in lower_t}
        for term in current:
            if _key(term) not in lower_keys and _can_drop(term, current):
                nxt = [x for x in current if x != term]
                cands.append((f"- {term}", nxt, fit(nxt)[0]))
        cur_keys = {_key(x) for x in current}
        for term in upper_t:
            if _key(term) not in cur_keys and _can_add(term, current):
                nxt = current + [term]
                cands.append((f"+ {term}", nxt, fit(nxt)[0]))
        aics = np.array([c[2] for c in cands])
        best = int(np.argmin(aics))       # first minimum: <none>, then removals, then additions
        model_label = " + ".join(current) or "(null)"
        for i, (move, _, aic) in enumerate(cands):
            rows.append({"step": step, "model": model_label, "move": move, "aic": aic, "chosen": i == best})
        if best == 0 or aics[best] >= aic_now - 1e-7:
            break
        current = cands[best][1]
    else:
        log.warning("stepwise: stopped after %d steps without converging", max_steps)
    aic, model = fit(current)
    return StepwiseResult(steps=pd.DataFrame(rows), final_terms=current, final_model=model, final_aic=aic)
