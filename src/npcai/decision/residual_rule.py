"""Seed 002's treatment rule from two residual-tumour models, and its judgement against physicians.

A CCRT model and an IC+CCRT model each predict whether a patient would have residual tumour
(RT) or non-residual tumour (NRT) after that treatment. The rule (seed 002, Methods, "four
situations") recommends the regimen with fewer side effects that still reaches NRT:

====================  ======================  ==============
CCRT model predicts   IC+CCRT model predicts  recommendation
====================  ======================  ==============
NRT                   NRT                     CCRT
NRT                   RT                      CCRT
RT                    NRT                     IC+CCRT
RT                    RT                      IBT (individual-based treatment)
====================  ======================  ==============

**Judgement** (seed 002's principle: avoid over-treatment while reaching NRT). Each patient
received one regimen and its effect was observed. The model's recommendation can be right only
when the model's prediction *for the regimen received* matched the observed effect:

- prediction for the received regimen wrong: the model is **wrong**; the physician is **right**
  when the patient reached NRT and **undecidable** when not (the patient may need IBT);
- prediction right and the recommendation is the regimen received (then the effect is NRT):
  both **right**;
- prediction right and the recommendation is IBT (both models predict RT, and RT was observed):
  both **undecidable** (IBT was not given);
- prediction right and the recommendation is the other regimen: the model is **right** and the
  physician **wrong** (IC+CCRT given where CCRT would have reached NRT: over-treatment; CCRT
  given and RT observed where IC+CCRT was predicted to reach NRT).

This reproduces every one of the eleven situations of seed 002's Table 3 (numbered as there in
:data:`SEED_SITUATIONS`) and the text's statements for the combinations the seed's test cohort
did not contain. The correct rate is ``right / (right + wrong)`` (undecidable cases removed, as
the seed does): 58/11/16 gives 84.06 % for the model and 39/26/20 gives 60.00 % for the
physicians. :func:`compare_judgements` gives the seed's P (Pearson's chi-squared test without
continuity correction on the 2 x 2 table of right/wrong counts, p = 0.0019 for the seed's counts;
Fisher's exact test p = 0.0021 is given too) **and** McNemar's exact test on the patients
decidable for both, the honest paired test: model and physician are judged on the same
patients, which the unpaired tests ignore.

Examples:
    >>> recommend(residual_ccrt=False, residual_ic_ccrt=True)
    'CCRT'
    >>> j = judge(residual_ccrt=False, residual_ic_ccrt=False, received="IC+CCRT", residual=False)
    >>> (j.model, j.physician, j.situation)
    ('right', 'wrong', 2)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError
from npcai.stats.binary import wilson_ci

__all__ = ["CCRT", "IC_CCRT", "IBT", "TREATMENTS", "RIGHT", "WRONG", "UNDECIDABLE", "SEED_SITUATIONS",
           "Judgement", "JudgementCounts", "PairedCounts", "DecisionComparison",
           "recommend", "recommend_all", "judge", "judge_all", "table3", "compare_judgements"]

CCRT, IC_CCRT, IBT = "CCRT", "IC+CCRT", "IBT"
TREATMENTS = (CCRT, IC_CCRT)
RIGHT, WRONG, UNDECIDABLE = "right", "wrong", "undecidable"

#: seed 002's Table 3 situations: (CCRT model predicts RT, IC+CCRT model predicts RT,
#: regimen received, RT observed) -> situation number in the seed
SEED_SITUATIONS: dict[tuple[bool, bool, str, bool], int] = {
    (True, False, IC_CCRT, False): 1,
    (False, False, IC_CCRT, False): 2,
    (False, True, IC_CCRT, False): 3,
    (True, True, IC_CCRT, False): 4,
    (True, True, IC_CCRT, True): 5,
    (False, False, CCRT, False): 6,
    (False, True, CCRT, False): 7,
    (True, True, CCRT, False): 8,
    (False, False, CCRT, True): 9,
    (True, False, CCRT, True): 10,
    (True, True, CCRT, True): 11,
}


def _effect(residual: bool) -> str:
    return "residual tumour" if residual else "non-residual tumour"


def recommend(residual_ccrt: bool, residual_ic_ccrt: bool) -> str:
    """Seed 002's four situations: the regimen with fewer side effects predicted to reach NRT.

    Args:
        residual_ccrt: the CCRT model predicts residual tumour.
        residual_ic_ccrt: the IC+CCRT model predicts residual tumour.

    Returns:
        ``"CCRT"``, ``"IC+CCRT"`` or ``"IBT"``.
    """
    if not residual_ccrt:
        return CCRT
    return IBT if residual_ic_ccrt else IC_CCRT


def recommend_all(residual_ccrt: pd.Series, residual_ic_ccrt: pd.Series) -> pd.Series:
    """:func:`recommend` for every patient (two boolean Series with the same index)."""
    if not residual_ccrt.index.equals(residual_ic_ccrt.index):
        raise NpcaiError("recommendation: the CCRT and IC+CCRT predictions are for different patients")
    return pd.Series([recommend(bool(a), bool(b)) for a, b in zip(residual_ccrt, residual_ic_ccrt)],
                     index=residual_ccrt.index, name="recommendation", dtype=object)


@dataclass(frozen=True)
class Judgement:
    """How one patient's model recommendation and physician's decision are judged.

    Attributes:
        recommendation: CCRT, IC+CCRT or IBT.
        model, physician: ``"right"``, ``"wrong"`` or ``"undecidable"``.
        situation: the seed's Table 3 situation number (1-11), or None for a combination the
            seed's test cohort did not contain.
        reason: one sentence saying why.
    """

    recommendation: str
    model: str
    physician: str
    situation: int | None
    reason: str


def judge(residual_ccrt: bool, residual_ic_ccrt: bool, received: str, residual: bool) -> Judgement:
    """Judge the model's recommendation and the physician's decision for one patient.

    Args:
        residual_ccrt, residual_ic_ccrt: each model predicts residual tumour.
        received: the regimen the patient received (``"CCRT"`` or ``"IC+CCRT"``).
        residual: residual tumour was observed after it.

    Returns:
        :class:`Judgement` (see the module docstring for the principle).
    """
    if received not in TREATMENTS:
        raise NpcaiError(f"judgement: received regimen {received!r} is not CCRT or IC+CCRT")
    residual_ccrt, residual_ic_ccrt, residual = bool(residual_ccrt), bool(residual_ic_ccrt), bool(residual)
    rec = recommend(residual_ccrt, residual_ic_ccrt)
    situation = SEED_SITUATIONS.get((residual_ccrt, residual_ic_ccrt, received, residual))
    predicted = residual_ccrt if received == CCRT else residual_ic_ccrt
    if predicted != residual:
        model = WRONG
        physician = UNDECIDABLE if residual else RIGHT
        reason = (f"the {received} model predicted {_effect(predicted)} but {_effect(residual)} was observed, so "
                  "the recommendation cannot be trusted; " + ("the patient may need IBT" if residual else
                                                              f"{received} reached non-residual tumour"))
    elif rec == received:
        model, physician = RIGHT, RIGHT
        reason = f"{received} was recommended, given and reached non-residual tumour as predicted"
    elif rec == IBT:
        model, physician = UNDECIDABLE, UNDECIDABLE
        reason = "both models predicted residual tumour, as observed; IBT was not given"
    else:
        model, physician = RIGHT, WRONG
        reason = (f"the {received} prediction was confirmed and the model predicted non-residual tumour with {rec}"
                  + (" (IC avoidable: over-treatment)" if rec == CCRT else ""))
    return Judgement(recommendation=rec, model=model, physician=physician, situation=situation, reason=reason)


def judge_all(patients: pd.DataFrame) -> pd.DataFrame:
    """Judge every patient.

    Args:
        patients: one row per patient with boolean ``residual_ccrt_pred``,
            ``residual_ic_ccrt_pred``, the ``treatment`` received and the observed
            ``residual_tumour`` (0/1).

    Returns:
        ``patients`` with ``recommendation``, ``model_judgement``, ``physician_judgement``,
        ``seed_situation`` (nullable integer) and ``reason`` added.
    """
    need = ["residual_ccrt_pred", "residual_ic_ccrt_pred", "treatment", "residual_tumour"]
    missing = [c for c in need if c not in patients.columns]
    if missing:
        raise NpcaiError(f"judgement: patient table has no column {missing[0]!r}")
    js = [judge(a, b, t, y) for a, b, t, y in patients[need].itertuples(index=False)]
    out = patients.copy()
    out["recommendation"] = [j.recommendation for j in js]
    out["model_judgement"] = [j.model for j in js]
    out["physician_judgement"] = [j.physician for j in js]
    out["seed_situation"] = pd.array([j.situation for j in js], dtype="Int64")
    out["reason"] = [j.reason for j in js]
    return out


def _pred_text(residual: bool) -> str:
    return "Residual tumour" if residual else "Non-residual tumour"


def table3(judged: pd.DataFrame) -> pd.DataFrame:
    """Seed 002's Table 3 layout from :func:`judge_all`'s output: one row per situation present.

    Columns: Situation (the seed's number, or "new" for a combination not in the seed's table),
    CCRT model, IC+CCRT model (the predictions), Model recommendation (predicted effect),
    Physician's decision (actual effect), Cases, Model, Physician (the judgements). Rows in the
    seed's order, new combinations last.
    """
    keys = ["residual_ccrt_pred", "residual_ic_ccrt_pred", "treatment", "residual_tumour"]
    rows = []
    for (a, b, t, y), g in judged.groupby(keys, sort=False):
        j = judge(a, b, t, y)
        rows.append({"order": j.situation if j.situation is not None else 100 + len(rows),
                     "Situation": str(j.situation) if j.situation is not None else "new",
                     "CCRT model": _pred_text(bool(a)), "IC+CCRT model": _pred_text(bool(b)),
                     "Model recommendation (predicted effect)":
                         f"{j.recommendation} ({'residual tumour' if j.recommendation == IBT else 'non-residual tumour'})",
                     "Physician's decision (actual effect)": f"{t} ({_effect(bool(y))})",
                     "Cases": len(g), "Model": j.model, "Physician": j.physician})
    cols = ["Situation", "CCRT model", "IC+CCRT model", "Model recommendation (predicted effect)",
            "Physician's decision (actual effect)", "Cases", "Model", "Physician"]
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows).sort_values("order", kind="stable")[cols].reset_index(drop=True)


@dataclass(frozen=True)
class JudgementCounts:
    """Right / wrong / undecidable counts and the correct rate ``right / (right + wrong)``
    with its Wilson 95% CI (None when nothing was decidable)."""

    right: int
    wrong: int
    undecidable: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, right: int, wrong: int, undecidable: int) -> "JudgementCounts":
        n = right + wrong
        lo, hi = wilson_ci(right, n) if n else (None, None)
        return cls(int(right), int(wrong), int(undecidable), right / n if n else None, lo, hi)

    def __str__(self) -> str:
        rate = "undefined" if self.rate is None else \
            f"{100 * self.rate:.2f}% (95% CI {100 * self.ci_low:.1f}-{100 * self.ci_high:.1f}%)"
        return f"{self.right} right, {self.wrong} wrong, {self.undecidable} undecidable: correct rate {rate}"


@dataclass(frozen=True)
class PairedCounts:
    """Patients decidable for both model and physician: the McNemar table.

    ``both_right``, ``model_only`` (model right, physician wrong), ``physician_only`` (physician
    right, model wrong), ``both_wrong``; ``p_exact`` is McNemar's exact test (two-sided binomial
    test of ``model_only`` vs ``physician_only``), ``p_chi2`` McNemar's chi-squared test with
    continuity correction (R's ``mcnemar.test`` default); None without discordant patients.
    """

    n: int
    both_right: int
    model_only: int
    physician_only: int
    both_wrong: int
    model_rate: float | None
    physician_rate: float | None
    p_exact: float | None
    p_chi2: float | None


@dataclass(frozen=True)
class DecisionComparison:
    """Model vs physician correct rates, tested as the seed did and paired.

    Attributes:
        model, physician: :class:`JudgementCounts`.
        p_pearson: Pearson's chi-squared test without continuity correction on the 2 x 2 table
            (right, wrong) x (model, physician): the seed's P (reported); None when undefined.
        p_fisher: Fisher's exact test on the same table.
        paired: McNemar on the patients decidable for both (:class:`PairedCounts`).
    """

    model: JudgementCounts
    physician: JudgementCounts
    p_pearson: float | None
    p_fisher: float | None
    paired: PairedCounts

    def to_dict(self) -> dict:
        return asdict(self)


def _unpaired_tests(model: JudgementCounts, physician: JudgementCounts) -> tuple[float | None, float | None]:
    table = np.array([[model.right, model.wrong], [physician.right, physician.wrong]])
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return None, None
    chi2 = _st.chi2_contingency(table, correction=False)
    return float(chi2.pvalue), float(_st.fisher_exact(table).pvalue)


def _mcnemar(model: pd.Series, physician: pd.Series) -> PairedCounts:
    both = (model != UNDECIDABLE) & (physician != UNDECIDABLE)
    m, p = model[both] == RIGHT, physician[both] == RIGHT
    b, c = int((m & ~p).sum()), int((~m & p).sum())
    n = int(both.sum())
    p_exact = p_chi2 = None
    if b + c:
        p_exact = float(_st.binomtest(b, b + c, 0.5).pvalue)
        p_chi2 = float(_st.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1))
    return PairedCounts(n=n, both_right=int((m & p).sum()), model_only=b, physician_only=c,
                        both_wrong=int((~m & ~p).sum()), model_rate=float(m.mean()) if n else None,
                        physician_rate=float(p.mean()) if n else None, p_exact=p_exact, p_chi2=p_chi2)


def compare_judgements(judged: pd.DataFrame) -> DecisionComparison:
    """Counts, correct rates and tests from :func:`judge_all`'s ``model_judgement`` and
    ``physician_judgement`` columns (see the module docstring)."""
    for col in ("model_judgement", "physician_judgement"):
        if col not in judged.columns:
            raise NpcaiError(f"comparison: patient table has no column {col!r}; judge the patients first")
    model_j, phys_j = judged["model_judgement"], judged["physician_judgement"]

    def counts(s: pd.Series) -> JudgementCounts:
        return JudgementCounts.of(int((s == RIGHT).sum()), int((s == WRONG).sum()), int((s == UNDECIDABLE).sum()))

    model, physician = counts(model_j), counts(phys_j)
    p_pearson, p_fisher = _unpaired_tests(model, physician)
    return DecisionComparison(model=model, physician=physician, p_pearson=p_pearson, p_fisher=p_fisher,
                              paired=_mcnemar(model_j, phys_j))
