"""Study 004's Table D1: is the Predictive-score associated with any clinical factor?

A treatment-selection score that merely re-encodes a clinical factor (stage, EBV DNA) adds
nothing a clinician does not already know; study 004 shows its Predictive-score "did not
exhibit a consistently significant association with any clinical factor in all cohorts".
Per cohort and factor:

* numeric or ordinal factors (age, T/N stage, overall stage, EBV DNA): Spearman's rho with
  the two-sided p of the t approximation (R's ``cor.test(method = "spearman", exact = FALSE)``);
* nominal factors (sex, centre): the Kruskal–Wallis test of the score across the levels
  (R's ``kruskal.test``), with the effect size epsilon² = H / (n − 1).

Both are checked against R (``tests/survival/deep/fixtures/make_association_reference.R``).
Patients with the factor missing are left out of that row (``n`` says how many remain); a
factor with a single level in a cohort gets no test (``note`` says so).

Examples:
    >>> import pandas as pd
    >>> d = pd.DataFrame({"predictive_score": [0.1, 0.4, 0.3, 0.9, 0.5, 0.2],
    ...                   "age": [40, 52, 47, 66, 58, 45], "sex": list("MFMFMF")})
    >>> t = predictive_score_associations(d, factors=("age", "sex"))
    >>> t[["factor", "test", "n"]].to_dict("list")
    {'factor': ['age', 'sex'], 'test': ['Spearman', 'Kruskal-Wallis'], 'n': [6, 6]}
    >>> round(float(t.loc[0, "rho"]), 3)
    1.0
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["CLINICAL_FACTORS", "NOMINAL_FACTORS", "ASSOCIATION_COLUMNS", "predictive_score_associations"]

#: the clinical factors of Table D1 (those of the clinical schema a cohort has)
CLINICAL_FACTORS = ("age", "sex", "t_stage", "n_stage", "stage", "ebv_dna", "centre")
#: factors compared across levels (Kruskal–Wallis) even when coded as numbers
NOMINAL_FACTORS = ("sex", "centre")
ASSOCIATION_COLUMNS = ("factor", "test", "n", "rho", "h", "epsilon2", "p", "note")


def _row(factor: str, test: str, n: int, *, rho=np.nan, h=np.nan, eps=np.nan, p=np.nan, note="") -> dict:
    return {"factor": factor, "test": test, "n": int(n), "rho": rho, "h": h, "epsilon2": eps, "p": p, "note": note}


def _spearman(factor: str, score: np.ndarray, x: np.ndarray) -> dict:
    from scipy import stats

    n = len(x)
    if n < 3 or np.unique(x).size < 2 or np.unique(score).size < 2:
        return _row(factor, "Spearman", n, note="n < 3 or constant: no test")
    r = stats.spearmanr(score, x)
    return _row(factor, "Spearman", n, rho=float(r.statistic), p=float(r.pvalue))


def _kruskal(factor: str, score: np.ndarray, levels: np.ndarray) -> dict:
    from scipy import stats

    n = len(levels)
    groups = [score[levels == v] for v in pd.unique(levels)]
    if len(groups) < 2 or np.unique(score).size < 2:
        return _row(factor, "Kruskal-Wallis", n, note="one level or constant score: no test")
    r = stats.kruskal(*groups)
    return _row(factor, "Kruskal-Wallis", n, h=float(r.statistic), eps=float(r.statistic) / (n - 1),
                p=float(r.pvalue))


def predictive_score_associations(d: pd.DataFrame, *, score: str = "predictive_score",
                                  factors: Sequence[str] = CLINICAL_FACTORS) -> pd.DataFrame:
    """Association of ``score`` with each clinical factor present in ``d`` (one cohort).

    Args:
        d: one row per patient with the score and the clinical factor columns.
        score: the score column (study 004: the Predictive-score).
        factors: the factors to test, in row order; absent columns are skipped.

    Returns:
        DataFrame with :data:`ASSOCIATION_COLUMNS` (``rho`` for Spearman rows, ``h`` and
        ``epsilon2`` for Kruskal–Wallis rows; ``p`` two-sided).
    """
    rows = []
    for factor in factors:
        if factor not in d.columns:
            continue
        sub = d[[score, factor]].dropna()
        s = sub[score].to_numpy(dtype=float)
        numeric = pd.to_numeric(sub[factor], errors="coerce")
        if factor in NOMINAL_FACTORS or numeric.isna().any():
            rows.append(_kruskal(factor, s, sub[factor].astype(str).to_numpy()))
        else:
            rows.append(_spearman(factor, s, numeric.to_numpy(dtype=float)))
    return pd.DataFrame(rows, columns=list(ASSOCIATION_COLUMNS))
