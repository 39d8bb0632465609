"""Sentences that state what the statistics support, and nothing more.

Every sentence npcai writes about models (the report's summary, the CLI's findings) comes from
here, so the rules hold everywhere:

- **A comparison follows its test.** "higher than" / "lower than" only when the 95% CI of the
  difference excludes 0 (or, when no CI is given, the paired test's p < 0.05), and the sentence
  names the test; otherwise "no significant difference (p = ...)". When both a CI and a p-value
  are given and they disagree, the sentence says no significant difference (the conservative
  reading). Without any test, the numbers are given and the sentence says they were not tested.
- **An estimate carries its CI**: "AUC 0.712 (95% CI 0.601–0.823)"; a missing CI is said.
- **aAUC ± SD only over two or more backbones**; with one backbone it is that backbone's AUC.
- **Over several backbones** a comparison is reported per backbone: "higher on 1 of 2
  backbones (resnet18: p = 0.012); no significant difference on efficientnet_b0 (p = 0.525)".

Pure functions on numbers (no I/O); :class:`Comparison` holds one tested pair and can be built
from a :class:`npcai.stats.auc.DelongTest` or from a row of the study's DeLong table.

Examples:
    >>> c = Comparison("Expanded 20 px", "Tumour only", 0.81, 0.70, p_value=0.525, diff_low=-0.2, diff_high=0.4)
    >>> comparison_sentence(c)
    'No significant difference in AUC between Expanded 20 px (0.810) and Tumour only (0.700) (paired DeLong test, difference 0.110, 95% CI -0.200 to 0.400, p = 0.525).'
    >>> estimate_text(0.712, 0.601, 0.823)
    'AUC 0.712 (95% CI 0.601–0.823)'
    >>> average_auc_text([0.71])
    'AUC 0.710'
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = [
    "ALPHA", "Comparison", "is_significant", "format_p", "estimate_text", "average_auc_text",
    "comparison_sentence", "backbone_comparison_sentence",
]

#: two-sided significance level of every "higher than" / "lower than"
ALPHA = 0.05


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _num(x: Any, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}"


@dataclass(frozen=True)
class Comparison:
    """Two models' estimates on the same patients and the test of their difference.

    Attributes:
        name_a, name_b: how the sentence names the models.
        value_a, value_b: their estimates (e.g. test AUCs).
        p_value: two-sided p of the test of ``a - b`` (None: not tested).
        diff_low, diff_high: 95% CI of ``a - b`` (None: not available).
        test: the test's name as printed ("paired DeLong test").
        metric: what is compared ("AUC", "C-index").
        n: patients the test used (printed when given).
    """

    name_a: str
    name_b: str
    value_a: float
    value_b: float
    p_value: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    test: str = "paired DeLong test"
    metric: str = "AUC"
    n: int | None = None

    def __post_init__(self) -> None:
        if (self.diff_low is None) != (self.diff_high is None):
            raise ValueError("diff_low and diff_high go together")
        if _finite(self.diff_low) and _finite(self.diff_high) and float(self.diff_low) > float(self.diff_high):
            raise ValueError(f"diff_low {self.diff_low} > diff_high {self.diff_high}")
        if _finite(self.p_value) and not 0.0 <= float(self.p_value) <= 1.0:
            raise ValueError(f"p_value {self.p_value} is not in [0, 1]")

    @property
    def difference(self) -> float:
        return float(self.value_a) - float(self.value_b)

    @classmethod
    def from_delong(cls, name_a: str, name_b: str, test, *, n: int | None = None) -> "Comparison":
        """From a :class:`npcai.stats.auc.DelongTest` (paired or unpaired)."""
        kind = "paired DeLong test" if test.paired else "unpaired DeLong test"
        return cls(name_a, name_b, test.auc1, test.auc2, p_value=test.p_value,
                   diff_low=getattr(test, "diff_low", None), diff_high=getattr(test, "diff_high", None),
                   test=kind, n=n)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, test: str = "paired DeLong test") -> "Comparison":
        """From a row of the study's DeLong table (``Model A``, ``Model B``, ``AUC A``, ``AUC B``,
        ``p (DeLong, paired)``, optional ``Difference low`` / ``Difference high`` and
        ``Paired test patients``) or of ``delong.csv`` (``model_a``, ``auc_a``, ``p_value``,
        ``diff_low``, ``n``, ...)."""
        def get(*keys):
            for k in keys:
                if k in row and row[k] is not None and not (isinstance(row[k], float) and math.isnan(row[k])):
                    return row[k]
            return None

        low, high = get("Difference low", "diff_low"), get("Difference high", "diff_high")
        if low is None or high is None:
            low = high = None
        n = get("Paired test patients", "n")
        return cls(str(get("Model A", "model_a", "run_a")), str(get("Model B", "model_b", "run_b")),
                   float(get("AUC A", "auc_a")), float(get("AUC B", "auc_b")),
                   p_value=get("p (DeLong, paired)", "p_value"), diff_low=low, diff_high=high, test=test,
                   n=int(n) if n is not None else None)


def is_significant(c: Comparison, alpha: float = ALPHA) -> bool | None:
    """Whether the test supports a difference: the CI of the difference excludes 0 and/or
    p < ``alpha`` (every piece of evidence given must agree); None when nothing was tested."""
    verdicts = []
    if _finite(c.diff_low) and _finite(c.diff_high):
        verdicts.append(float(c.diff_low) > 0 or float(c.diff_high) < 0)
    if _finite(c.p_value):
        verdicts.append(float(c.p_value) < alpha)
    if not verdicts:
        return None
    return all(verdicts)


def format_p(p: float | None, alpha: float = ALPHA) -> str:
    """``p = 0.525``, ``p = 0.012``, ``p < 0.001``; ``p not available`` for None/NaN. A p just
    below ``alpha`` keeps a fourth digit (``p = 0.0496``, not a misleading ``p = 0.050``)."""
    if not _finite(p):
        return "p not available"
    p = float(p)
    if p < 0.001:
        return "p < 0.001"
    text = f"{p:.3f}"
    if p < alpha <= float(text):
        text = f"{p:.4f}"
    return f"p = {text}"


def estimate_text(value: float | None, low: float | None = None, high: float | None = None, *,
                  metric: str = "AUC", digits: int = 3) -> str:
    """``"AUC 0.712 (95% CI 0.601–0.823)"``; the CI's absence is stated, never hidden."""
    if not _finite(value):
        return f"{metric} not available"
    text = f"{metric} {_num(value, digits)}"
    if _finite(low) and _finite(high):
        return text + f" (95% CI {_num(low, digits)}–{_num(high, digits)})"
    return text + " (95% CI not available)"


