"""Table 1: clinical characteristics by group (training vs test cohort, high vs low risk).

Laid out as the seeds' Table 1s: continuous variables as ``mean ± SD`` with Student's t-test
(one-way ANOVA for more than two groups); categorical variables as ``n (%)`` per level with
Pearson's chi-square test, or Fisher's exact test for a 2x2 table with an expected count
below 5. Percentages are within each group; missing values are counted on their own row and
left out of the tests.

Examples:
    >>> import pandas as pd
    >>> clin = pd.DataFrame({"age": [50, 61, 45, 58], "sex": ["M", "F", "M", "M"]})
    >>> t = table1(clin, pd.Series(["train", "train", "test", "test"]))
    >>> list(t.columns)
    ['variable', 'level', 'train', 'test', 'p_value', 'test_used']
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError

__all__ = ["DEFAULT_VARIABLES", "CONTINUOUS", "table1", "table1_from_folder"]

#: the clinical characteristics shown by default (those present in the table)
DEFAULT_VARIABLES = ("age", "sex", "t_stage", "n_stage", "stage", "ebv_dna", "treatment", "centre")
#: variables always treated as continuous (others: continuous when numeric with > 10 values)
CONTINUOUS = ("age", "ebv_dna")
_LEVEL_NAMES = {"t_stage": "T{}", "n_stage": "N{}", "stage": "stage {}"}
_STAGE_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}


def _level_label(var: str, value) -> str:
    if var == "stage":
        try:
            return _STAGE_ROMAN.get(int(value), str(value))
        except (TypeError, ValueError):
            return str(value)
    fmt = _LEVEL_NAMES.get(var)
    if fmt is not None:
        try:
            return fmt.format(int(value))
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_continuous(var: str, col: pd.Series) -> bool:
    if var in CONTINUOUS:
        return True
    num = pd.to_numeric(col, errors="coerce")
    return bool(num.notna().sum() == col.notna().sum() and num.nunique() > 10)


def _clean_p(p, test: str) -> tuple[float | None, str]:
    """A test on a constant variable gives NaN: report no p-value and say why."""
    if p is None or not np.isfinite(p):
        return None, f"{test} not computable (no variation)"
    return float(p), test


def table1(clinical: pd.DataFrame, by: pd.Series | str, variables: list[str] | None = None,
           group_order: list[str] | None = None) -> pd.DataFrame:
    """The clinical-characteristics table of ``clinical`` split by ``by``.

    Args:
        clinical: one row per patient.
        by: a column name of ``clinical`` or a Series aligned with it (e.g. split or label).
        variables: columns to describe; default: those of :data:`DEFAULT_VARIABLES` present.
        group_order: order of the group columns (default: train, val, test for splits, else sorted).

    Returns:
        DataFrame with columns ``variable, level, <group 1>, <group 2>, ..., p_value, test_used``;
        the first row of each variable carries its p-value (empty on the level rows).
    """
    if isinstance(by, str):
        if by not in clinical.columns:
            raise NpcaiError(f"table1: grouping column {by!r} is not in the clinical table; "
                             f"columns are {', '.join(map(str, clinical.columns))}")
        groups = clinical[by]
        by_name = by
    else:
        groups = pd.Series(by)
        if len(groups) != len(clinical):
            raise NpcaiError(f"table1: {len(groups)} group values for {len(clinical)} patients")
        groups = pd.Series(groups.to_numpy(), index=clinical.index)
        by_name = getattr(by, "name", None) or "group"
    keep = groups.notna()
    clinical, groups = clinical.loc[keep], groups.loc[keep].astype(str)
    present = list(groups.unique())
    split_order = [g for g in ("train", "val", "test") if g in present]
    order = group_order or (split_order if len(split_order) == len(present) else sorted(present))
    if len(order) < 2:
        raise NpcaiError(f"table1: all patients are in one {by_name} group ({order[0] if order else 'none'}); "
                         "a comparison needs at least two groups")
    if variables is None:
        variables = [v for v in DEFAULT_VARIABLES if v in clinical.columns and v != by_name]
    missing = [v for v in variables if v not in clinical.columns]
    if missing:
        raise NpcaiError(f"table1: column {missing[0]!r} is not in the clinical table; "
                         f"columns are {', '.join(map(str, clinical.columns))}")
    if not variables:
        raise NpcaiError("table1: the clinical table has none of the usual characteristics "
                         f"({', '.join(DEFAULT_VARIABLES)}); pass variables explicitly")
    n = {g: int((groups == g).sum()) for g in order}
    rows: list[dict] = [{"variable": "Patients", "level": "n", **{g: str(n[g]) for g in order},
                         "p_value": None, "test_used": ""}]
    for var in variables:
        col = clinical[var]
        if _is_continuous(var, col):
            num = pd.to_numeric(col, errors="coerce")
            parts = [num[(groups == g)].dropna().to_numpy(float) for g in order]
            if all(len(p) >= 2 for p in parts):
                if len(order) == 2:
                    p, test = _st.ttest_ind(parts[0], parts[1], equal_var=True).pvalue, "t-test"
                else:
                    p, test = _st.f_oneway(*parts).pvalue, "ANOVA"
            else:
                p, test = None, "too few values"
            if p is not None:
                p, test = _clean_p(p, test)
            rows.append({"variable": var, "level": "mean ± SD",
                         **{g: (f"{x.mean():.2f} ± {x.std(ddof=1):.2f}" if len(x) >= 2 else
                                (f"{x.mean():.2f}" if len(x) else "-")) for g, x in zip(order, parts)},
                         "p_value": None if p is None else float(p), "test_used": test})
            n_missing = {g: int(num[groups == g].isna().sum()) for g in order}
        else:
            values = col.dropna()
            levels = sorted(values.unique(), key=lambda v: (str(type(v)), v))
            counts = pd.crosstab(values, groups.loc[values.index]).reindex(index=levels, columns=order,
                                                                           fill_value=0)
            p, test = None, "single level"
            if counts.shape[0] >= 2 and (counts.sum(axis=0) > 0).sum() >= 2:
                used = counts.loc[:, counts.sum(axis=0) > 0]
                chi = _st.chi2_contingency(used.to_numpy(), correction=False)
                if used.shape == (2, 2) and (chi.expected_freq < 5).any():
                    p, test = _st.fisher_exact(used.to_numpy()).pvalue, "Fisher"
                else:
                    p, test = chi.pvalue, "chi-square"
                p, test = _clean_p(p, test)
            first = True
            for lev in levels:
                rows.append({"variable": var, "level": _level_label(var, lev),
                             **{g: f"{int(counts.loc[lev, g])} ({100 * counts.loc[lev, g] / max(n[g], 1):.1f}%)"
                                for g in order},
                             "p_value": (None if p is None else float(p)) if first else None,
                             "test_used": test if first else ""})
                first = False
            n_missing = {g: int(col[groups == g].isna().sum()) for g in order}
        if any(n_missing.values()):
            rows.append({"variable": var, "level": "missing", **{g: str(n_missing[g]) for g in order},
                         "p_value": None, "test_used": ""})
    return pd.DataFrame(rows, columns=["variable", "level", *order, "p_value", "test_used"])


def table1_from_folder(path: str | Path, by: str = "split", *, endpoint: str | None = None,
                       variables: list[str] | None = None) -> pd.DataFrame:
    """Table 1 of a run folder (its patients, by ``split`` or ``label``) or of a cohort folder.

    For a cohort, ``by`` is ``label`` (needs ``endpoint``) or any clinical column (e.g.
    ``centre``, ``treatment``); a cohort has no split, so ``by="split"`` needs a run.
    """
    from npcai.cohort.model import Cohort

    path = Path(path)
    from npcai.runs import CONFIG, read_split

    if (path / CONFIG).is_file():
        from npcai.stats.evaluate import run_clinical
        from npcai.runs import read_run

        run = read_run(path)
        clinical = run_clinical(run)
        if clinical is None:
            raise NpcaiError(f"run {path}: names no cohort; table1 needs the clinical table")
        split = read_split(path)
        split_path = path
        missing = split.index.difference(clinical.index)
        if len(missing):
            raise NpcaiError(f"{split_path}: patient {missing[0]} is not in the cohort's clinical.csv; "
                             "the run and the cohort do not match")
        clin = clinical.loc[split.index]
        if by in ("split", "label"):
            groups = split[by].astype(str)
            if by == "label":
                groups = groups.map(lambda v: f"label {v}")
            return table1(clin, groups.rename(by), variables)
        return table1(clin, by, variables)
    if (path / "cohort.json").is_file():
        clinical = Cohort.load(path).clinical()
        if by == "split":
            raise NpcaiError(f"{path}: a cohort has no split; pass a run folder, or --by label "
                             "--endpoint NAME, or --by a clinical column such as centre")
        if by == "label":
            if not endpoint:
                raise NpcaiError("table1 --by label on a cohort needs --endpoint (e.g. pfs-median)")
            from npcai.cohort.endpoints import endpoint_labels

            ep = endpoint_labels(clinical, endpoint)
            groups = ep.labels.map(lambda v: f"label {v}").rename("label")
            return table1(clinical.loc[groups.index], groups, variables)
        return table1(clinical, by, variables)
    raise NpcaiError(f"{path}: neither a run folder nor a cohort folder (cohort.json)")
