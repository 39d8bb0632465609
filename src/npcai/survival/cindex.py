"""C-index of several risk scores on the same patients, with CIs and paired tests of differences.

For Table D2 / Fig. 3 of study 004: each score's Harrell C with its infinitesimal-jackknife
CI (:func:`npcai.stats.concordance.harrell_c`, checked against R's ``survival::concordance``
in ``tests/stats``), and for every pair of scores the difference with a paired patient
bootstrap (:func:`npcai.stats.bootstrap.bootstrap_ci`, resampling patients within event
status, so both scores are always compared on the same resample): percentile CI and a
two-sided p-value from the bootstrap SE (``z = difference / SE``; the "one-shot" bootstrap
test). R's ``compareC`` (the Kang et al. U-statistic test) is not available on Debian, so
the test is not compared with R; the C-indices are.

Examples:
    >>> r = compare_cindex([5, 8, 12, 3, 9, 15, 7, 11], [1, 1, 0, 1, 0, 1, 1, 0],
    ...                    {"a": [.9, .5, .2, .8, .3, .1, .6, .2], "b": [.5, .5, .5, .6, .4, .5, .5, .4]},
    ...                    n_boot=50)
    >>> list(r.scores.index), len(r.pairs)
    (['a', 'b'], 1)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.stats.bootstrap import bootstrap_ci
from npcai.stats.concordance import harrell_c
from npcai.survival._data import check_survival

__all__ = ["CindexComparison", "compare_cindex"]


@dataclass
class CindexComparison:
    """``scores``: per score c_index, se, low, high, n, events; ``pairs``: score_a, score_b,
    difference, low, high, se, z, p_value, n_boot."""

    scores: pd.DataFrame
    pairs: pd.DataFrame


def compare_cindex(time, event, scores: Mapping[str, object], *, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> CindexComparison:
    """Harrell's C of each score (higher = riskier) and paired bootstrap tests of their differences."""
    t, e = check_survival(time, event, what="C-index comparison")
    if not scores:
        raise NpcaiError("C-index comparison: give at least one score")
    arrs = {}
    for name, s in scores.items():
        a = np.asarray(s, dtype=float)
        if a.size != t.size:
            raise NpcaiError(f"C-index comparison: score {name!r} has {a.size} values for {t.size} patients")
        arrs[name] = a
    rows = []
    for name, a in arrs.items():
        c = harrell_c(t, e, a, level=level, what=f"C-index of {name}")
        rows.append({"score": name, "c_index": c.c_index, "se": c.se, "low": c.low, "high": c.high,
                     "n": c.n, "events": c.n_events})
    pairs = []
    for a, b in combinations(arrs, 2):
        def diff(ev, tt, sa, sb):
            return harrell_c(tt, ev, sa).c_index - harrell_c(tt, ev, sb).c_index
        r = bootstrap_ci(diff, e, t, arrs[a], arrs[b], n_boot=n_boot, seed=seed, level=level)
        z = r.estimate / r.se if r.se > 0 else 0.0
        pairs.append({"score_a": a, "score_b": b, "difference": r.estimate, "low": r.low, "high": r.high,
                      "se": r.se, "z": z, "p_value": float(2 * _st.norm.sf(abs(z))), "n_boot": n_boot})
    return CindexComparison(scores=pd.DataFrame(rows).set_index("score"),
                            pairs=pd.DataFrame(pairs, columns=["score_a", "score_b", "difference", "low", "high",
                                                               "se", "z", "p_value", "n_boot"]))