def average_auc_text(aucs: Sequence[float | None], *, metric: str = "AUC", digits: int = 3) -> str:
    """The mean over backbones: ``"aAUC 0.712 ± 0.034 (SD over 3 backbones)"`` with two or more
    finite values; one value is just ``"AUC 0.712"``; none is ``"AUC not available"``."""
    vals = [float(v) for v in aucs if _finite(v)]
    if not vals:
        return f"{metric} not available"
    if len(vals) == 1:
        return f"{metric} {_num(vals[0], digits)}"
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return f"a{metric} {_num(mean, digits)} ± {_num(sd, digits)} (SD over {len(vals)} backbones)"


def _evidence(c: Comparison) -> str:
    parts = [c.test]
    if c.n is not None:
        parts.append(f"{c.n} patients")
    parts.append(f"difference {_num(c.difference)}")
    if _finite(c.diff_low) and _finite(c.diff_high):
        parts[-1] += f", 95% CI {_num(c.diff_low)} to {_num(c.diff_high)}"
    parts.append(format_p(c.p_value))
    return ", ".join(parts)


def comparison_sentence(c: Comparison, alpha: float = ALPHA) -> str:
    """One sentence comparing ``a`` with ``b`` as the test allows.

    - significant: ``"A had a higher AUC than B (0.812 vs 0.701; paired DeLong test, difference
      0.111, 95% CI 0.020 to 0.202, p = 0.017)."``
    - not significant: ``"No significant difference in AUC between A (0.812) and B (0.701)
      (paired DeLong test, difference ..., p = 0.525)."``
    - not tested: ``"A had AUC 0.812 and B 0.701; the difference was not tested."``
    """
    if not (_finite(c.value_a) and _finite(c.value_b)):
        return (f"{c.name_a} and {c.name_b} could not be compared: "
                f"{c.metric} {'not available' if not _finite(c.value_a) else _num(c.value_a)} vs "
                f"{'not available' if not _finite(c.value_b) else _num(c.value_b)}.")
    sig = is_significant(c, alpha)
    a, b = _num(c.value_a), _num(c.value_b)
    if sig is None:
        return f"{c.name_a} had {c.metric} {a} and {c.name_b} {b}; the difference was not tested."
    if sig and c.difference != 0:
        word = "higher" if c.difference > 0 else "lower"
        return f"{c.name_a} had a {word} {c.metric} than {c.name_b} ({a} vs {b}; {_evidence(c)})."
    return f"No significant difference in {c.metric} between {c.name_a} ({a}) and {c.name_b} ({b}) ({_evidence(c)})."


def backbone_comparison_sentence(name_a: str, name_b: str, per_backbone: Mapping[str, Comparison],
                                 alpha: float = ALPHA) -> str:
    """``A`` against ``B`` trained on several backbones, each pair tested on its own test
    patients: the averages (aAUC ± SD only with two or more backbones) and, per backbone, what
    its test supports. E.g. ``"Expanded 20 px (aAUC 0.760 ± 0.028 (SD over 2 backbones)) vs
    Tumour only (aAUC 0.700 ± 0.014 (SD over 2 backbones)): higher on 1 of 2 backbones
    (resnet18: p = 0.012); no significant difference on efficientnet_b0 (p = 0.525)."``

    With one backbone this is :func:`comparison_sentence` of that pair.
    """
    if not per_backbone:
        raise ValueError("per_backbone is empty: nothing to compare")
    if len(per_backbone) == 1:
        return comparison_sentence(next(iter(per_backbone.values())), alpha)
    n = len(per_backbone)
    avg_a = average_auc_text([c.value_a for c in per_backbone.values()])
    avg_b = average_auc_text([c.value_b for c in per_backbone.values()])
    higher, lower, same, untested = [], [], [], []
    for bb, c in per_backbone.items():
        sig = is_significant(c, alpha) if _finite(c.value_a) and _finite(c.value_b) else None
        if sig is None:
            untested.append(bb)
        elif sig and c.difference > 0:
            higher.append(f"{bb}: {format_p(c.p_value)}")
        elif sig and c.difference < 0:
            lower.append(f"{bb}: {format_p(c.p_value)}")
        else:
            same.append(f"{bb} ({format_p(c.p_value)})")
    parts = []
    if higher:
        parts.append(f"higher on {len(higher)} of {n} backbones ({'; '.join(higher)})")
    if lower:
        parts.append(f"lower on {len(lower)} of {n} backbones ({'; '.join(lower)})")
    if same:
        parts.append(f"no significant difference on {', '.join(same)}")
    if untested:
        parts.append(f"not tested on {', '.join(untested)}")
    test = next(iter(per_backbone.values())).test
    return f"{name_a} ({avg_a}) vs {name_b} ({avg_b}), {test} per backbone: {'; '.join(parts)}."
