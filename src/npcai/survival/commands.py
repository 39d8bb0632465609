"""The analyses behind ``npcai survival ...``: each reads a table, writes CSV tables, PNG figures
and a ``summary.json`` into one output folder (atomically), and returns the summary.

Output files (all under ``out``):

* ``km``: ``km_summary.csv`` (per group: n, events, median with CI, S(t) with CI at ``at``),
  ``km_table.csv`` (the full KM table per group), ``logrank.csv``, ``hazard_ratios.csv``, ``km.png``;
* ``cox``: ``cox_coefficients.csv``, ``cox_tests.csv`` (Wald, LR, score, AIC, and the Wald
  test of every term, e.g. an interaction), ``cox_zph.csv``, ``cox_univariate.csv``,
  ``cox_predictions.csv`` (S(t) per patient at ``at``);
* ``stepwise``: ``stepwise_steps.csv`` (every candidate at every step), ``stepwise_final.csv``;
* ``nomogram``: ``nomogram.json`` (``npcai-nomogram/1``), ``nomogram.png``, ``nomogram_points.csv``;
* ``calibrate``: ``calibration_<t>.csv`` and ``calibration_<t>.png`` per time;
* ``risk-groups``: ``risk_groups.csv`` (patient, score, group, cohort), ``risk_groups_logrank.csv``,
  ``km_<cohort>.png``;
* ``subgroups``: ``subgroups.csv``, ``forest.png``;
* ``match``: ``balance.csv``, ``pairs.csv``, ``counts.csv`` (per arm: all, matched, unmatched),
  ``matched_patients.txt`` (one patient id per line);
* ``cindex``: ``cindex.csv``, ``cindex_pairs.csv``.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_output_dir
from npcai.survival._data import expand_terms, term_variables

__all__ = ["nomogram_total_points", "run_km", "run_cox", "run_stepwise", "run_nomogram", "run_calibrate", "run_risk_groups",
           "run_subgroups", "run_match", "run_cindex", "ENDPOINT_LABELS"]

log = logging.getLogger(__name__)

ENDPOINT_LABELS = {"dfs_months": "DFS", "pfs_months": "PFS", "os_months": "OS", "dmfs_months": "DMFS"}


def _label(time: str) -> str:
    return ENDPOINT_LABELS.get(time, time.replace("_months", "").upper())


def _write_csv(df: pd.DataFrame, path: Path, index: bool = False) -> None:
    df.to_csv(path, index=index, float_format="%.10g")


def _json_safe(v):
    """NaN/inf -> None (valid JSON), numpy scalars -> Python numbers, recursively."""
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.integer, np.bool_)):
        return v.item()
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def _summary(out: Path, summary: dict) -> dict:
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n")
    return summary


def _covariates(table: pd.DataFrame, covariates: Sequence[str] | None) -> list[str]:
    if covariates:
        return expand_terms(covariates)
    defaults = [c for c in ("age", "sex", "t_stage", "n_stage", "ebv_dna", "treatment") if c in table.columns]
    if not defaults:
        raise NpcaiError("no covariates given and none of age, sex, t_stage, n_stage, ebv_dna, treatment are in "
                         "the table; give covariates")
    return defaults


def run_km(table: pd.DataFrame, out, time: str, event: str, *, by: str | None = None, strata: str | None = None,
           at: Sequence[float] = (), reference: str | None = None, conf_type: str = "log-log",
           overwrite: bool = False) -> dict:
    """Kaplan–Meier by group with log-rank and HR (or one curve without ``by``)."""
    from npcai.survival.figures import plot_km
    from npcai.survival.groups import compare_groups
    from npcai.survival.kaplan_meier import KaplanMeier

    lab = _label(time)
    with atomic_output_dir(out, overwrite) as tmp:
        if by is None:
            from npcai.survival._data import check_survival, complete_cases

            d = complete_cases(table, [time, event], what="Kaplan-Meier")
            t, e = check_survival(d[time], d[event], what=f"{time}/{event}", require_events=False)
            km = KaplanMeier(conf_type).fit(t, e)
            tab = km.table_.assign(group="all")
            _write_csv(tab, tmp / "km_table.csv")
            at_tab = km.at([u for u in at if u <= t.max()]) if at else pd.DataFrame()
            _write_csv(at_tab, tmp / "km_at.csv")
            summary = {"n": km.n_, "events": km.n_events_, "median": km.median_.to_dict()}
            return _summary(tmp, summary)
        comp = compare_groups(table, time, event, by, at=at, reference=reference, strata=strata,
                              conf_type=conf_type)
        _write_csv(comp.summary, tmp / "km_summary.csv")
        _write_csv(pd.concat([km.table_.assign(group=g) for g, km in comp.curves.items()]), tmp / "km_table.csv")
        lr = comp.logrank
        _write_csv(pd.DataFrame([{"chisq": lr.chisq, "df": lr.df, "p_value": lr.p_value, "stratified": lr.stratified}]),
                   tmp / "logrank.csv")
        _write_csv(comp.hazard_ratios, tmp / "hazard_ratios.csv")
        plot_km(tmp / "km.png", comp, survival_label=f"{lab} probability", by_label=by,
                title=f"{lab} by {by}")
        return _summary(tmp, {"by": by, "logrank": lr.to_dict(), "hazard_ratios": comp.hazard_ratios.to_dict("records"),
                              "groups": comp.summary.to_dict("records")})


def run_cox(table: pd.DataFrame, out, time: str, event: str, covariates: Sequence[str] | None, *,
            ties: str = "efron", strata: str | None = None, at: Sequence[float] = (),
            zph: str = "km", univariate: bool = True, overwrite: bool = False) -> dict:
    """Multivariable Cox model (+ univariate screening, cox.zph and predicted survival)."""
    from npcai.survival.cox import CoxPH, cox_univariate
    from npcai.survival.zph import cox_zph

    terms = _covariates(table, covariates)
    with atomic_output_dir(out, overwrite) as tmp:
        m = CoxPH(ties=ties).fit(table, time, event, terms, strata=strata)
        _write_csv(m.summary_.reset_index(), tmp / "cox_coefficients.csv")
        tests = [{"test": "Wald", **m.wald_test_.to_dict()}, {"test": "likelihood ratio", **m.lr_test_.to_dict()},
                 {"test": "score (log-rank)", **m.score_test_.to_dict()}]
        tests += [{"test": f"Wald: {t}", **m.term_test(t).to_dict()} for t in m.design_.terms]
        tests_df = pd.DataFrame(tests)
        tests_df["aic"] = m.aic_
        _write_csv(tests_df, tmp / "cox_tests.csv")
        z = cox_zph(m, zph)
        _write_csv(z.table.reset_index(), tmp / "cox_zph.csv")
        if univariate:
            main = [t for t in terms if ":" not in t]
            _write_csv(cox_univariate(table, time, event, main, ties=ties), tmp / "cox_univariate.csv")
        if at:
            used = [time, event] + [v for t in terms for v in term_variables(t)] + ([strata] if strata else [])
            rows = table.dropna(subset=used)
            pred = m.predict_survival(rows, at)
            pred.columns = [f"S({u:g})" for u in at]
            _write_csv(pred.reset_index(), tmp / "cox_predictions.csv")
        return _summary(tmp, {"n": m.n_, "events": m.n_events_, "ties": ties, "terms": m.design_.terms,
                              "aic": m.aic_, "wald": m.wald_test_.to_dict(), "lr": m.lr_test_.to_dict(),
                              "score": m.score_test_.to_dict(), "zph_global_p": float(z.table.loc["GLOBAL", "p"]),
                              "coefficients": m.summary_.reset_index().to_dict("records")})


def run_stepwise(table: pd.DataFrame, out, time: str, event: str, covariates: Sequence[str] | None, *,
                 lower: Sequence[str] = (), start: Sequence[str] | None = None, ties: str = "efron",
                 overwrite: bool = False) -> dict:
    """Stepwise AIC selection (both directions) over ``covariates``."""
    from npcai.survival.stepwise import step_aic

    upper = _covariates(table, covariates)
    with atomic_output_dir(out, overwrite) as tmp:
        r = step_aic(table, time, event, upper=upper, lower=lower, start=start, ties=ties)
        _write_csv(r.steps, tmp / "stepwise_steps.csv")
        if r.final_model is not None:
            _write_csv(r.final_model.summary_.reset_index(), tmp / "stepwise_final.csv")
        else:
            _write_csv(pd.DataFrame(columns=["term"]), tmp / "stepwise_final.csv")
        return _summary(tmp, {"upper": upper, "lower": list(lower), "final_terms": r.final_terms,
                              "final_aic": r.final_aic, "steps": int(r.steps.step.max())})


def run_nomogram(table: pd.DataFrame, out, time: str, event: str, covariates: Sequence[str] | None, *,
                 at: Sequence[float] = (36, 60), ties: str = "efron", overwrite: bool = False) -> dict:
    """Cox model -> rms-style nomogram (JSON, figure, every patient's points)."""
    from npcai.survival.cox import CoxPH
    from npcai.survival.figures import plot_nomogram
    from npcai.survival.nomogram import Nomogram

    terms = _covariates(table, covariates)
    used = [time, event] + [v for t in terms for v in term_variables(t)]
    data = table.dropna(subset=used)
    with atomic_output_dir(out, overwrite) as tmp:
        m = CoxPH(ties=ties).fit(table, time, event, terms)
        nom = Nomogram(at).fit(m, data)
        d = nom.to_dict()
        d["endpoint"] = {"time": time, "event": event, "label": _label(time)}
        d["model"] = {"terms": m.design_.terms, "n": m.n_, "events": m.n_events_, "ties": ties}
        (tmp / "nomogram.json").write_text(json.dumps(d, indent=2) + "\n")
        plot_nomogram(tmp / "nomogram.png", nom, survival_label=_label(time),
                      title=f"Nomogram for {_label(time)} (Cox model, n = {m.n_}, {m.n_events_} events)")
        rows = []
        for pid, row in data.iterrows():
            p = nom.points(row.to_dict())
            rows.append({"patient_id": pid, **{f"points: {k}": v for k, v in p.by_axis.items()},
                         "total_points": p.total, "lp": p.lp, **{f"S({t:g})": s for t, s in p.survival.items()}})
        _write_csv(pd.DataFrame(rows), tmp / "nomogram_points.csv")
        return _summary(tmp, {"terms": m.design_.terms, "scale": nom.scale_, "times": nom.times,
                              "mean_total_points": float(np.mean([r["total_points"] for r in rows]))})


def run_calibrate(table: pd.DataFrame, out, time: str, event: str, covariates: Sequence[str] | None, *,
                  at: Sequence[float] = (36, 60), m: int = 50, n_boot: int = 40, seed: int = 0,
                  ties: str = "efron", overwrite: bool = False) -> dict:
    """Calibration of the Cox model at each time of ``at`` (rms::calibrate, cmethod KM)."""
    from npcai.survival.calibration import calibrate_survival
    from npcai.survival.cox import CoxPH
    from npcai.survival.figures import plot_calibration

    terms = _covariates(table, covariates)
    with atomic_output_dir(out, overwrite) as tmp:
        model = CoxPH(ties=ties).fit(table, time, event, terms)
        summary = {"terms": model.design_.terms, "times": {}}
        for u in at:
            cal = calibrate_survival(model, table, u, m=m, n_boot=n_boot, seed=seed)
            _write_csv(cal.groups, tmp / f"calibration_{u:g}.csv")
            plot_calibration(tmp / f"calibration_{u:g}.png", cal, survival_label=_label(time))
            summary["times"][f"{u:g}"] = cal.summary()
        return _summary(tmp, summary)


def nomogram_total_points(table: pd.DataFrame, nomogram_json) -> pd.Series:
    """Each patient's total points on a saved nomogram (``nomogram.json``); patients missing a
    predictor are left out with a logged warning."""
    from npcai.survival.nomogram import Nomogram

    path = Path(nomogram_json)
    if not path.is_file():
        raise NpcaiError(f"{path}: nomogram file not found; write one with npcai survival nomogram")
    try:
        nom = Nomogram.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise NpcaiError(f"{path}: not valid JSON ({exc.msg}); write it with npcai survival nomogram") from exc
    needed = sorted({a.variable for a in nom.axes_} | {k for a in nom.axes_ if a.condition for k in a.condition})
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise NpcaiError(f"{path}: the nomogram needs column {missing[0]!r}, which the table lacks")
    rows = table.dropna(subset=needed)
    if len(rows) < len(table):
        log.warning("nomogram points: %d patients without every predictor (%s) left out", len(table) - len(rows),
                    ", ".join(needed))
    return pd.Series([nom.points(r.to_dict()).total for _, r in rows.iterrows()], index=rows.index,
                     name="total_points")


def run_risk_groups(table: pd.DataFrame, out, time: str, event: str, score: str, *, rule: str = "median",
                    split_col: str = "split", train_split: str = "train", lower_is_riskier: bool = False,
                    nomogram: str | Path | None = None, overwrite: bool = False) -> dict:
    """High/low risk at a threshold fixed on the training split; KM + log-rank in every cohort.

    With ``nomogram`` (a ``nomogram.json``), the score is each patient's total points on it
    (study 004 Fig. 4 cuts at the training cohort's mean total points: ``rule="mean"``).
    """
    from npcai.survival.figures import plot_km
    from npcai.survival.groups import RiskGroups, compare_groups

    if nomogram is not None:
        table = table.assign(total_points=nomogram_total_points(table, nomogram))
        score = "total_points"
    if score not in table.columns:
        raise NpcaiError(f"risk groups: no column {score!r}; give a score column (or a run for its prob)")
    d = table.dropna(subset=[score, time, event]).copy()
    rule_v: str | float = float(rule) if rule not in ("median", "mean") else rule
    if split_col in d.columns:
        train = d[d[split_col].astype(str) == train_split]
        if train.empty:
            raise NpcaiError(f"risk groups: no patients with {split_col} = {train_split!r}; the threshold is fixed "
                             "on training patients")
        cohorts = [train_split] + sorted(set(d[split_col].astype(str)) - {train_split})
    else:
        log.warning("risk groups: no %r column; the threshold is computed on all %d patients (no held-out cohort)",
                    split_col, len(d))
        train, cohorts = d, ["all"]
        d[split_col] = "all"
    fixed_on = train_split if split_col in table.columns else "all patients"
    rg = RiskGroups(rule_v, higher_is_riskier=not lower_is_riskier).fit(train[score])
    d["risk_group"] = rg.transform(d[score])
    with atomic_output_dir(out, overwrite) as tmp:
        _write_csv(d[[score, "risk_group", split_col]].reset_index(), tmp / "risk_groups.csv")
        rows = []
        for c in cohorts:
            sub = d[d[split_col].astype(str) == c]
            row = {"cohort": c, "n": len(sub), "n_high": int((sub.risk_group == "high").sum()),
                   "n_low": int((sub.risk_group == "low").sum())}
            if sub.risk_group.nunique() < 2:
                row["note"] = "one risk group only"
                log.warning("risk groups: cohort %s has only %s-risk patients; no log-rank test", c,
                            sub.risk_group.iloc[0])
            else:
                comp = compare_groups(sub, time, event, "risk_group", reference="low")
                hr = comp.hazard_ratios.iloc[0]
                row.update(logrank_chisq=comp.logrank.chisq, p_value=comp.logrank.p_value, hr=hr.hr,
                           hr_low=hr.hr_low, hr_high=hr.hr_high, note="")
                plot_km(tmp / f"km_{c}.png", comp, survival_label=f"{_label(time)} probability", by_label="risk",
                        title=f"{_label(time)} by risk group ({c}; threshold {rg.threshold_:.4g} fixed on {fixed_on})")
            rows.append(row)
        res = pd.DataFrame(rows)
        _write_csv(res, tmp / "risk_groups_logrank.csv")
        return _summary(tmp, {"score": score, "rule": rule, "threshold": rg.threshold_, "fixed_on": fixed_on,
                              "n_train": rg.n_train_,
                              "cohorts": res.to_dict("records")})


def run_subgroups(table: pd.DataFrame, out, time: str, event: str, by: str, factors: Sequence[str], *,
                  reference: str | None = None, cuts: dict | None = None, overwrite: bool = False) -> dict:
    """Subgroup HRs of ``by`` with interaction p and a forest plot; ``factors`` may name the scan facts
    that :func:`npcai.survival.io.load_table` joins from a cohort folder (centre, manufacturer,
    field_strength_t, tumour_volume_ml, ...)."""
    from npcai.survival.figures import plot_forest
    from npcai.survival.groups import subgroup_hazard_ratios
    from npcai.survival.io import SCAN_FACTS

    if not factors:
        raise NpcaiError("subgroups: give the factors that define subgroups (e.g. sex,age,centre)")
    for f in factors:
        if f not in table.columns and f in SCAN_FACTS:
            raise NpcaiError(f"subgroups: no column {f!r}; scan facts are joined from a cohort folder (give the "
                             "cohort, not a CSV table), and a cohort ingested before scanner facts were recorded "
                             "needs re-ingesting")
    with atomic_output_dir(out, overwrite) as tmp:
        tab = subgroup_hazard_ratios(table, time, event, by, factors, reference=reference, cuts=cuts)
        _write_csv(tab, tmp / "subgroups.csv")
        plot_forest(tmp / "forest.png", tab, title=f"{_label(time)}: {tab.attrs['comparison']} by subgroup")
        return _summary(tmp, {"by": by, "comparison": tab.attrs["comparison"], "factors": list(factors),
                              "cuts": dict(cuts or {}), "n": int(tab.n.iloc[0])})


def run_match(table: pd.DataFrame, out, treatment: str, covariates: Sequence[str], *,
              distance: str = "mahalanobis", caliper: float | None = 0.2, ps_scale: str = "logit",
              exact: Sequence[str] | None = None, covariate_calipers: float | dict | None = 0.25,
              treated: str | None = None, overwrite: bool = False) -> dict:
    """1:1 nearest-neighbour matching (the recipe of :mod:`npcai.survival.matching` by default) with a
    balance table, the patients kept per arm and the matched patient list.

    ``summary.json`` holds the recipe (one sentence), the counts per arm, the balance, ``balanced``
    (every covariate's |SMD| after matching < 0.1) and, when not balanced, a ``warning`` naming the
    covariates still imbalanced.
    """
    from npcai.survival.matching import SMD_THRESHOLD, match_nearest

    treated_level = treated
    if treated is not None and treatment in table.columns and pd.api.types.is_numeric_dtype(table[treatment]):
        treated_level = type(table[treatment].dropna().iloc[0])(float(treated))
    with atomic_output_dir(out, overwrite) as tmp:
        r = match_nearest(table, treatment, covariates, distance=distance, caliper=caliper, ps_scale=ps_scale,
                          exact=exact, covariate_calipers=covariate_calipers, treated_level=treated_level)
        _write_csv(r.balance.reset_index(), tmp / "balance.csv")
        _write_csv(r.pairs, tmp / "pairs.csv")
        _write_csv(r.counts.reset_index(), tmp / "counts.csv")
        (tmp / "matched_patients.txt").write_text("\n".join(map(str, r.matched)) + "\n")
        cov = r.covariate_balance.smd_after
        bad = cov[cov.abs() >= SMD_THRESHOLD]
        warning = None
        if len(bad):
            warning = (f"balance not reached: |SMD| >= {SMD_THRESHOLD:g} after matching for "
                       + ", ".join(f"{k} ({v:+.3f})" for k, v in bad.items())
                       + "; tighten the calipers, match exactly on more columns, or model these covariates "
                         "in the outcome analysis")
        return _summary(tmp, {"treatment": treatment, "recipe": r.recipe, "distance": r.method,
                              "ps_scale": r.ps_scale, "caliper_sd": r.caliper_sd, "caliper": r.caliper,
                              "exact": r.exact, "covariate_calipers": r.covariate_calipers,
                              "treated": str(r.treated_level), "control": str(r.control_level),
                              "pairs": len(r.pairs), "unmatched_treated": len(r.unmatched_treated),
                              "n_missing": r.n_missing, "counts": r.counts.reset_index().to_dict("records"),
                              "max_abs_smd_after": r.max_abs_smd, "balanced": r.balanced, "warning": warning,
                              "balance": r.balance.reset_index().to_dict("records")})


def run_cindex(table: pd.DataFrame, out, time: str, event: str, scores: Sequence[str], *, n_boot: int = 1000,
               seed: int = 0, overwrite: bool = False) -> dict:
    """C-index of several score columns on the same patients with paired bootstrap differences."""
    from npcai.survival.cindex import compare_cindex

    missing = [s for s in scores if s not in table.columns]
    if missing:
        raise NpcaiError(f"C-index: no column {missing[0]!r} in the table")
    d = table.dropna(subset=[time, event, *scores])
    with atomic_output_dir(out, overwrite) as tmp:
        r = compare_cindex(d[time], d[event], {s: d[s] for s in scores}, n_boot=n_boot, seed=seed)
        _write_csv(r.scores.reset_index(), tmp / "cindex.csv")
        _write_csv(r.pairs, tmp / "cindex_pairs.csv")
        return _summary(tmp, {"scores": r.scores.reset_index().to_dict("records"), "pairs": r.pairs.to_dict("records")})
