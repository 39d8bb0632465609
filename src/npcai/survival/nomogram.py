"""Nomogram of a Cox model, as R's ``rms::nomogram``, with a one-patient points calculator.

Each predictor gets an axis of *points*: its contribution ``x beta`` to the linear predictor,
shifted so its smallest value is 0 and scaled so that the predictor with the widest range of
contributions spans 0–100 points (rms's ``sc = 100 / max range``). A factor's levels sit on
one axis. A factor-by-numeric interaction (study 004 Fig. 2a's ``treatment x
predictive-score``) is drawn as one axis of the numeric variable per factor level, each
including that level's main effect (rms's ``score (treatment=CCRT)`` axes); those axes share
one 0-point origin. The total points map to the linear predictor ``lp = lp_offset +
total / scale`` (centred at the mean covariates, R's ``predict(fit, type = "lp")``) and to
survival at each requested time, ``S(t) = exp(-H0(t) exp(lp))`` with the Breslow-type
baseline ``H0`` (at the mean covariates) of :class:`~npcai.survival.cox.CoxPH`.

Axis values default to R's ``pretty(range(x), 10)`` over the fitted patients (rms's default);
pass ``axes={"age": [20, 40, 60, 80]}`` to choose them. Axis ticks, points per axis, the
scale and the survival-axis positions equal rms to 1e-6 (``tests/survival``). Written by
hand: no Python package draws nomograms (lifelines issue #1144).

The JSON form (:meth:`Nomogram.to_dict`, format ``npcai-nomogram/1``, documented in
docs/contracts.md) holds everything the calculator needs, so the web tool computes one
patient's points from the file alone.

Examples:
    A worked example like seed 004's Fig. 2 caption, on a two-predictor nomogram written
    out by hand in its JSON form (age: 0.4 points per year above 20; a treatment x score
    interaction with one axis per treatment):

    >>> nom = Nomogram.from_dict({
    ...     "format": "npcai-nomogram/1", "time_unit": "months", "scale": 20.0, "lp_offset": -3.0,
    ...     "center": 1.0, "times": [36, 60], "baseline_cumhaz": [0.15, 0.30], "lp_range": [-2, 2],
    ...     "axes": [
    ...         {"label": "age", "variable": "age", "kind": "numeric", "condition": None,
    ...          "values": [20, 80], "points": [0, 24], "points_at_zero": -8.0, "points_per_unit": 0.4},
    ...         {"label": "score (treatment=CCRT)", "variable": "score", "kind": "numeric",
    ...          "condition": {"treatment": "CCRT"}, "values": [-1, 1], "points": [30, 70],
    ...          "points_at_zero": 50.0, "points_per_unit": 20.0},
    ...         {"label": "score (treatment=IC+CCRT)", "variable": "score", "kind": "numeric",
    ...          "condition": {"treatment": "IC+CCRT"}, "values": [-1, 1], "points": [27.5, 32.5],
    ...          "points_at_zero": 30.0, "points_per_unit": 2.5}]})
    >>> p = nom.points({"age": 40, "treatment": "IC+CCRT", "score": -0.4})
    >>> p.by_axis, round(p.total, 1)
    ({'age': 8.0, 'score (treatment=IC+CCRT)': 29.0}, 37.0)
    >>> {t: round(s, 2) for t, s in p.survival.items()}
    {36.0: 0.95, 60.0: 0.91}
    >>> q = nom.points({"age": 40, "treatment": "CCRT", "score": -0.4})
    >>> round(q.total, 1), round(q.survival[60.0], 2)
    (50.0, 0.83)

    So this 40-year-old with a score of -0.4 totals 8 + 29 = 37 points with IC+CCRT
    (5-year survival 91%) and 8 + 42 = 50 points with CCRT (83%): a 5-year difference of
    8% in favour of IC+CCRT, read off the nomogram as in seed 004's Fig. 2 caption.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.survival._data import TRANSFORMS, Variable, parse_variable
from npcai.survival.cox import CoxPH

__all__ = ["Nomogram", "NomogramAxis", "PatientPoints", "r_pretty", "FORMAT"]

FORMAT = "npcai-nomogram/1"


def r_pretty(lo: float, hi: float, n: int = 10) -> list[float]:
    """R's ``pretty(c(lo, hi), n)``: about ``n`` equally spaced round values covering [lo, hi].

    Examples:
        >>> r_pretty(21, 78)
        [20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0]
    """
    h, h5 = 1.5, 0.5 + 1.5 * 1.5
    min_n = n // 3
    dx = hi - lo
    if dx == 0 and hi == 0:
        cell, small = 1.0, True
    else:
        cell = max(abs(lo), abs(hi))
        u = 1 + (1 / (1 + h) if h5 >= 1.5 * h + 0.5 else 1.5 / (1 + h5))
        u *= max(1, n) * np.finfo(float).eps
        small = dx < cell * u * 3
    if small:
        if cell > 10:
            cell = 9 + cell / 10
        cell *= 0.75
        if min_n > 1:
            cell /= min_n
    else:
        cell = dx
        if n > 1:
            cell /= n
    base = 10 ** math.floor(math.log10(cell))
    unit = base
    if 2 * base - cell < h * (cell - unit):
        unit = 2 * base
        if 5 * base - cell < h5 * (cell - unit):
            unit = 5 * base
            if 10 * base - cell < h * (cell - unit):
                unit = 10 * base
    ns, nu = math.floor(lo / unit + 1e-7), math.ceil(hi / unit - 1e-7)
    while ns * unit > lo + 1e-10 * unit:
        ns -= 1
    while nu * unit < hi - 1e-10 * unit:
        nu += 1
    k = int(0.5 + nu - ns)
    if k < min_n:
        k = min_n - k
        if ns >= 0:
            nu += k // 2
            ns -= k // 2 + k % 2
        else:
            ns -= k // 2
            nu += k // 2 + k % 2
    return [round(i * unit, 12) + 0.0 for i in range(ns, nu + 1)]


def _f(transform: str | None, x: np.ndarray) -> np.ndarray:
    """A term's transform applied to axis values (identity without one)."""
    return x if transform is None else TRANSFORMS[transform][0](x)


