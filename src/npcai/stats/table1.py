"""Table 1: clinical characteristics by group (training vs test cohort, high vs low risk).

Every column of the clinical table is described, or listed with the reason it is not:

- **numeric** columns (``age``, ``ebv_dna``, and any numeric column with more than 10
  distinct values or with fractions) as ``median [IQR]`` (quartiles as R's default
  ``quantile``) with the Wilcoxon rank-sum (Mann-Whitney U) test for two groups, Kruskal-Wallis
  for more (R's ``wilcox.test``: exact without ties when both groups have fewer than 50
  values, else the normal approximation with continuity and tie correction). The seeds' layout,
  ``mean ± SD`` with Student's t-test (one-way ANOVA for more groups), is ``continuous="mean"``;
- **categorical** columns (text, and integer columns with at most 10 values such as stages
  and 0/1 indicators) as ``n (%)`` per level with Pearson's chi-square test, or Fisher's exact
  test for a 2x2 table with an expected count below 5;
- **not described**, with the reason on a row of its own at the end of the table (and in
  ``table.attrs["dropped"]``): identifiers, columns with every value missing, free text
  (text with more than 10 distinct values).

Baseline characteristics come first (age, sex, T, N, stage, EBV DNA, treatment, centre), then
the other columns in the table's order, then outcomes (survival times and events, binary
endpoints). Percentages are within each group; missing values are counted on their own row and
left out of the tests. The tests are checked against R (``tests/stats/fixtures/table1/``).

Examples:
    >>> import pandas as pd
    >>> clin = pd.DataFrame({"age": [50, 61, 45, 58], "sex": ["M", "F", "M", "M"]})
    >>> t = table1(clin, pd.Series(["train", "train", "test", "test"]))
    >>> list(t.columns)
    ['variable', 'level', 'train', 'test', 'p_value', 'test_used']
    >>> t.loc[t.variable == "age", ["level", "train", "test_used"]].values.tolist()
    [['median [IQR]', '55.5 [52.8–58.2]', 'Wilcoxon rank-sum']]
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as _st

from npcai.errors import NpcaiError

__all__ = ["DEFAULT_VARIABLES", "CONTINUOUS", "MAX_LEVELS", "table1", "table1_variables", "table1_from_folder"]

#: the baseline characteristics, shown first (those present in the table)
DEFAULT_VARIABLES = ("age", "sex", "t_stage", "n_stage", "stage", "ebv_dna", "treatment", "centre")
#: variables always treated as continuous (others: numeric with > MAX_LEVELS values or fractions)
CONTINUOUS = ("age", "ebv_dna")
#: most levels a categorical column may have; text with more is free text
MAX_LEVELS = 10
_IDENTIFIERS = ("patient_id", "hospital_id")
_OUTCOME_BINARY = ("distant_metastasis", "residual_tumour")
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
    if num.notna().sum() != col.notna().sum() or num.notna().sum() == 0:
        return False                              # text (or nothing): categorical
    values = num.dropna()
    return bool(values.nunique() > MAX_LEVELS or not np.allclose(values, np.round(values)))


def _outcome_columns(columns) -> set[str]:
    """Survival times and events (``pfs_months`` + ``pfs_event``, ...) and the binary endpoints."""
    from npcai.cohort.clinical_schema import survival_endpoints

    cols = [str(c) for c in columns]
    out = {c for c in cols if c in _OUTCOME_BINARY}
    for name in survival_endpoints(cols):
        out |= {c for c in cols if c == f"{name}_event" or c.startswith(f"{name}_")}
    return out


def table1_variables(clinical: pd.DataFrame, by: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The columns Table 1 describes, in display order, and those it leaves out with why.

    Returns:
        ``(variables, dropped)``: baseline characteristics first, then the other columns,
        then outcomes; ``dropped`` maps a column to its reason (identifier, all missing,
        free text). The grouping column ``by`` is neither.
    """
    dropped: dict[str, str] = {}
    keep: list[str] = []
    for var in clinical.columns:
        if var == by:
            continue
        col = clinical[var]
        if var in _IDENTIFIERS:
            dropped[var] = "identifier"
        elif col.notna().sum() == 0:
            dropped[var] = "every value missing"
        elif not _is_continuous(var, col) and col.dropna().nunique() > MAX_LEVELS:
            dropped[var] = f"free text ({col.dropna().nunique()} distinct values)"
        else:
            keep.append(var)
    baseline = [v for v in DEFAULT_VARIABLES if v in keep]
    outcome_cols = _outcome_columns(clinical.columns)
    outcomes = [v for v in keep if v in outcome_cols and v not in baseline]
    others = [v for v in keep if v not in baseline and v not in outcomes]
    return baseline + others + outcomes, dropped


