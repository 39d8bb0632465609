"""Patient filters without code: a small comparison grammar parsed and evaluated safely.

A filter (``npcai train --where``, a study subset's ``where:``, a run's ``config.yaml``)
selects rows of the clinical table. It is *data*, never code: the text is parsed with
Python's :mod:`ast` and only the nodes of the grammar below are accepted; the tree is then
evaluated with vectorised pandas comparisons (never ``DataFrame.query`` or ``eval``).

Grammar::

    filter     := filter "or" filter | filter "and" filter | "not" filter | "(" filter ")"
                | comparison
    comparison := operand OP operand [OP operand ...]      OP: == != < <= > >=
                | column "in" "[" literal, ... "]" | column "not in" "[" literal, ... "]"
    operand    := column | literal
    column     := a clinical column name (letters, digits, underscores)
    literal    := "text" | 'text' | number | True | False

Anything else (attribute access, calls, ``@`` variables, subscripts, lambdas, arithmetic,
dunder names) is refused with one line showing the grammar.

Examples:
    >>> import pandas as pd
    >>> clin = pd.DataFrame({"treatment": ["CCRT", "RT", "IC+CCRT"], "t_stage": [3, 2, 4]},
    ...                     index=pd.Index(["P1", "P2", "P3"], name="patient_id"))
    >>> filter_mask(clin, 'treatment in ["CCRT", "IC+CCRT"] and not t_stage < 4').tolist()
    [False, False, True]
    >>> parse_filter('@pd.io.common.os.system("x") == 0')
    Traceback (most recent call last):
    ...
    npcai.errors.NpcaiError: patient filter '@pd.io.common.os.system("x") == 0': not valid syntax; ...
"""
from __future__ import annotations

import ast
import operator
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError

__all__ = ["FILTER_GRAMMAR", "Filter", "parse_filter", "filter_mask"]

#: one line describing the accepted grammar (shown in every refusal)
FILTER_GRAMMAR = ("a filter compares clinical columns with literals (== != < <= > >=, in [..], not in [..]) "
                  "joined by and/or/not and parentheses, e.g. 'treatment == \"CCRT\" and t_stage >= 3'")

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_LITERAL_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class Filter:
    """A parsed patient filter: its text, its syntax tree and the columns it reads."""

    text: str
    tree: ast.expr
    columns: tuple[str, ...]


def _refuse(text: str, what: str) -> NpcaiError:
    return NpcaiError(f"patient filter {text!r}: {what}; {FILTER_GRAMMAR}")


def _literal(node: ast.AST, text: str):
    """The value of a literal node (numbers may carry a unary minus), or raise."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.Constant) and isinstance(node.value, _LITERAL_TYPES):
        return node.value
    raise _refuse(text, f"{ast.unparse(node)!r} is not a column or a literal")


def _check(node: ast.AST, text: str, columns: list[str]) -> None:
    """Walk the tree, accepting only the grammar's nodes; collect the column names."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, text, columns)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, text, columns)
    elif isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            left, right = operands[i], operands[i + 1]
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(left, ast.Name) or not isinstance(right, (ast.List, ast.Tuple)):
                    raise _refuse(text, f"{ast.unparse(left)} {'in' if isinstance(op, ast.In) else 'not in'} "
                                        "needs a column on the left and a list [..] of literals on the right")
                _operand(left, text, columns)
                for elt in right.elts:
                    _literal(elt, text)
            elif type(op) in _COMPARE:
                if isinstance(left, (ast.List, ast.Tuple)) or isinstance(right, (ast.List, ast.Tuple)):
                    raise _refuse(text, "a list [..] can only follow 'in' or 'not in'")
                _operand(left, text, columns)
                _operand(right, text, columns)
            else:
                raise _refuse(text, f"operator {type(op).__name__} is not allowed")
    elif isinstance(node, ast.Name):
        raise _refuse(text, f"{node.id!r} alone is not a condition; compare it, e.g. '{node.id} == 1'")
    else:
        raise _refuse(text, f"{ast.unparse(node)!r} is not allowed")


