"""Input checks and design matrices shared by the survival estimators.

Every public survival function validates its (time, event) pairs here, so that a time <= 0,
a NaN or an event coded 2 fails with one line that names the column and the patients, and
a Cox model never silently turns a missing covariate into a NaN coefficient.

A model is described by *terms*, R-formula style but without code evaluation:

* ``"age"`` -- a numeric column (one coefficient);
* ``"sex"`` -- a text column is a factor: one indicator per level except the first in sorted
  order (R's treatment contrasts; a pandas Categorical's first category instead), named
  ``"sex=M"``;
* ``"C(t_stage)"`` -- a numeric column forced to a factor;
* ``"log(ebv_dna)"``, ``"log1p(ebv_dna)"``, ``"log2(x)"``, ``"log10(x)"``, ``"sqrt(x)"`` -- a
  numeric column transformed (R's ``log(x)`` etc.; the coefficient is named as written);
  values outside the function's domain (``log`` of 0) are an error naming the patients;
* ``"treatment:score"`` -- the product of two terms' columns (an interaction);
* ``"treatment*score"`` -- shorthand for ``treatment``, ``score`` and ``treatment:score``.

Terms are data, never code: each variable is parsed with :mod:`ast` and only a column name,
or one of the functions above applied to a column name, is accepted (the style of
:mod:`npcai.cohort.filters`); nothing is evaluated.
"""
from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["check_survival", "Design", "Variable", "TRANSFORMS", "parse_variable", "expand_terms", "build_design",
           "term_variables", "complete_cases"]

log = logging.getLogger(__name__)

#: the functions a term may apply to a numeric column: name -> (function, domain test, domain in words)
TRANSFORMS = {
    "log": (np.log, lambda x: x > 0, "> 0"),
    "log1p": (np.log1p, lambda x: x > -1, "> -1"),
    "log2": (np.log2, lambda x: x > 0, "> 0"),
    "log10": (np.log10, lambda x: x > 0, "> 0"),
    "sqrt": (np.sqrt, lambda x: x >= 0, ">= 0"),
}
TERM_GRAMMAR = ("write terms as column names, C(column) (a factor), log(column), log1p(column), log2, log10 or "
                "sqrt(column), joined by ':' (interaction) or '*' (main effects and interaction), e.g. "
                "age, C(t_stage), log1p(ebv_dna), treatment*score")


@dataclass(frozen=True)
class Variable:
    """One variable of a term: ``text`` as written, its ``column``, and ``transform`` (a key of
    :data:`TRANSFORMS`), or ``factor`` for ``C(column)``."""

    text: str
    column: str
    transform: str | None = None
    factor: bool = False

    def apply(self, values: np.ndarray, ids: Sequence | None = None) -> np.ndarray:
        """The transformed values; values outside the function's domain are an error."""
        if self.transform is None:
            return values
        fn, ok, domain = TRANSFORMS[self.transform]
        bad = ~ok(values)
        if bad.any():
            raise NpcaiError(f"term {self.text}: {int(bad.sum())} value(s) of {self.column!r} are not {domain} "
                             f"(at {_where(bad, ids)}); use log1p({self.column}) for counts with zeros, or "
                             "exclude those patients")
        return fn(values)


def parse_variable(text: str) -> Variable:
    """Parse one variable of a term (no ``:``) without evaluating anything.

    Examples:
        >>> parse_variable("log1p(ebv_dna)")
        Variable(text='log1p(ebv_dna)', column='ebv_dna', transform='log1p', factor=False)
        >>> parse_variable("__import__('os')")
        Traceback (most recent call last):
        ...
        npcai.errors.NpcaiError: model term "__import__('os')" is not a column or f(column); ...
    """
    text = str(text).replace(" ", "")
    refuse = NpcaiError(f"model term {text!r} is not a column or f(column); {TERM_GRAMMAR}")
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise refuse from None
    if isinstance(node, ast.Name) and not node.id.startswith("__"):
        return Variable(text, node.id)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords
            and len(node.args) == 1 and isinstance(node.args[0], ast.Name)
            and not node.args[0].id.startswith("__")):
        fn, col = node.func.id, node.args[0].id
        if fn == "C":
            return Variable(text, col, factor=True)
        if fn in TRANSFORMS:
            return Variable(text, col, transform=fn)
    raise refuse