def _clean_p(p, test: str) -> tuple[float | None, str]:
    """A test on a constant variable gives NaN: report no p-value and say why."""
    if p is None or not np.isfinite(p):
        return None, f"{test} not computable (no variation)"
    return float(p), test


def _decimals(x: float) -> int:
    """Decimals for a summary whose largest value is ``x``: 0 from 100 up, 1 from 1, else 3
    significant digits."""
    ax = abs(float(x))
    if ax >= 100:
        return 0
    if ax >= 1 or ax == 0:
        return 1
    return int(2 - np.floor(np.log10(ax)))


def _rank_test(parts: list[np.ndarray]) -> tuple[float, str]:
    """Wilcoxon rank-sum (2 groups, as R's wilcox.test) or Kruskal-Wallis (more)."""
    if len(parts) == 2:
        x, y = parts
        ties = len(np.unique(np.concatenate(parts))) < len(x) + len(y)
        method = "exact" if (len(x) < 50 and len(y) < 50 and not ties) else "asymptotic"
        p = _st.mannwhitneyu(x, y, alternative="two-sided", use_continuity=True, method=method).pvalue
        return float(p), "Wilcoxon rank-sum"
    return float(_st.kruskal(*parts).pvalue), "Kruskal-Wallis"


def _continuous_rows(var: str, num: pd.Series, groups: pd.Series, order: list[str],
                     continuous: str) -> dict:
    parts = [num[(groups == g)].dropna().to_numpy(float) for g in order]
    p, test = None, "too few values"
    if all(len(x) >= 2 for x in parts):
        if continuous == "mean":
            if len(order) == 2:
                p, test = _st.ttest_ind(parts[0], parts[1], equal_var=True).pvalue, "t-test"
            else:
                p, test = _st.f_oneway(*parts).pvalue, "ANOVA"
        elif np.ptp(np.concatenate(parts)) == 0:
            p, test = float("nan"), "Wilcoxon rank-sum" if len(order) == 2 else "Kruskal-Wallis"
        else:
            p, test = _rank_test(parts)
        p, test = _clean_p(p, test)

    def cell(x: np.ndarray) -> str:
        if len(x) == 0:
            return "-"
        if continuous == "mean":
            return f"{x.mean():.2f} ± {x.std(ddof=1):.2f}" if len(x) >= 2 else f"{x.mean():.2f}"
        q1, med, q3 = np.percentile(x, [25, 50, 75])
        d = _decimals(max(abs(q1), abs(med), abs(q3)))
        return f"{med:.{d}f} [{q1:.{d}f}–{q3:.{d}f}]"

    return {"variable": var, "level": "mean ± SD" if continuous == "mean" else "median [IQR]",
            **{g: cell(x) for g, x in zip(order, parts)}, "p_value": p, "test_used": test}


def _categorical_rows(var: str, col: pd.Series, groups: pd.Series, order: list[str], n: dict) -> list[dict]:
    values = col.dropna()
    levels = sorted(values.unique(), key=lambda v: (str(type(v)), v))
    counts = pd.crosstab(values, groups.loc[values.index]).reindex(index=levels, columns=order, fill_value=0)
    p, test = None, "single level"
    if counts.shape[0] >= 2 and (counts.sum(axis=0) > 0).sum() >= 2:
        used = counts.loc[:, counts.sum(axis=0) > 0]
        chi = _st.chi2_contingency(used.to_numpy(), correction=False)
        if used.shape == (2, 2) and (chi.expected_freq < 5).any():
            p, test = _st.fisher_exact(used.to_numpy()).pvalue, "Fisher"
        else:
            p, test = chi.pvalue, "chi-square"
        p, test = _clean_p(p, test)
    rows = []
    for k, lev in enumerate(levels):
        rows.append({"variable": var, "level": _level_label(var, lev),
                     **{g: f"{int(counts.loc[lev, g])} ({100 * counts.loc[lev, g] / max(n[g], 1):.1f}%)"
                        for g in order},
                     "p_value": (None if p is None else float(p)) if k == 0 else None,
                     "test_used": test if k == 0 else ""})
    return rows