def _decade_ticks(lo: float, hi: float) -> list[float]:
    """Ticks of a log-scale axis in the column's units: the powers of ten from just below the
    smallest positive value to just above the largest; with 0 in the data (``log1p``), 0 and
    then the powers from 10 (evenly spaced on the log1p scale).

    Examples:
        >>> _decade_ticks(0, 2.8e6)
        [0.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0]
        >>> _decade_ticks(3.2, 450)
        [1.0, 10.0, 100.0, 1000.0]
    """
    if lo <= 0:
        k0 = 1
    else:
        k0 = math.floor(math.log10(lo))
    k1 = max(math.ceil(math.log10(hi)) if hi > 0 else k0, k0 + 1)
    return ([0.0] if lo <= 0 else []) + [10.0 ** k for k in range(k0, k1 + 1)]


def _plain(v):
    """A tick value as a JSON number (numpy scalars unwrapped) or a string (factor levels)."""
    v = v.item() if isinstance(v, np.generic) else v
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


@dataclass
class NomogramAxis:
    """One axis: tick values (numbers, or factor levels) and their points.

    ``condition`` is ``{factor: level}`` for an interaction axis (the axis applies to patients
    with that level). Numeric axes are linear in ``f(x)``: ``points = points_at_zero +
    points_per_unit * f(x)``, where ``f`` is the term's ``transform`` (``log``, ``log1p``,
    ``log2``, ``log10``, ``sqrt``; None: ``f(x) = x``); the ticks are in the column's own units.
    """

    label: str
    variable: str
    kind: str                      # "numeric" | "factor"
    values: list
    points: list[float]
    condition: dict | None = None
    points_at_zero: float | None = None
    points_per_unit: float | None = None
    transform: str | None = None

    def __post_init__(self):
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise NpcaiError(f"nomogram: axis {self.label!r}: unknown transform {self.transform!r} "
                             f"(known: {', '.join(TRANSFORMS)})")

    def points_of(self, value) -> float:
        if self.kind == "numeric":
            try:
                x = float(value)
            except (TypeError, ValueError) as exc:
                raise NpcaiError(f"nomogram: {self.variable} = {value!r} is not a number") from exc
            if not np.isfinite(x):
                raise NpcaiError(f"nomogram: {self.variable} is missing; every predictor needs a value")
            if self.transform is not None:
                x = float(Variable(self.label, self.variable, self.transform).apply(np.array([x]))[0])
            return float(self.points_at_zero + self.points_per_unit * x)
        labels = [str(v) for v in self.values]
        for i, v in enumerate(self.values):
            same = str(v) == str(value)
            if not same and isinstance(v, (int, float)) and isinstance(value, (int, float, np.number)):
                same = float(v) == float(value)
            if same:
                return float(self.points[i])
        raise NpcaiError(f"nomogram: {self.variable} = {value!r} is not one of {', '.join(labels)}")


