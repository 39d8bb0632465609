"""Which axial slices of a scan enter an ROI dataset.

Rules (the ``--slices`` option):

* ``tumour``      every slice where the region mask is non-empty (after small-component
                  removal) -- study 000's and 003's "all tumour slices";
* ``max-area:K``  the K slices with the largest region area (ties: lower slice index first),
                  in slice order -- study 003's "Max tumour" dataset uses K = 3;
* ``all``         every slice of the scan.

Examples:
    >>> import numpy as np
    >>> m = np.zeros((5, 8, 8), bool); m[1, :2, :2] = m[2, :4, :4] = m[3, :3, :3] = True
    >>> select_slices(m, "tumour").tolist(), select_slices(m, "max-area:2").tolist()
    ([1, 2, 3], [2, 3])
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from npcai.errors import NpcaiError

__all__ = ["SliceRule", "parse_slice_rule", "select_slices"]

_PATTERN = re.compile(r"^(tumour|tumor|all|max-area:(\d+))$")


@dataclass(frozen=True)
class SliceRule:
    """A parsed slice rule: ``kind`` is tumour / max-area / all; ``k`` for max-area."""

    kind: str
    k: int = 0

    def __str__(self) -> str:
        return f"max-area:{self.k}" if self.kind == "max-area" else self.kind


def parse_slice_rule(text: str | SliceRule) -> SliceRule:
    """Parse ``tumour``, ``max-area:K`` (K >= 1) or ``all``."""
    if isinstance(text, SliceRule):
        return text
    s = str(text).strip().lower()
    m = _PATTERN.match(s)
    if not m or (m.group(2) is not None and int(m.group(2)) < 1):
        raise NpcaiError(f"--slices {text!r} is not valid; use tumour, max-area:K (e.g. max-area:3) or all")
    if m.group(2) is not None:
        return SliceRule("max-area", int(m.group(2)))
    return SliceRule("tumour" if m.group(1) in ("tumour", "tumor") else "all")


def select_slices(region: np.ndarray, rule: str | SliceRule) -> np.ndarray:
    """Indices (ascending) of the slices of a ``(z, y, x)`` region mask chosen by ``rule``."""
    rule = parse_slice_rule(rule)
    region = np.asarray(region, bool)
    if rule.kind == "all":
        return np.arange(region.shape[0])
    area = region.reshape(region.shape[0], -1).sum(axis=1)
    nonempty = np.flatnonzero(area > 0)
    if rule.kind == "tumour":
        return nonempty
    order = sorted(nonempty.tolist(), key=lambda k: (-int(area[k]), k))
    return np.array(sorted(order[: rule.k]), dtype=int)
