"""Run study 004's decision pipeline: matching -> one deep survival run -> CPTDN -> recommendation
-> report. The decision study's own small runner (a classifier study is a grid of training runs;
this is one training run followed by statistics); it reuses the study runner's cohort handling,
step caching and the report's HTML helpers.

Folder written (``OUT``)::

    OUT/study.yaml              the resolved design (preset and overrides applied)
    OUT/cohort/                 the ingested cohort when the study starts from an export
    OUT/matching/               pairs.csv, balance.csv, matched.csv (patient ids), summary.json
    OUT/runs/deep_survival/     the `npcai train --task survival` run (matched patients only)
    OUT/steps/deep_survival.json  the hash of the training inputs (reuse) and seconds
    OUT/model/                  nomogram.json (the CPTDN, npcai-nomogram/1), cptdn.json (terms,
                                coefficients, horizon, thresholds, deep run): what `npcai recommend` reads
    OUT/report/                 report.html, tables/*.csv, figures/*.png

Cohorts: ``Training`` = the deep run's training (and, with ``fit_on: train+val``, validation)
patients, which alone fit the CPTDN and every comparison model; ``Internal test`` = the run's
``test`` split (development centre); ``External test`` = ``test_external`` (the split's
``test_where``, e.g. the other centres).

Examples:
    >>> result = run_decision_study("decision", cohort="cohort", out="s004", preset="fast")  # doctest: +SKIP
    >>> result.report                                                                      # doctest: +SKIP
    PosixPath('s004/report/report.html')
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from npcai.decision.design import ResolvedDecisionStudy, load_decision_study
from npcai.decision.recommend_dfs import CONTROL, EXPERIMENTAL
from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text, check_output_path, mark_output

__all__ = ["DecisionResult", "DecisionAnalysis", "run_decision_study", "resolve_decision_study",
           "decision_table", "analyse_decision", "match_treatments", "standardise_scores", "write_model",
           "COHORT_ORDER", "DEEP_RUN", "SCORE_COLUMNS"]

log = logging.getLogger(__name__)

COHORT_ORDER = ("Training", "Internal test", "External test")
DEEP_RUN = "deep_survival"
_SPLIT_COHORT = {"train": "Training", "test": "Internal test", "test_external": "External test"}


@dataclass
class DecisionResult:
    """What :func:`run_decision_study` made."""

    out: Path
    report: Path
    analysis: "DecisionAnalysis"
    status: str            # deep run trained or reused
    seconds: float
    findings: list[str] = field(default_factory=list)


def resolve_decision_study(study: str | Path, preset: str | None = None, **overrides) -> ResolvedDecisionStudy:
    """Load a decision study and apply a preset (default ``paper`` when defined) and overrides."""
    s = load_decision_study(study)
    if preset is None and "paper" in s.presets:
        preset = "paper"
    return s.resolve(preset, **overrides)


# ---------------------------------------------------------------------------- matching
@dataclass
class MatchingOutcome:
    """Matched patients and the balance before/after (None when matching is disabled)."""

    patients: list[str]
    eligible: int
    excluded: dict[str, int]
    balance: pd.DataFrame | None
    pairs: pd.DataFrame | None
    per_treatment: dict[str, int]
    description: str


def _eligible(clinical: pd.DataFrame, resolved: ResolvedDecisionStudy) -> tuple[pd.DataFrame, dict[str, int]]:
    """Patients with follow-up of the endpoint and a treatment of CCRT or IC+CCRT."""
    from npcai.cohort.endpoints import survival_target

    s = resolved.study
    if s.treatment not in clinical.columns:
        raise NpcaiError(f"clinical.csv: no {s.treatment!r} column; study 004 needs each patient's treatment "
                         f"({CONTROL} or {EXPERIMENTAL})")
    excluded: dict[str, int] = {}
    target = survival_target(clinical, s.endpoint)
    for reason, n in target.excluded_counts().items():
        excluded[reason] = n
    d = clinical.loc[target.time.index]
    treat = d[s.treatment].astype(str)
    other = ~treat.isin([CONTROL, EXPERIMENTAL]) | d[s.treatment].isna()
    if other.any():
        vals = sorted(set(treat[other]))
        excluded[f"treatment not {CONTROL} or {EXPERIMENTAL} ({', '.join(vals)})"] = int(other.sum())
    d = d[~other]
    nonpos = target.time.reindex(d.index) <= 0
    if nonpos.any():
        excluded["follow-up time 0"] = int(nonpos.sum())
        d = d[~nonpos]
    counts = d[s.treatment].value_counts()
    if counts.get(CONTROL, 0) < 2 or counts.get(EXPERIMENTAL, 0) < 2:
        raise NpcaiError(f"clinical.csv: {counts.get(CONTROL, 0)} {CONTROL} and {counts.get(EXPERIMENTAL, 0)} "
                         f"{EXPERIMENTAL} patients with {s.endpoint} follow-up; study 004 compares both treatments")
    return d, excluded


def match_treatments(clinical: pd.DataFrame, resolved: ResolvedDecisionStudy) -> MatchingOutcome:
    """1:1 matching of the CCRT and IC+CCRT patients on the study's baseline factors."""
    from npcai.survival.matching import match_nearest

    s = resolved.study
    d, excluded = _eligible(clinical, resolved)
    m = s.matching
    if not m.enabled:
        return MatchingOutcome(sorted(d.index), len(d), excluded, None, None,
                               d[s.treatment].value_counts().to_dict(), "no matching (disabled in the design)")
    covs = [c for c in m.covariates if c in d.columns]
    missing = [c for c in m.covariates if c not in d.columns]
    if missing:
        log.warning("matching: covariate(s) %s not in the clinical table; matched on %s", missing, covs)
    exact = [c for c in m.exact if c in d.columns]
    if not covs:
        raise NpcaiError(f"clinical.csv: none of the matching covariates {m.covariates} is a column; set "
                         "matching.covariates in the study YAML")
    r = match_nearest(d, s.treatment, covs, distance=m.distance, caliper=m.caliper, treated_level=EXPERIMENTAL,
                      exact=exact, covariate_calipers=m.covariate_caliper)
    matched = sorted(r.matched)
    per = d.loc[matched, s.treatment].value_counts().to_dict()
    lost = len(d) - len(matched)
    if lost:
        excluded["not matched 1:1"] = lost
    desc = (f"1:1 nearest-neighbour matching without replacement of {EXPERIMENTAL} to {CONTROL} patients on the "
            f"{m.distance} {'score' if m.distance == 'propensity' else 'distance'} of {', '.join(covs)}"
            + (f", exactly within {', '.join(exact)}" if exact else "")
            + (f", caliper {m.caliper:g} SD of the propensity score" if m.caliper else ""))
    return MatchingOutcome(matched, len(d), excluded, r.balance.reset_index(), r.pairs, per, desc)