def table1(clinical: pd.DataFrame, by: pd.Series | str, variables: list[str] | None = None,
           group_order: list[str] | None = None, *,
           continuous: Literal["median", "mean"] = "median") -> pd.DataFrame:
    """The clinical-characteristics table of ``clinical`` split by ``by``.

    Args:
        clinical: one row per patient.
        by: a column name of ``clinical`` or a Series aligned with it (e.g. split or label).
        variables: columns to describe; default: every column (see :func:`table1_variables`).
        group_order: order of the group columns (default: train, val, test for splits, else sorted).
        continuous: ``median`` (median [IQR], rank tests) or ``mean`` (mean ± SD, t-test/ANOVA).

    Returns:
        DataFrame with columns ``variable, level, <group 1>, <group 2>, ..., p_value, test_used``;
        the first row of each variable carries its p-value (empty on the level rows). Columns
        left out follow as rows ``level = "not described: <reason>"``; ``attrs["dropped"]``
        maps them to their reasons.
    """
    if continuous not in ("median", "mean"):
        raise NpcaiError(f"table1: continuous={continuous!r}; use 'median' (median [IQR]) or 'mean' (mean ± SD)")
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
    if variables is not None:
        missing = [v for v in variables if v not in clinical.columns]
        if missing:
            raise NpcaiError(f"table1: column {missing[0]!r} is not in the clinical table; "
                             f"columns are {', '.join(map(str, clinical.columns))}")
    described, dropped = table1_variables(clinical, by_name)
    if variables is not None:
        described = [v for v in variables if v in described]
        dropped = {v: r for v, r in dropped.items() if v in variables}
    if not described:
        why = "; ".join(f"{k}: {v}" for k, v in dropped.items()) or "it has no columns besides the groups"
        raise NpcaiError(f"table1: no clinical column can be described ({why}); add clinical columns to the table")
    n = {g: int((groups == g).sum()) for g in order}
    rows: list[dict] = [{"variable": "Patients", "level": "n", **{g: str(n[g]) for g in order},
                         "p_value": None, "test_used": ""}]
    for var in described:
        col = clinical[var]
        if _is_continuous(var, col):
            num = pd.to_numeric(col, errors="coerce")
            rows.append(_continuous_rows(var, num, groups, order, continuous))
            n_missing = {g: int(num[groups == g].isna().sum()) for g in order}
        else:
            rows.extend(_categorical_rows(var, col, groups, order, n))
            n_missing = {g: int(col[groups == g].isna().sum()) for g in order}
        if any(n_missing.values()):
            rows.append({"variable": var, "level": "missing", **{g: str(n_missing[g]) for g in order},
                         "p_value": None, "test_used": ""})
    for var, reason in dropped.items():
        rows.append({"variable": var, "level": f"not described: {reason}", **{g: "" for g in order},
                     "p_value": None, "test_used": ""})
    table = pd.DataFrame(rows, columns=["variable", "level", *order, "p_value", "test_used"])
    table.attrs["dropped"] = dict(dropped)
    return table


def table1_from_folder(path: str | Path, by: str = "split", *, endpoint: str | None = None,
                       variables: list[str] | None = None,
                       continuous: Literal["median", "mean"] = "median") -> pd.DataFrame:
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
            return table1(clin, groups.rename(by), variables, continuous=continuous)
        return table1(clin, by, variables, continuous=continuous)
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
            return table1(clinical.loc[groups.index], groups, variables, continuous=continuous)
        return table1(clinical, by, variables, continuous=continuous)
    raise NpcaiError(f"{path}: neither a run folder nor a cohort folder (cohort.json)")