def _operand(node: ast.AST, text: str, columns: list[str]) -> None:
    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise _refuse(text, f"name {node.id!r} is not allowed")
        columns.append(node.id)
    else:
        _literal(node, text)


def parse_filter(text: str) -> Filter:
    """Parse and check a filter's text against the grammar (no table needed).

    Raises:
        NpcaiError: one line naming what is not allowed and showing the grammar.
    """
    if not isinstance(text, str) or not text.strip():
        raise _refuse(str(text), "empty or not text")
    if "__" in text:
        raise _refuse(text, "double underscores are not allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        raise _refuse(text, "not valid syntax") from None
    columns: list[str] = []
    _check(tree.body, text, columns)
    return Filter(text=text, tree=tree.body, columns=tuple(dict.fromkeys(columns)))


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _compare(op: ast.cmpop, left, right, text: str) -> pd.Series:
    for side, other in ((left, right), (right, left)):
        if isinstance(side, pd.Series) and isinstance(op, _ORDERING):
            numeric_other = isinstance(other, (int, float)) and not isinstance(other, bool) or \
                (isinstance(other, pd.Series) and _is_numeric(other))
            if numeric_other and not _is_numeric(side):
                raise _refuse(text, f"column {side.name!r} holds text, so it cannot be ordered against a number")
            if isinstance(other, str) and _is_numeric(side):
                raise _refuse(text, f"column {side.name!r} holds numbers; compare it with a number, not {other!r}")
    result = _COMPARE[type(op)](left, right)
    if not isinstance(result, pd.Series):
        raise _refuse(text, "a comparison must involve a column")
    return result.fillna(False).astype(bool) if result.dtype == object else result.astype(bool)


def _evaluate(node: ast.AST, table: pd.DataFrame, text: str) -> pd.Series:
    if isinstance(node, ast.BoolOp):
        parts = [_evaluate(v, table, text) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.UnaryOp):
        return ~_evaluate(node.operand, table, text)
    # ast.Compare (the only other node _check lets through); chains are and-ed pairwise
    operands = [node.left, *node.comparators]
    out = pd.Series(True, index=table.index)
    for i, op in enumerate(node.ops):
        left = _value(operands[i], table, text)
        if isinstance(op, (ast.In, ast.NotIn)):
            values = [_literal(e, text) for e in operands[i + 1].elts]
            hit = left.isin(values)
            out &= hit if isinstance(op, ast.In) else ~hit
        else:
            out &= _compare(op, left, _value(operands[i + 1], table, text), text)
    return out


def _value(node: ast.AST, table: pd.DataFrame, text: str):
    if isinstance(node, ast.Name):
        return table[node.id]
    return _literal(node, text)


def _available(columns: Iterable[str]) -> str:
    return ", ".join(map(str, columns)) or "none"


def filter_mask(table: pd.DataFrame, where: str | Filter) -> pd.Series:
    """Boolean Series (aligned with ``table``): which rows satisfy the filter.

    Args:
        table: the clinical table (columns are the names a filter may use).
        where: the filter text or a parsed :class:`Filter`.

    Raises:
        NpcaiError: a refused filter (grammar shown), or an unknown column (available ones listed).
    """
    flt = where if isinstance(where, Filter) else parse_filter(where)
    if table.index.name in flt.columns and table.index.name not in table.columns:
        table = table.assign(**{table.index.name: table.index})   # e.g. patient_id in [...] on clinical.csv
    missing = [c for c in flt.columns if c not in table.columns]
    if missing:
        raise NpcaiError(f"patient filter {flt.text!r}: no column {missing[0]!r} in the clinical table; "
                         f"columns are {_available(table.columns)}")
    with np.errstate(invalid="ignore"):
        try:
            mask = _evaluate(flt.tree, table, flt.text)
        except TypeError as exc:   # e.g. ordering mixed text/number cells
            raise _refuse(flt.text, f"values cannot be compared ({exc})") from None
    return mask.reindex(table.index, fill_value=False).astype(bool)