@dataclass(frozen=True)
class PatientPoints:
    """One patient's points per axis, total points, linear predictor and survival per time."""

    by_axis: dict[str, float]
    total: float
    lp: float
    survival: dict[float, float] = field(default_factory=dict)


class Nomogram:
    """rms-style nomogram of a fitted :class:`CoxPH` (no strata).

    Args:
        times: survival axes, in the model's time unit (e.g. ``(36, 60)`` months).
        axes: variable -> tick values, overriding ``pretty(range, 10)``.
        survival_ticks: survival probabilities marked on the survival axes.
        time_unit: label of the time unit.

    Attributes (after ``fit``): ``axes_`` (list of :class:`NomogramAxis`), ``scale_`` (points
    per unit of linear predictor), ``lp_offset_`` (the centred lp at 0 total points, rms's
    ``Intercept``), ``center_`` (x'beta of the mean covariates, for information), ``baseline_cumhaz_`` (H0 at each time, at the mean covariates),
    ``survival_axes_`` ({time: (values, points)}), ``lp_axis_`` ((values, points)).
    """

    def __init__(self, times: Sequence[float] = (36, 60), *, axes: Mapping[str, Sequence] | None = None,
                 survival_ticks: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
                 time_unit: str = "months"):
        self.times = [float(t) for t in times]
        if not self.times or any(t <= 0 for t in self.times):
            raise NpcaiError("nomogram: survival times must be positive, e.g. 36,60")
        self.axis_values = dict(axes or {})
        self.survival_ticks = [float(s) for s in survival_ticks]
        if any(not 0 < s < 1 for s in self.survival_ticks):
            raise NpcaiError("nomogram: survival ticks must be strictly between 0 and 1")
        self.time_unit = time_unit

    # ------------------------------------------------------------------ building
    def fit(self, model: CoxPH, data: pd.DataFrame) -> "Nomogram":
        """Build the axes of ``model`` over the ranges of ``data`` (the patients it was fitted on)."""
        if not hasattr(model, "coef_"):
            raise NpcaiError("nomogram: fit the Cox model first")
        if model.strata:
            raise NpcaiError("nomogram: a stratified Cox model has one baseline per stratum; fit it without "
                             "strata (add the stratifying column as a covariate)")
        d = model.design_
        beta = dict(zip(d.columns, model.coef_.to_numpy()))
        groups = self._groups(d.terms)
        raw: list[tuple[int, NomogramAxis, np.ndarray]] = []   # (group, axis, xbeta at ticks)
        for gi, (var, factor) in enumerate(groups):
            raw.extend((gi, ax, xb) for ax, xb in self._group_axes(var, factor, d, beta, data))
        gmin = {g: min(xb.min() for gg, _, xb in raw if gg == g) for g in range(len(groups))}
        gmax = {g: max(xb.max() for gg, _, xb in raw if gg == g) for g in range(len(groups))}
        widest = max(gmax[g] - gmin[g] for g in gmin)
        if widest <= 0:
            raise NpcaiError("nomogram: every predictor has zero effect over its axis; nothing to draw")
        sc = 100.0 / widest
        axes = []
        for g, ax, xb in raw:
            ax.points = [float(v) for v in (xb - gmin[g]) * sc]
            if ax.kind == "numeric":
                x = _f(ax.transform, np.asarray(ax.values, dtype=float))
                slope = (xb[-1] - xb[0]) / (x[-1] - x[0]) if x.size > 1 else 0.0
                ax.points_per_unit = float(slope * sc)
                ax.points_at_zero = float((xb[0] - slope * x[0] - gmin[g]) * sc)
            axes.append(ax)
        self.axes_ = axes
        self.scale_ = float(sc)
        self.center_ = float(model._center @ model.coef_.to_numpy())
        self.lp_offset_ = float(sum(gmin.values())) - self.center_
        self.baseline_cumhaz_ = [float(h) for h in model.baseline_cumhaz(self.times)]
        lp = model.predict_lp(data.dropna(subset=list(d.factors) + [c for c in d.columns if c in data]),
                              centered=True)
        self.lp_range_ = (float(lp.min()), float(lp.max()))
        self._derive_scales()
        return self

    @staticmethod
    def _groups(terms: list[str]) -> list[tuple[str, str | None]]:
        """(variable, interacting factor or None) per axis group, in term order."""
        inter = {}
        for t in terms:
            parts = t.split(":")
            if len(parts) > 2:
                raise NpcaiError(f"nomogram: term {t!r}: only two-way interactions can be drawn")
            if len(parts) == 2:
                inter[parts[0]], inter[parts[1]] = parts[1], parts[0]
        groups, seen = [], set()
        for t in terms:
            if ":" in t or t in seen:
                continue
            if t in inter:
                pair = {t, inter[t]}
                if pair & seen:
                    continue
                seen |= pair
                groups.append((t, inter[t]))
            else:
                seen.add(t)
                groups.append((t, None))
        return groups

    def _ticks(self, var: str, data: pd.DataFrame) -> list[float]:
        v = parse_variable(var)
        if v.column in self.axis_values:
            return [float(x) for x in self.axis_values[v.column]]
        x = pd.to_numeric(data[v.column], errors="coerce").dropna()
        if v.transform in ("log", "log1p", "log2", "log10"):
            return _decade_ticks(float(x.min()), float(x.max()))
        return r_pretty(float(x.min()), float(x.max()), 10)

    def _group_axes(self, var: str, other: str | None, d, beta: dict, data: pd.DataFrame):
        """Axes of one group with their x'beta at the ticks."""
        v = parse_variable(var)
        col = v.column
        if other is None:
            if col in d.factors:
                levels = d.factors[col]
                xb = np.array([beta.get(f"{col}={lv}", 0.0) for lv in levels])
                yield NomogramAxis(col, col, "factor", list(levels), []), xb
            else:
                ticks = self._ticks(var, data)
                yield (NomogramAxis(col, col, "numeric", ticks, [], transform=v.transform),
                       beta[var] * _f(v.transform, np.asarray(ticks)))
            return
        ov = parse_variable(other)
        ocol = ov.column
        if (col in d.factors) == (ocol in d.factors):
            raise NpcaiError(f"nomogram: interaction {var}:{other}: only a factor x numeric interaction can be "
                             "drawn (one axis of the numeric variable per level of the factor)")
        if col in d.factors:
            col, ocol, var, v = ocol, col, other, ov
        names = d.columns
        levels = d.factors[ocol]
        ticks = np.asarray(self._ticks(var, data))
        fx = _f(v.transform, ticks)
        for lv in levels:
            main = beta.get(f"{ocol}={lv}", 0.0)
            slope = beta.get(var, 0.0) + next((beta[c] for c in names if set(c.split(":")) == {f"{ocol}={lv}", var}), 0.0)
            yield (NomogramAxis(f"{col} ({ocol}={lv})", col, "numeric", list(ticks), [], condition={ocol: lv},
                                transform=v.transform),
                   main + slope * fx)

    def _derive_scales(self) -> None:
        """Total-points, linear-predictor and survival axes from scale, offset and baseline."""
        groups: dict[str, list[NomogramAxis]] = {}
        for ax in self.axes_:
            key = ax.variable if ax.condition is None else "|".join(sorted(ax.condition)) + ax.variable
            groups.setdefault(key, []).append(ax)
        self.max_total_ = float(sum(max(max(a.points) for a in axs) for axs in groups.values()))
        # rms: lp ticks = pretty(range of the patients' lp), total points = pretty(0, max(100, lp end))
        lp_ticks = r_pretty(*self.lp_range_, 10)
        self.lp_axis_ = (lp_ticks, [float((v - self.lp_offset_) * self.scale_) for v in lp_ticks])
        self.total_axis_ = r_pretty(0.0, max(100.0, self.lp_axis_[1][-1], self.max_total_), 10)
        self.survival_axes_ = {}
        for t, h in zip(self.times, self.baseline_cumhaz_):
            if h <= 0:
                raise NpcaiError(f"nomogram: no events before {t:g} {self.time_unit}; choose a later time")
            vals, pts = [], []
            for s in self.survival_ticks:
                lp = math.log(-math.log(s) / h)
                pt = (lp - self.lp_offset_) * self.scale_
                if lp_ticks[0] - 1e-9 <= lp <= lp_ticks[-1] + 1e-9:     # rms: ticks within the lp axis
                    vals.append(s)
                    pts.append(float(pt))
            self.survival_axes_[t] = (vals, pts)

    # ------------------------------------------------------------------ one patient
    def points(self, patient: Mapping) -> PatientPoints:
        """Points per axis, total points, linear predictor and S(t) of one patient.

        ``patient`` maps each predictor (and an interaction's factor) to its value.
        """
        by_axis = {}
        for ax in self.axes_:
            if ax.condition is not None:
                (fac, level), = ax.condition.items()
                if fac not in patient:
                    raise NpcaiError(f"nomogram: the patient has no value for {fac!r}")
                if str(patient[fac]) != str(level):
                    continue
            if ax.variable not in patient:
                raise NpcaiError(f"nomogram: the patient has no value for {ax.variable!r}")
            by_axis[ax.label] = ax.points_of(patient[ax.variable])
        cond = [ax for ax in self.axes_ if ax.condition is not None]
        for fac in {next(iter(a.condition)) for a in cond}:
            levels = [str(a.condition[fac]) for a in cond if fac in a.condition]
            if str(patient[fac]) not in levels:
                raise NpcaiError(f"nomogram: {fac} = {patient[fac]!r} is not one of {', '.join(levels)}")
        total = float(sum(by_axis.values()))
        lp = self.lp_offset_ + total / self.scale_
        surv = {t: float(math.exp(-h * math.exp(lp)))
                for t, h in zip(self.times, self.baseline_cumhaz_)}
        return PatientPoints(by_axis=by_axis, total=total, lp=float(lp), survival=surv)

    # ------------------------------------------------------------------ JSON form
    def to_dict(self) -> dict:
        """The JSON-ready form (``npcai-nomogram/1``; see docs/contracts.md)."""
        return {
            "format": FORMAT, "time_unit": self.time_unit, "scale": self.scale_, "lp_offset": self.lp_offset_,
            "center": self.center_, "times": self.times, "baseline_cumhaz": self.baseline_cumhaz_,
            "survival_ticks": self.survival_ticks,
            "axes": [{"label": a.label, "variable": a.variable, "kind": a.kind, "condition": a.condition,
                      "values": [_plain(v) for v in a.values],
                      "points": a.points, "points_at_zero": a.points_at_zero, "points_per_unit": a.points_per_unit,
                      "transform": a.transform}
                     for a in self.axes_],
            "total_points_max": self.max_total_, "lp_range": list(self.lp_range_),
            "total_points_axis": self.total_axis_,
            "lp_axis": {"values": self.lp_axis_[0], "points": self.lp_axis_[1]},
            "survival_axes": [{"time": t, "values": v, "points": p} for t, (v, p) in self.survival_axes_.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "Nomogram":
        """Rebuild a nomogram (for the calculator and the figure) from :meth:`to_dict`'s form."""
        if d.get("format") != FORMAT:
            raise NpcaiError(f"nomogram file: format {d.get('format')!r} is not {FORMAT!r}; write it with "
                             "npcai survival nomogram")
        try:
            nom = cls(d["times"], survival_ticks=d.get("survival_ticks", (0.1, 0.3, 0.5, 0.7, 0.9)),
                      time_unit=d.get("time_unit", "months"))
            nom.axes_ = [NomogramAxis(**a) for a in d["axes"]]
            nom.scale_, nom.lp_offset_, nom.center_ = float(d["scale"]), float(d["lp_offset"]), float(d["center"])
            nom.baseline_cumhaz_ = [float(h) for h in d["baseline_cumhaz"]]
            nom.lp_range_ = tuple(float(v) for v in d["lp_range"])
        except (KeyError, TypeError) as exc:
            raise NpcaiError(f"nomogram file: missing or malformed field ({exc}); write it with "
                             "npcai survival nomogram") from exc
        nom._derive_scales()
        return nom