# ---------------------------------------------------------------------------- training
def _where_of(patients: list[str]) -> str:
    """The patient filter selecting exactly ``patients`` (recorded in the run's config)."""
    return "patient_id in [" + ", ".join(json.dumps(p) for p in sorted(patients)) + "]"


def _train_deep_run(cohort_dir: Path, out: Path, resolved: ResolvedDecisionStudy, roi_name: str,
                    patients: list[str], *, weights, resume: bool, threads: int | None) -> tuple[str, float]:
    """The deep survival run (reused when its inputs are unchanged); returns (status, seconds)."""
    from npcai.studies.backend import train_step
    from npcai.studies.runner import _cohort_hash, _finished, _roi_input_hash, _step_hash

    s = resolved.study
    run_dir = out / "runs" / DEEP_RUN
    where = _where_of(patients)
    payload = {"cohort": _cohort_hash(cohort_dir), "roi": _roi_input_hash(cohort_dir, roi_name),
               "backbone": s.backbone, "unit": "patient", "training": s.training.model_dump(),
               "split": s.split.model_dump(), "endpoint": s.endpoint, "where": where,
               "weights": str(weights) if weights else None}
    digest = _step_hash(payload)
    marker = out / "steps" / f"{DEEP_RUN}.json"
    previous = json.loads(marker.read_text()) if marker.is_file() else {}
    if _finished(run_dir) and previous.get("hash") == digest:
        log.info("deep survival run: finished earlier with the same inputs; reusing %s", run_dir)
        return "reused", float(previous.get("seconds", 0.0))
    from npcai.threads import available_cores

    seconds = train_step(threads=threads or available_cores(), cohort_dir=cohort_dir, roi=roi_name,
                         endpoint=s.endpoint, backbone=s.backbone, out=run_dir, unit="patient", training=s.training,
                         split=s.split, split_from=None, where=where, weights=weights,
                         resume=resume and run_dir.exists())
    atomic_write_text(marker, json.dumps({"step": DEEP_RUN, "hash": digest, "seconds": seconds,
                                          "payload": {k: v for k, v in payload.items() if k != "where"},
                                          "patients": len(patients)}, indent=1, default=str))
    return "trained", float(seconds)


# ---------------------------------------------------------------------------- the table
def _scan_facts(cohort_dir: Path) -> pd.DataFrame:
    """Per patient: tumour volume (mL, pre-treatment manual mask) and, when the cohort recorded
    them, the scanner's field strength and manufacturer."""
    from npcai.cohort.model import Cohort

    c = Cohort.load(cohort_dir)
    rows = {}
    for scan in c.scans(timepoint="pre"):
        r = rows.setdefault(scan.patient_id, {})
        vol = (getattr(scan, "mask_stats", None) or {}).get("volume_tumour_ml")
        if vol is not None and "tumour_volume" not in r:
            r["tumour_volume"] = round(float(vol), 1)
        src = scan.source or {}
        for key, col in (("field_strength", "field_strength"), ("manufacturer", "manufacturer"),
                         ("magnetic_field_strength", "field_strength")):
            if src.get(key) not in (None, "") and col not in r:
                r[col] = src[key]
    return pd.DataFrame.from_dict(rows, orient="index")


def decision_table(cohort_dir: Path, run_dir: Path, resolved: ResolvedDecisionStudy) -> pd.DataFrame:
    """One row per patient of the deep run: cohort, time, event, treatment (text), the two deep
    scores, the clinical columns, tumour volume, ``ebv_dna_high`` and second-endpoint columns."""
    from npcai.cohort.endpoints import survival_columns
    from npcai.cohort.model import Cohort
    from npcai.runs import read_run

    s = resolved.study
    run = read_run(run_dir)
    pats = run.patients.set_index("patient_id")
    clinical = Cohort.load(cohort_dir).clinical()
    fit_on = s.decision.fit_on
    split_map = dict(_SPLIT_COHORT)
    split_map["val"] = "Training" if fit_on == "train+val" else "Validation"
    d = pd.DataFrame(index=pats.index)
    d["split"] = pats["split"].astype(str)
    d["cohort"] = d["split"].map(split_map).fillna(d["split"])
    d["time"] = pats["time"].astype(float)
    d["event"] = pats["event"].astype(int)
    d["prognostic_score"] = pats["prognostic_score"].astype(float)
    d["predictive_score"] = pats["predictive_score"].astype(float)
    clin = clinical.reindex(d.index)
    d["treatment"] = clin[s.treatment].astype(str)
    for c in clin.columns:
        if c not in d.columns and c != s.treatment:
            d[c] = clin[c]
    facts = _scan_facts(cohort_dir).reindex(d.index)
    for c in facts.columns:
        d[c] = facts[c]
    if "ebv_dna" in d.columns:
        d["ebv_dna_high"] = np.where(d["ebv_dna"].isna(), np.nan, (d["ebv_dna"] >= 4000).astype(float))
    for ep in s.decision.second_endpoints:
        try:
            tcol, ecol = survival_columns(clinical, ep)
        except NpcaiError as exc:
            log.warning("second endpoint %s skipped: %s", ep, exc)
            continue
        d[f"{ep}_time"] = clin[tcol].astype(float)
        d[f"{ep}_event"] = clin[ecol].astype(float)
    return d