def _where(bad: np.ndarray, ids: Sequence | None, limit: int = 5) -> str:
    idx = np.flatnonzero(bad)
    names = [str(ids[i]) for i in idx[:limit]] if ids is not None else [f"row {i + 1}" for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ", ".join(names) + more


def check_survival(time, event, *, what: str = "survival data", ids: Sequence | None = None,
                   require_events: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(time, event)`` as float and int arrays: times finite and > 0, events 0/1.

    Args:
        time: follow-up time per patient (e.g. months); must be > 0.
        event: 1 when the event was observed at ``time``, 0 when censored.
        what: names the data in messages (e.g. ``"dfs_months/dfs_event"``).
        ids: patient ids, to name offending patients.
        require_events: at least one event is needed (Cox, log-rank, C-index).
    """
    t = np.asarray(time, dtype=float).ravel()
    e_raw = np.asarray(event, dtype=float).ravel()
    if t.size != e_raw.size:
        raise NpcaiError(f"{what}: {t.size} times but {e_raw.size} events; give one of each per patient")
    if t.size == 0:
        raise NpcaiError(f"{what}: no patients")
    bad = ~np.isfinite(t)
    if bad.any():
        raise NpcaiError(f"{what}: {int(bad.sum())} missing or infinite time(s) (at {_where(bad, ids)}); "
                         "fill them in or exclude those patients")
    bad = t <= 0
    if bad.any():
        raise NpcaiError(f"{what}: {int(bad.sum())} time(s) <= 0 (at {_where(bad, ids)}); follow-up times "
                         "must be positive (a patient censored at time 0 contributes nothing: remove them)")
    bad = ~np.isin(e_raw, (0.0, 1.0))
    if bad.any():
        raise NpcaiError(f"{what}: {int(bad.sum())} event value(s) are not 0 or 1 (at {_where(bad, ids)}); "
                         "code events as 1 = event observed, 0 = censored")
    e = e_raw.astype(int)
    if require_events and e.sum() == 0:
        raise NpcaiError(f"{what}: none of the {t.size} patients had an event; survival models and tests "
                         "need at least one observed event")
    return t, e


def expand_terms(terms: Sequence[str]) -> list[str]:
    """Expand ``a*b`` into ``a``, ``b``, ``a:b`` and check every term's spelling.

    Examples:
        >>> expand_terms(["age", "treatment*score"])
        ['age', 'treatment', 'score', 'treatment:score']
    """
    out: list[str] = []
    for raw in terms:
        term = str(raw).replace(" ", "")
        if not term:
            continue
        if "*" in term:
            parts = term.split("*")
            pieces = parts + [":".join(parts)]
        else:
            pieces = [term]
        for p in pieces:
            for v in p.split(":"):
                parse_variable(v)
            if p not in out:
                out.append(p)
    return out


def term_variables(term: str) -> list[str]:
    """The data columns a term uses (``"C(t_stage):log(score)"`` -> ``["t_stage", "score"]``)."""
    return [parse_variable(v).column for v in term.split(":")]


@dataclass
class _Factor:
    column: str
    levels: list  # all levels, sorted; the first is the reference


@dataclass
class Design:
    """A numeric design matrix with the bookkeeping needed to rebuild it for new patients.

    Attributes:
        X: (n, p) float matrix.
        columns: the p column names (``"age"``, ``"sex=M"``, ``"treatment=IC+CCRT:score"``).
        terms: the model terms in order.
        assign: term -> indices of its columns in ``X`` (R's ``assign``).
        factors: column -> sorted levels for every factor used.
    """

    X: np.ndarray
    columns: list[str]
    terms: list[str]
    assign: dict[str, list[int]]
    factors: dict[str, list] = field(default_factory=dict)

    def transform(self, data: pd.DataFrame) -> np.ndarray:
        """The design matrix of new patients with the same columns (unseen levels are an error)."""
        return build_design(data, self.terms, factors=self.factors).X


def _is_factor(series: pd.Series, forced: bool) -> bool:
    return forced or not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _variable_block(data: pd.DataFrame, var: str, factors: dict[str, list],
                    fixed: dict[str, list] | None) -> tuple[np.ndarray, list[str]]:
    parsed = parse_variable(var)
    forced, col = parsed.factor, parsed.column
    if col not in data.columns:
        raise NpcaiError(f"column {col!r} not found (columns: {', '.join(map(str, data.columns))}); "
                         "check the covariate's spelling")
    s = data[col]
    if parsed.transform is not None:
        if _is_factor(s, False) or (fixed is not None and col in fixed):
            raise NpcaiError(f"term {parsed.text}: column {col!r} is not numeric; {parsed.transform}() applies to "
                             "numbers only")
        return parsed.apply(s.to_numpy(dtype=float), list(data.index))[:, None], [parsed.text]
    if _is_factor(s, forced) or (fixed is not None and col in fixed):
        if fixed is not None and col in fixed:
            levels = fixed[col]
        elif isinstance(s.dtype, pd.CategoricalDtype):     # the categories' order sets the reference
            levels = list(s.cat.categories)
        else:
            levels = sorted(s.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
        unseen = set(s.dropna().unique().tolist()) - set(levels)
        if unseen:
            raise NpcaiError(f"column {col!r}: level(s) {sorted(map(str, unseen))} were not in the data the "
                             f"model was fitted on (levels {', '.join(map(str, levels))})")
        factors[col] = levels
        ref_levels = levels[1:]
        block = np.column_stack([(s == lv).to_numpy(dtype=float) for lv in ref_levels]) \
            if ref_levels else np.zeros((len(s), 0))
        return block, [f"{col}={lv}" for lv in ref_levels]
    return s.to_numpy(dtype=float)[:, None], [col]


def build_design(data: pd.DataFrame, terms: Sequence[str], *,
                 factors: dict[str, list] | None = None) -> Design:
    """The design matrix of ``terms`` on ``data`` (see the module docstring for the term syntax).

    Args:
        data: one row per patient; no missing values in the used columns (see
            :func:`complete_cases`).
        terms: model terms (``a*b`` is expanded).
        factors: column -> levels, to rebuild a fitted model's design on new patients.
    """
    terms = expand_terms(terms)
    found: dict[str, list] = {}
    blocks, columns, assign = [], [], {}
    for term in terms:
        block, names = np.ones((len(data), 1)), [""]
        for var in term.split(":"):
            b, n = _variable_block(data, var, found, factors)
            block = np.einsum("ij,ik->ijk", block, b).reshape(len(data), -1)
            names = [f"{a}:{c}" if a else c for a in names for c in n]
        start = sum(x.shape[1] for x in blocks)
        assign[term] = list(range(start, start + block.shape[1]))
        blocks.append(block)
        columns.extend(names)
    X = np.column_stack(blocks) if blocks else np.zeros((len(data), 0))
    return Design(X=X, columns=columns, terms=terms, assign=assign, factors=found)


def complete_cases(data: pd.DataFrame, columns: Sequence[str], *, what: str = "model") -> pd.DataFrame:
    """Rows with no missing value in ``columns``; dropped rows are counted in a logged warning.

    This is R's ``na.omit`` (complete-case analysis), made visible: the warning names how
    many patients each column removed. All rows missing is an error.
    """
    columns = list(dict.fromkeys(columns))
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise NpcaiError(f"column {missing[0]!r} not found (columns: {', '.join(map(str, data.columns))}); "
                         "check the spelling")
    na = data[columns].isna()
    keep = ~na.any(axis=1)
    if not keep.any():
        raise NpcaiError(f"{what}: every patient has a missing value in {', '.join(columns)}; "
                         "fill in the values or choose other covariates")
    if (~keep).any():
        per = ", ".join(f"{c}: {int(n)}" for c, n in na.sum().items() if n)
        log.warning("%s: %d of %d patients dropped for missing values (%s); complete-case analysis",
                    what, int((~keep).sum()), len(data), per)
    return data.loc[keep]
