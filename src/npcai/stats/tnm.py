"""TNM staging as an ordinal baseline: how well do T, N and overall stage alone discriminate?

Studies 001 and 003 compare their models with TNM staging on the same test patients. Each
stage column of the clinical table (``t_stage`` 1..4, ``n_stage`` 0..3, ``stage`` 1..4, as
validated by ``npcai ingest``) is used as an ordinal risk score: its AUC with DeLong CI, its
C-index against the survival endpoint when there is one, and a paired DeLong test against
each model's patient probabilities.

Examples:
    >>> import pandas as pd
    >>> clin = pd.DataFrame({"t_stage": [1, 2, 3, 4, 2, 3], "n_stage": [0, 1, 2, 3, 1, 0]},
    ...                     index=pd.Index(list("ABCDEF"), name="patient_id"))
    >>> labels = pd.Series([0, 0, 1, 1, 0, 1], index=clin.index)
    >>> res = tnm_baseline(clin, labels)
    >>> list(res.table["score"])
    ['T stage', 'N stage']
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from npcai.errors import NpcaiError
from npcai.stats.auc import auc_ci, delong_test
from npcai.stats.concordance import harrell_c

__all__ = ["TNM_COLUMNS", "TnmBaseline", "tnm_scores", "tnm_baseline"]

#: clinical column -> display name, in the order tables show them
TNM_COLUMNS = {"t_stage": "T stage", "n_stage": "N stage", "stage": "Overall stage"}


def tnm_scores(clinical: pd.DataFrame) -> pd.DataFrame:
    """The TNM columns present in ``clinical`` as numeric ordinal scores (indexed by patient)."""
    if clinical.index.name != "patient_id" and "patient_id" in clinical.columns:
        clinical = clinical.set_index("patient_id")
    cols = [c for c in TNM_COLUMNS if c in clinical.columns]
    if not cols:
        raise NpcaiError("clinical.csv: none of the columns t_stage, n_stage, stage is present; "
                         "add TNM staging to the clinical table to get the TNM baseline")
    out = clinical[cols].apply(pd.to_numeric, errors="coerce")
    return out


@dataclass
class TnmBaseline:
    """TNM baseline results.

    Attributes:
        table: one row per stage score: score, column, n, auc, auc_low, auc_high, auc_se,
            c_index, c_low, c_high (C-index columns empty when no survival endpoint).
        delong: one row per (model, stage score): model, score, n, auc_model, auc_tnm,
            z, p_value (paired DeLong on the patients with both).
        skipped: stage scores that could not be evaluated and why.
    """

    table: pd.DataFrame
    delong: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"table": self.table.to_dict(orient="records"),
                "delong": self.delong.to_dict(orient="records"), "skipped": self.skipped}


def tnm_baseline(clinical: pd.DataFrame, labels: pd.Series, survival: pd.DataFrame | None = None,
                 models: dict[str, pd.Series] | None = None) -> TnmBaseline:
    """AUC (DeLong CI), C-index and paired DeLong tests of TNM stages on the given patients.

    Args:
        clinical: clinical table indexed by patient_id (with t_stage / n_stage / stage).
        labels: 0/1 outcome per patient (the test patients); defines who is evaluated.
        survival: optional DataFrame (time, event) indexed by patient_id for the C-index.
        models: optional {model name: Series patient_id -> probability} to compare against.
    """
    scores = tnm_scores(clinical)
    missing = labels.index.difference(scores.index)
    if len(missing):
        raise NpcaiError(f"clinical.csv: {len(missing)} evaluated patient(s) are not in the clinical "
                         f"table (e.g. {missing[0]}); the run and the cohort do not match")
    rows, tests, skipped = [], [], {}
    for col, name in TNM_COLUMNS.items():
        if col not in scores.columns:
            continue
        s = scores.loc[labels.index, col].dropna()
        y = labels.loc[s.index]
        try:
            a = auc_ci(y.to_numpy(), s.to_numpy(), what=f"{name} AUC")
        except NpcaiError as exc:
            skipped[name] = str(exc)
            continue
        row = {"score": name, "column": col, "n": int(len(s)), "auc": a.auc, "auc_low": a.low,
               "auc_high": a.high, "auc_se": a.se, "c_index": None, "c_low": None, "c_high": None}
        if survival is not None:
            sv = survival.loc[s.index].dropna()
            try:
                c = harrell_c(sv["time"].to_numpy(), sv["event"].to_numpy(),
                              s.loc[sv.index].to_numpy(), what=f"{name} C-index")
                row.update(c_index=c.c_index, c_low=c.low, c_high=c.high)
            except NpcaiError as exc:
                skipped[f"{name} C-index"] = str(exc)
        rows.append(row)
        for model, prob in (models or {}).items():
            common = s.index.intersection(prob.dropna().index)
            t = delong_test(labels.loc[common].to_numpy(), prob.loc[common].to_numpy(),
                            s.loc[common].to_numpy())
            tests.append({"model": model, "score": name, "n": int(len(common)), "auc_model": t.auc1,
                          "auc_tnm": t.auc2, "z": t.statistic, "p_value": t.p_value})
    if not rows:
        raise NpcaiError("TNM baseline: no stage score could be evaluated on these patients ("
                         + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ")")
    table = pd.DataFrame(rows)
    delong = pd.DataFrame(tests, columns=["model", "score", "n", "auc_model", "auc_tnm", "z", "p_value"])
    return TnmBaseline(table=table, delong=delong, skipped=skipped)