# ---------------------------------------------------------------------------- the analysis
@dataclass
class DecisionAnalysis:
    """Every table and figure of the report (figures as PNG paths), and the fitted CPTDN."""

    table: pd.DataFrame
    cohorts: dict[str, pd.DataFrame]
    candidates: list[str]
    dropped_candidates: dict[str, str]
    screening: pd.DataFrame
    cptdn: Any
    comparison: dict[str, Any]
    coefficients: pd.DataFrame
    cindex: pd.DataFrame
    nomogram: Any
    patients: pd.DataFrame                   # per-patient recommendation table
    risk_threshold: float
    risk_groups: pd.DataFrame
    calibration: pd.DataFrame
    preferred: pd.DataFrame                  # per threshold x cohort x group
    second_endpoints: pd.DataFrame
    subgroups_risk: pd.DataFrame | None
    subgroups_treatment: dict[str, pd.DataFrame]
    benefit: pd.DataFrame
    deep_metrics: dict[str, Any]
    truth: pd.DataFrame | None
    truth_value: pd.DataFrame | None
    figures: dict[str, Path]
    oracle: pd.DataFrame | None = None           # phantom: C-index of the true log-hazard vs the CPTDN
    score_scaling: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


def _candidates(train: pd.DataFrame, factors: list[str]) -> tuple[list[str], dict[str, str]]:
    """The clinical terms that can enter a model: present, not all missing, not constant."""
    keep, dropped = [], {}
    for f in factors:
        col = f[2:-1] if f.startswith("C(") else f
        if col not in train.columns:
            dropped[f] = "not in the clinical table"
        elif train[col].isna().all():
            dropped[f] = "missing for every training patient"
        elif train[col].nunique(dropna=True) < 2:
            dropped[f] = "constant among the training patients"
        elif train[col].isna().mean() > 0.2:
            dropped[f] = f"missing for {train[col].isna().mean():.0%} of the training patients"
        else:
            keep.append(f)
    return keep, dropped


def _points_received(nom, d: pd.DataFrame) -> np.ndarray:
    cols = sorted({a.variable for a in nom.axes_} | {next(iter(a.condition)) for a in nom.axes_ if a.condition})
    out = []
    for _, r in d[cols].iterrows():
        out.append(nom.points({k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}).total)
    return np.asarray(out, dtype=float)


def _km_rows(name: str, cmp, extra: dict) -> dict:
    row = {**extra, "comparison": name, "hr": np.nan, "hr_low": np.nan, "hr_high": np.nan, "p_logrank": np.nan}
    if cmp is not None:
        hr = cmp.hazard_ratios.iloc[0]
        row.update(hr=float(hr.hr), hr_low=float(hr.hr_low), hr_high=float(hr.hr_high),
                   p_logrank=float(cmp.logrank.p_value))
    return row


def analyse_decision(table: pd.DataFrame, resolved: ResolvedDecisionStudy, fig_dir: Path, *,
                     cohort_dir: Path | None = None, run_dir: Path | None = None) -> DecisionAnalysis:
    """Every statistic of study 004 on the decision table (:func:`decision_table`); figures into ``fig_dir``."""
    from npcai.report import decision_figures as F
    from npcai.decision.benefit import c_for_benefit_survival
    from npcai.decision.cptdn import cindex_table, fit_comparison_models, fit_cptdn, univariate_screening
    from npcai.decision.recommend_dfs import (PREFERRED_LABELS, dfs_under_each_treatment,
                                              preferred_group_survival, recommend_by_difference)
    from npcai.survival.calibration import calibrate_survival
    from npcai.survival.groups import RiskGroups, compare_groups, subgroup_hazard_ratios
    from npcai.survival.nomogram import Nomogram

    s = resolved.study
    spec = s.decision
    notes: list[str] = []
    fig_dir = Path(fig_dir)
    figures: dict[str, Path] = {}
    cohorts = {c: table[table["cohort"] == c] for c in COHORT_ORDER if (table["cohort"] == c).any()}
    if "Training" not in cohorts:
        raise NpcaiError("decision study: the deep run has no training patients")
    train = cohorts["Training"]
    candidates, dropped = _candidates(train, list(spec.clinical_factors))
    for f, why in dropped.items():
        notes.append(f"Clinical factor {f} left out of the models: {why}.")
    # complete cases over the model columns (Cox drops them anyway; say how many)
    model_cols = ["time", "event", "treatment", "prognostic_score", "predictive_score"] + \
        [c[2:-1] if c.startswith("C(") else c for c in candidates]
    complete = table[model_cols].notna().all(axis=1)
    if (~complete).any():
        notes.append(f"{int((~complete).sum())} patient(s) without a value of a model covariate were left out of "
                     "every model and statistic (complete-case analysis).")
    table = table[complete]
    table, scaling = standardise_scores(table, table["cohort"] == "Training")
    cohorts = {c: table[table["cohort"] == c] for c in cohorts}
    train = cohorts["Training"]

    screening = univariate_screening(train, "time", "event", candidates)
    cptdn = fit_cptdn(train, "time", "event", clinical=candidates)
    comparison = fit_comparison_models(train, "time", "event", clinical=candidates)
    models = {"CPTDN": cptdn, **comparison}
    coefficients = pd.concat([m.coefficients() for m in models.values() if m.model is not None], ignore_index=True)
    cidx = cindex_table(models, cohorts, "time", "event")

    nom = Nomogram(spec.nomogram_times, axes=_integer_axes(train, cptdn.terms)).fit(cptdn.model, train)
    figures["nomogram"] = F.nomogram_figure(fig_dir / "fig2a_nomogram.png", nom)
    figures["cindex"] = F.cindex_bars(fig_dir / "fig3_cindex.png", cidx)

    # --- per-patient predictions under both treatments and recommendations
    dfs = dfs_under_each_treatment(cptdn.model, table, horizon=spec.horizon)
    patients = pd.DataFrame({"patient_id": table.index, "cohort": table["cohort"].to_numpy(),
                             "centre": table["centre"].to_numpy() if "centre" in table else "",
                             "received": table["treatment"].to_numpy(),
                             "dfs_ccrt": dfs["dfs_ccrt"].to_numpy(), "dfs_ic_ccrt": dfs["dfs_ic_ccrt"].to_numpy(),
                             "difference_pp": dfs["difference"].to_numpy()})
    recs = {}
    for t in spec.thresholds:
        recs[t] = recommend_by_difference(dfs, t)
        patients[f"recommended_{t:g}pp"] = recs[t].to_numpy()
    total = _points_received(nom, table)
    patients["total_points"] = total
    rg = RiskGroups("mean").fit(total[(table["cohort"] == "Training").to_numpy()])
    table = table.assign(total_points=total, risk_group=rg.transform(total))
    patients["risk_group"] = table["risk_group"].to_numpy()
    cohorts = {c: table[table["cohort"] == c] for c in cohorts}

    # --- risk groups (Fig. 4)
    panels, rows = [], []
    for c, d in cohorts.items():
        for g, level in (("All", None), (CONTROL, CONTROL), (EXPERIMENTAL, EXPERIMENTAL)):
            sub = d if level is None else d[d["treatment"] == level]
            cmp, note = None, ""
            try:
                cmp = compare_groups(sub, "time", "event", "risk_group", reference="low")
            except NpcaiError as exc:
                note = str(exc)
            panels.append((f"{c}, {g}", cmp, note))
            rows.append(_km_rows("high vs low risk", cmp, {"cohort": c, "group": g, "n": len(sub),
                                                          "n_high": int((sub["risk_group"] == "high").sum()),
                                                          "events": int(sub["event"].sum()), "note": note}))
    risk_groups = pd.DataFrame(rows)
    figures["risk_groups"] = F.km_grid(fig_dir / "fig4_risk_groups.png", panels, ncols=3,
                                       title=f"DFS by CPTDN risk group (cut at the training cohort's mean total "
                                             f"points, {rg.threshold_:.0f})")

    # --- calibration (Fig. 2b/c)
    cal_rows, cal_results = [], {}
    for u in spec.nomogram_times:
        per = {}
        for c, d in cohorts.items():
            if len(d) < 20 or d["event"].sum() < 5:
                notes.append(f"Calibration at {u:g} months in the {c.lower()} cohort not computed: {len(d)} patients, "
                             f"{int(d['event'].sum())} events (at least 20 patients and 5 events are needed).")
                continue
            try:
                cal = calibrate_survival(cptdn.model, d, u, m=min(spec.calibration_group_size, max(2, len(d) // 3)),
                                         n_boot=spec.calibration_boot if c == "Training" else 0)
            except NpcaiError as exc:
                notes.append(f"Calibration at {u:g} months in the {c.lower()} cohort not computed: {exc}")
                continue
            per[c] = cal
            cal_rows.append({"cohort": c, "months": u, "n": len(d), "groups": len(cal.groups), "ici": cal.ici,
                             "e90": cal.e90, "gof_chisq": cal.gof["chisq"], "gof_df": cal.gof["df"],
                             "gof_p": cal.gof["p_value"]})
        cal_results[u] = per
        if per:
            figures[f"calibration_{u:g}"] = F.calibration_cohorts(fig_dir / f"fig2_calibration_{u:g}m.png", per, u)
    calibration = pd.DataFrame(cal_rows)

    # --- recommendation by the DFS difference (Fig. 5, D4, D5)
    pref_rows = []
    for t in spec.thresholds:
        panels = []
        for c, d in cohorts.items():
            pg = preferred_group_survival(d, recs[t].reindex(d.index), time="time", event="event", threshold=t)
            for _, r in pg.table.iterrows():
                pref_rows.append({"threshold_pp": t, "cohort": c, **r.to_dict()})
                panels.append((f"{c}: {r['group']}", pg.comparisons[r["group"]], r["note"]))
        figures[f"preferred_{t:g}"] = F.km_grid(fig_dir / f"fig5_preferred_{t:g}pp.png", panels, ncols=2,
                                                by_cohort=True,
                                                title=f"DFS by received treatment inside each preferred group "
                                                      f"(5-year DFS difference > {t:g} percentage points = ICT-preferred)")
    preferred = pd.DataFrame(pref_rows)

    # --- second endpoints in the combined test cohorts (Fig. 6)
    tests = table[table["cohort"].isin(["Internal test", "External test"])]
    sec_rows, panels = [], []
    t0 = spec.thresholds[0]
    for ep in spec.second_endpoints:
        tc, ec = f"{ep}_time", f"{ep}_event"
        if tc not in tests or tests[[tc, ec]].isna().all().any():
            notes.append(f"Second endpoint {ep.upper()}: not in the clinical table; not analysed.")
            continue
        d = tests.dropna(subset=[tc, ec])
        d = d[d[tc] > 0]
        pg = preferred_group_survival(d, recs[t0].reindex(d.index), time=tc, event=ec, threshold=t0)
        for _, r in pg.table.iterrows():
            sec_rows.append({"endpoint": ep.upper(), "threshold_pp": t0, **r.to_dict()})
            panels.append((f"{ep.upper()}: {r['group']}", pg.comparisons[r["group"]], r["note"]))
    second = pd.DataFrame(sec_rows)
    if panels:
        figures["second_endpoints"] = F.km_grid(fig_dir / "fig6_second_endpoints.png", panels, ncols=2,
                                                survival_label="Survival probability",
                                                title=f"Second endpoints, internal + external test cohorts "
                                                      f"(difference > {t0:g} pp = ICT-preferred)")

    # --- subgroups (Fig. D3: risk groups; Fig. D6: treatment inside preferred groups)
    factors, sub_notes = _subgroup_factors(tests, spec.subgroups)
    notes.extend(sub_notes)
    sub_risk, sub_treat = None, {}
    if factors and len(tests):
        try:
            sub_risk = subgroup_hazard_ratios(tests, "time", "event", "risk_group", factors, reference="low")
            figures["subgroups_risk"] = F.forest(fig_dir / "figD3_subgroups_risk.png", sub_risk,
                                                 "CPTDN high vs low risk, test cohorts")
        except NpcaiError as exc:
            notes.append(f"Subgroup analysis of the risk groups not computed: {exc}")
        for level, label in PREFERRED_LABELS.items():
            d = tests[recs[t0].reindex(tests.index) == level]
            try:
                tab = subgroup_hazard_ratios(d, "time", "event", "treatment", factors, reference=CONTROL)
            except NpcaiError as exc:
                notes.append(f"Subgroups of the {label} group not computed: {exc}")
                continue
            sub_treat[label] = tab
            figures[f"subgroups_{label}"] = F.forest(fig_dir / f"figD6_subgroups_{label}.png", tab,
                                                     f"{label} group, test cohorts")

    # --- C-for-benefit of the predicted DFS difference
    ben_rows = []
    for c, d in list(cohorts.items()) + [("Internal + external test", tests)]:
        if not len(d):
            continue
        try:
            r = c_for_benefit_survival(dfs.loc[d.index, "difference"].to_numpy(),
                                       (d["treatment"] == EXPERIMENTAL).astype(int).to_numpy(), d["time"], d["event"],
                                       spec.horizon, n_boot=spec.n_boot, ids=list(d.index))
            ben_rows.append({"cohort": c, **r.to_dict()})
        except NpcaiError as exc:
            ben_rows.append({"cohort": c, "note": str(exc)})
    benefit = pd.DataFrame(ben_rows)

    # --- the deep model's own metrics (C-index of the Prognostic-score, p_interaction)
    deep = {}
    if run_dir is not None:
        from npcai.survival.deep.evaluate import survival_cohort_metrics

        for c, d in cohorts.items():
            deep[c] = survival_cohort_metrics(d.assign(treatment=(d["treatment"] == EXPERIMENTAL).astype(int)))

    truth, truth_value, oracle = (None, None, None)
    if cohort_dir is not None:
        truth, truth_value, tnotes = _truth_scores(cohort_dir, table, recs, patients, spec.n_boot)
        notes.extend(tnotes)
        if truth is not None:
            tt = patients.set_index("patient_id").join(_load_truth(cohort_dir)[["dfs5_ccrt", "dfs5_ic_ccrt",
                                                                                  "best_treatment"]])
            patients = tt.rename(columns={"dfs5_ccrt": "true_dfs5_ccrt", "dfs5_ic_ccrt": "true_dfs5_ic_ccrt",
                                          "best_treatment": "true_best"}).reset_index()
            figures["truth_difference"] = F.difference_vs_truth(fig_dir / "truth_difference.png", patients)
            oracle = _oracle_cindex(_load_truth(cohort_dir), cohorts, cidx)

    analysis = DecisionAnalysis(
        table=table, cohorts=cohorts, candidates=candidates, dropped_candidates=dropped, screening=screening,
        cptdn=cptdn, comparison=comparison, coefficients=coefficients, cindex=cidx, nomogram=nom, patients=patients,
        risk_threshold=rg.threshold_, risk_groups=risk_groups, calibration=calibration, preferred=preferred,
        second_endpoints=second, subgroups_risk=sub_risk, subgroups_treatment=sub_treat, benefit=benefit,
        deep_metrics=deep, truth=truth, truth_value=truth_value, oracle=oracle, figures=figures,
        score_scaling=scaling,
        notes=notes)
    analysis.findings = _findings(analysis, spec)
    return analysis


def _integer_axes(train: pd.DataFrame, terms: list[str]) -> dict[str, list]:
    """Nomogram ticks of the whole-number variables (T and N stage, 0/1 flags): their values, not
    pretty(range) fractions."""
    out = {}
    for v in {x for t in terms for x in t.split(":")}:
        col = v[2:-1] if v.startswith("C(") else v
        if col in train and pd.api.types.is_numeric_dtype(train[col]):
            x = train[col].dropna()
            if len(x) and (x == x.round()).all() and x.nunique() <= 10:
                out[col] = list(range(int(x.min()), int(x.max()) + 1))
    return out


#: the deep scores entering the CPTDN (standardised on the training cohort)
SCORE_COLUMNS = ("prognostic_score", "predictive_score")


def standardise_scores(table: pd.DataFrame, training: pd.Series | np.ndarray,
                       scaling: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """The deep scores as z-scores of the training cohort (raw values kept as ``<score>_raw``).

    A network's scores can have a tiny spread (e.g. -0.12 +- 0.002 after a short training), which
    makes ``treatment`` and ``treatment x score`` nearly collinear in a Cox model; per-SD units
    also make the nomogram readable. ``scaling`` ({score: [mean, sd]}, from ``cptdn.json``)
    applies a fitted study's standardisation to new patients.
    """
    out = table.copy()
    if scaling is None:
        scaling = {}
        for c in SCORE_COLUMNS:
            x = table.loc[np.asarray(training, bool), c].astype(float)
            sd = float(x.std(ddof=1))
            if not np.isfinite(sd) or sd <= 0:
                raise NpcaiError(f"deep run: the {c} is the same for every training patient; the network learnt "
                                 "nothing to combine in a nomogram (train longer or check the run)")
            scaling[c] = [float(x.mean()), sd]
    for c, (m, sd) in scaling.items():
        out[f"{c}_raw"] = out[c]
        out[c] = (out[c].astype(float) - m) / sd
    return out, scaling


def _subgroup_factors(d: pd.DataFrame, wanted: list[str]) -> tuple[list[str], list[str]]:
    keep, notes = [], []
    for f in wanted:
        if f not in d.columns or d[f].isna().all():
            notes.append(f"Subgroup factor {f}: not recorded in this cohort; not analysed.")
        elif d[f].nunique(dropna=True) < 2:
            notes.append(f"Subgroup factor {f}: one value only among the test patients; not analysed.")
        else:
            keep.append(f)
    return keep, notes


def _load_truth(cohort_dir: Path):
    from npcai.cohort.phantom.truth import load_truth

    return load_truth(cohort_dir)


def _truth_scores(cohort_dir: Path, table: pd.DataFrame, recs: dict, patients: pd.DataFrame, n_boot: int = 200):
    """Agreement with the phantom's best treatment and the policy value (mean true 5-year DFS)."""
    truth = _load_truth(cohort_dir)
    if truth is None:
        return None, None, []
    need = {"dfs5_ccrt", "dfs5_ic_ccrt", "best_treatment"}
    if not need <= set(truth.columns):
        return None, None, [f"The phantom truth lacks {sorted(need - set(truth.columns))}; no truth scores."]
    from npcai.decision.truth import agreement_with_truth, policy_value

    rows, vrows = [], []
    groups = [(c, table.index[table["cohort"] == c]) for c in COHORT_ORDER if (table["cohort"] == c).any()]
    groups.append(("Internal + external test", table.index[table["cohort"].isin(["Internal test", "External test"])]))
    for c, idx in groups:             # baselines: the physicians' choices and one treatment for everyone
        if not len(idx):
            continue
        tr = truth.reindex(idx)
        for name, rec in (("physicians' choices", table.loc[idx, "treatment"]),
                          (f"always {CONTROL}", pd.Series(CONTROL, index=idx)),
                          (f"always {EXPERIMENTAL}", pd.Series(EXPERIMENTAL, index=idx))):
            a = agreement_with_truth(rec, tr["best_treatment"])
            rows.append({"policy": name, "threshold_pp": np.nan, "cohort": c, **_as_dict(a)})
            if name.startswith("always"):
                outcome = {CONTROL: tr["dfs5_ccrt"], EXPERIMENTAL: tr["dfs5_ic_ccrt"]}
                v = policy_value(rec, outcome, table.loc[idx, "treatment"], n_boot=max(n_boot, 200))
                vrows.append({"policy": name, "threshold_pp": np.nan, "cohort": c, **_as_dict(v)})
    for t, rec in recs.items():
        for c, idx in groups:
            if not len(idx):
                continue
            tr = truth.reindex(idx)
            a = agreement_with_truth(rec.reindex(idx), tr["best_treatment"])
            rows.append({"policy": f"CPTDN, difference > {t:g} pp", "threshold_pp": t, "cohort": c, **_as_dict(a)})
            outcome = {CONTROL: tr["dfs5_ccrt"], EXPERIMENTAL: tr["dfs5_ic_ccrt"]}
            v = policy_value(rec.reindex(idx), outcome, table.loc[idx, "treatment"], n_boot=max(n_boot, 200))
            vrows.append({"policy": f"CPTDN, difference > {t:g} pp", "threshold_pp": t, "cohort": c, **_as_dict(v)})
    return pd.DataFrame(rows), pd.DataFrame(vrows), []


def _oracle_cindex(truth: pd.DataFrame, cohorts: dict, cidx: pd.DataFrame) -> pd.DataFrame | None:
    """Phantom: Harrell's C of the true DFS log-hazard (under the received treatment) next to the CPTDN's."""
    from npcai.stats.concordance import harrell_c

    if "log_hazard_dfs" not in truth.columns:
        return None
    rows = []
    for c, d in cohorts.items():
        if not int(d["event"].sum()):
            continue
        o = harrell_c(d["time"].to_numpy(float), d["event"].to_numpy(int),
                      truth["log_hazard_dfs"].reindex(d.index).to_numpy(float), what=f"oracle C-index ({c})")
        m = cidx[(cidx["cohort"] == c) & (cidx["group"] == "All") & (cidx["model"] == "CPTDN")].iloc[0]
        rows.append({"cohort": c, "n": len(d), "events": int(d["event"].sum()), "oracle_c_index": o.c_index,
                     "oracle_low": o.low, "oracle_high": o.high, "cptdn_c_index": m["c_index"], "cptdn_low": m["low"],
                     "cptdn_high": m["high"]})
    return pd.DataFrame(rows)


def _as_dict(obj) -> dict:
    import dataclasses

    if dataclasses.is_dataclass(obj):
        out = {}
        for k, v in dataclasses.asdict(obj).items():
            if isinstance(v, dict) and k != "by_best":       # a nested estimate: mean, low, high
                out.update({f"{k}_{kk}": vv for kk, vv in v.items()})
            elif isinstance(v, (int, float, str, bool, np.integer, np.floating)) or v is None:
                out[k] = v
        return out
    return dict(obj)


def _fmt_ci(v, lo, hi, digits=2) -> str:
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def _findings(a: DecisionAnalysis, spec) -> list[str]:
    """Short sentences of what the statistics say (no more than they support)."""
    from npcai.survival.figures import format_p

    out = []
    cx = a.cindex[(a.cindex["group"] == "All") & (a.cindex["model"] == "CPTDN")]
    parts = [f"{r.cohort.lower()} {_fmt_ci(r.c_index, r.low, r.high, 3)}" for r in cx.itertuples()]
    if parts:
        out.append("CPTDN C-index (95% CI): " + "; ".join(parts) + ".")
    ok = cx.set_index("cohort")
    for c in ("Internal test", "External test"):
        if c not in ok.index:
            continue
        others = a.cindex[(a.cindex["group"] == "All") & (a.cindex["cohort"] == c) & (a.cindex["model"] != "CPTDN")]
        best = others.loc[others["c_index"].idxmax()] if others["c_index"].notna().any() else None
        if best is not None:
            overlap = ok.loc[c, "low"] <= best["high"] and best["low"] <= ok.loc[c, "high"]
            out.append(f"{c}: CPTDN {ok.loc[c, 'c_index']:.3f} vs best comparison model {best['model']} "
                       f"{best['c_index']:.3f}" + (" (confidence intervals overlap: no clear difference)."
                                                   if overlap else "."))
    out += _calibration_findings(a.calibration)
    t0 = spec.thresholds[0]
    pref = a.preferred[a.preferred["threshold_pp"] == t0]
    for r in pref.itertuples():
        if np.isfinite(r.hr):
            out.append(f"{r.cohort}, {r.group} (difference > {t0:g} pp): HR {EXPERIMENTAL} vs {CONTROL} "
                       f"{_fmt_ci(r.hr, r.hr_low, r.hr_high)}, log-rank {format_p(r.p_logrank)} (n = {r.n}).")
    if a.truth is not None and len(a.truth):
        tests = a.truth[a.truth["cohort"] == "Internal + external test"].set_index("policy")
        key = f"CPTDN, difference > {t0:g} pp"
        if key in tests.index and tests.loc[key, "rate"] is not None:
            r = tests.loc[key]
            line = (f"Phantom truth: the recommendation (> {t0:g} pp) agrees with the best treatment for "
                    f"{r['rate']:.0%} (95% CI {r['ci_low']:.0%}-{r['ci_high']:.0%}) of the test patients")
            base = tests[tests.index.str.startswith(("always", "physicians"))]
            parts = [f"{name} {b['rate']:.0%} ({b['ci_low']:.0%}-{b['ci_high']:.0%})" for name, b in base.iterrows()]
            best = base["rate"].astype(float).idxmax() if len(base) else None
            if best is not None:
                overlap = base.loc[best, "ci_low"] <= r["ci_high"] and r["ci_low"] <= base.loc[best, "ci_high"]
                line += ("; baselines: " + ", ".join(parts)
                         + (f" — not clearly better than {best} (confidence intervals overlap)." if overlap else "."))
            out.append(line)
    return out


def _calibration_findings(calibration: pd.DataFrame) -> list[str]:
    """One sentence per calibration time: ICI and the D'Agostino-Nam p in each cohort, and which
    cohorts the test rejects (p < 0.05). A poorly calibrated nomogram still ranks patients (the
    C-index) but its predicted DFS rates, which the recommendation subtracts, are off."""
    from npcai.survival.figures import format_p

    out = []
    if calibration is None or calibration.empty:
        return out
    for months, g in calibration.groupby("months", sort=True):
        parts = [f"{r.cohort.lower()} ICI {r.ici:.3f} (D'Agostino-Nam {format_p(r.gof_p)})" for r in g.itertuples()]
        off = [r.cohort.lower() for r in g.itertuples() if np.isfinite(r.gof_p) and r.gof_p < 0.05]
        verdict = (f" The test rejects calibration in the {' and '.join(off)} cohort{'s' if len(off) > 1 else ''}"
                   " (p < 0.05): there the predicted DFS rates differ from the observed ones."
                   if off else " The test rejects calibration in no cohort (p ≥ 0.05 in each).")
        out.append(f"Calibration of the predicted {months:g}-month DFS: " + "; ".join(parts) + "." + verdict)
    return out


# ---------------------------------------------------------------------------- the run
def run_decision_study(study: str | Path | ResolvedDecisionStudy, *, out: str | Path,
                       cohort: str | Path | None = None, export: str | Path | None = None,
                       clinical: str | Path | None = None, contours: str | Path | None = None,
                       preset: str | None = None, weights: str | Path | None = None, resume: bool = False,
                       threads: int | None = None) -> DecisionResult:
    """Run study 004's design on a cohort and write its report.

    Args:
        study: ``decision``, a decision-study YAML path, or a resolved study.
        out: the study folder (created; a finished deep run inside it is reused).
        cohort: an ingested cohort; or ``export`` (+ ``clinical``) to ingest into ``out/cohort``.
        preset: ``paper`` or ``fast``.
        weights: local pretrained backbone weights.
        resume: continue an interrupted deep run from its last checkpoint.
        threads: torch threads of the deep run (default: the free cores).
    """
    from npcai.imaging.roi_cache import build_roi
    from npcai.studies.runner import _check_sources, _cohort

    t0 = time.perf_counter()
    resolved = study if isinstance(study, ResolvedDecisionStudy) else resolve_decision_study(study, preset)
    out = Path(out)
    inside = cohort is not None and (out / "study.yaml").is_file() and \
        Path(cohort).resolve() == (out / "cohort").resolve()
    check_output_path(out, [None if inside else cohort, export, clinical, contours, weights])
    from npcai.cohort.model import Cohort

    clinical_file = _check_sources(cohort, export, clinical)
    # refuse a cohort that cannot run the study before creating OUT
    matching = match_treatments(Cohort.load(cohort).clinical(), resolved) if cohort is not None else None
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out)
    atomic_write_text(out / "study.yaml", yaml.safe_dump(resolved.to_dict(), sort_keys=False))
    cohort_dir = _cohort(out, cohort, export, clinical_file, contours)
    if matching is None:
        matching = match_treatments(Cohort.load(cohort_dir).clinical(), resolved)
    _write_matching(out / "matching", matching)
    roi_name = resolved.roi_cache_name()
    params = resolved.roi_params()
    build_roi(cohort_dir, roi_name, params.pop("variant"), **params)
    status, train_seconds = _train_deep_run(cohort_dir, out, resolved, roi_name, matching.patients,
                                            weights=weights, resume=resume, threads=threads)
    run_dir = out / "runs" / DEEP_RUN
    table = decision_table(cohort_dir, run_dir, resolved)
    analysis = analyse_decision(table, resolved, out / "report" / "figures", cohort_dir=cohort_dir, run_dir=run_dir)
    write_model(out / "model", analysis, resolved, run_dir)
    seconds = time.perf_counter() - t0
    from npcai.report.decision import build_decision_report

    report = build_decision_report(out, cohort_dir, resolved, analysis, matching, status=status,
                                   train_seconds=train_seconds, seconds=seconds)
    return DecisionResult(out=out, report=report, analysis=analysis, status=status, seconds=seconds,
                          findings=analysis.findings)


def _write_matching(folder: Path, m: MatchingOutcome) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "matched.csv", pd.DataFrame({"patient_id": m.patients}).to_csv(index=False))
    if m.pairs is not None:
        atomic_write_text(folder / "pairs.csv", m.pairs.to_csv(index=False))
    if m.balance is not None:
        atomic_write_text(folder / "balance.csv", m.balance.to_csv(index=False))
    atomic_write_text(folder / "summary.json", json.dumps(
        {"eligible": m.eligible, "matched": len(m.patients), "per_treatment": m.per_treatment,
         "excluded": m.excluded, "description": m.description}, indent=1, default=int))


MODEL_FORMAT = "npcai-cptdn/1"


def write_model(folder: Path, a: DecisionAnalysis, resolved: ResolvedDecisionStudy, run_dir: Path) -> None:
    """``OUT/model/``: the CPTDN nomogram (``nomogram.json``) and ``cptdn.json`` (what
    :func:`npcai.decision.apply.recommend_cohort` needs besides the deep run)."""
    from npcai.runs import CONFIG, read_config

    folder.mkdir(parents=True, exist_ok=True)
    s = resolved.study
    nom = a.nomogram.to_dict()
    nom["endpoint"] = {"time": "time", "event": "event", "label": s.endpoint.upper()}
    nom["model"] = {"terms": a.cptdn.terms, "n": a.cptdn.n, "events": a.cptdn.events, "ties": "efron"}
    atomic_write_text(folder / "nomogram.json", json.dumps(nom, indent=1, default=float))
    cfg = read_config(run_dir)
    doc = {"format": MODEL_FORMAT, "study": s.name, "endpoint": s.endpoint, "treatment_column": s.treatment,
           "horizon": s.decision.horizon, "thresholds": s.decision.thresholds, "terms": a.cptdn.terms,
           "variables": sorted({v for t in a.cptdn.terms for v in t.split(":")}),
           "coefficients": {k: float(v) for k, v in a.cptdn.model.coef_.items()},
           "risk_threshold_points": a.risk_threshold, "score_scaling": a.score_scaling, "deep_run": str(Path("runs") / DEEP_RUN),
           "deep_run_config_sha256": _sha(run_dir / CONFIG), "cohort_id": cfg.cohort_id,
           "derived": {"ebv_dna_high": "ebv_dna >= 4000 copies/mL", "tumour_volume": "pre-treatment tumour mask, mL"}}
    atomic_write_text(folder / "cptdn.json", json.dumps(doc, indent=1, default=float))


def _sha(path: Path) -> str:
    from npcai.fsutil import file_sha256

    return file_sha256(path)
