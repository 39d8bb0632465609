"""The decision study's report (seed 004's layout): methods from the configuration, cohort sizes
and exclusions, matching balance, the deep model's scores, univariate screening, the CPTDN
nomogram and calibration, the comparison models' C-index, risk groups, subgroups, the
DFS-difference recommendation at each threshold, second endpoints, the C-for-benefit and, on
the phantom, the truth-based scores next to the seed-style ones.

Writes ``OUT/report/report.html`` (self-contained), ``tables/*.csv`` and ``figures/*.png``
through :mod:`npcai.report.html`.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.report.html import Report, write_report

__all__ = ["build_decision_report", "decision_methods"]

log = logging.getLogger(__name__)


def _f(v, d=3) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return ""
    return "" if not np.isfinite(v) else f"{v:.{d}f}"


def _p(p) -> str:
    try:
        p = float(p)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _ci(v, lo, hi, d=3) -> str:
    s = _f(v, d)
    return f"{s} ({_f(lo, d)}–{_f(hi, d)})" if s and _f(lo, d) else s


def _pct(v, lo=None, hi=None) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(v):
        return ""
    s = f"{100 * v:.1f}%"
    if lo is not None and hi is not None and np.isfinite(float(lo)):
        s += f" ({100 * float(lo):.1f}–{100 * float(hi):.1f}%)"
    return s


def decision_methods(resolved, matching, a, cohort_dir: Path, train_seconds: float) -> list[str]:
    """The methods paragraphs, generated from the resolved design and what was run."""
    from npcai.report.study import package_versions

    s = resolved.study
    t, sp, spec = s.training, s.split, s.decision
    excl = "; ".join(f"{n} {k}" for k, n in matching.excluded.items()) or "none"
    sizes = ", ".join(f"{c.lower()} {len(d)} ({int(d['event'].sum())} events)" for c, d in a.cohorts.items())
    roi = s.roi
    return [
        f"Cohort: {matching.eligible} patients of {Path(cohort_dir).name} had {s.endpoint.upper()} follow-up and "
        f"a treatment of CCRT or IC+CCRT. {matching.description}; {len(matching.patients)} patients were kept "
        f"({', '.join(f'{k} {v}' for k, v in matching.per_treatment.items())}). Excluded: {excl}.",
        f"Cohorts: the matched patients not matching {sp.test_where!r} (the development centre) were split at "
        f"random into training and internal test patients (test fraction {sp.test_fraction:g}; validation "
        f"fraction {sp.val_fraction:g} of the rest, seed {sp.seed}, stratified by event); every matched patient "
        f"matching {sp.test_where!r} formed the external test cohort. Analysed: {sizes}."
        if sp.test_where else
        f"Cohorts: matched patients split at random (test fraction {sp.test_fraction:g}). Analysed: {sizes}.",
        f"Deep model: a multi-task survival network ({s.backbone} per MRI sequence, "
        f"{'ImageNet-pretrained' if t.pretrained else 'random initialisation'}; {', '.join(roi.sequences)}; ROI "
        f"{roi.variant} around the {roi.region} tumour, {roi.slices} slices at {t.size or 224} px) pools each "
        f"patient's slices by {t.pooling} multiple-instance learning into a shared trunk with a prognostic head "
        f"(Prognostic-score g) and a predictive head (Predictive-score f); log-hazard = g + (T - 1/2) f with T = 1 "
        f"for IC+CCRT (the modified covariate method), trained with the Cox partial likelihood (Efron ties) by "
        f"{t.optimizer} (learning rate {t.lr:g}, batches of {t.batch_size} patients, bags of {t.bag_size} slices), "
        f"at most {t.epochs} epochs with early stopping after {t.patience}; the epoch was selected on the "
        f"validation patients' C-index only. Training took {train_seconds / 60:.1f} min.",
        f"CPTDN: a multivariable Cox model (Efron ties) fitted on the training cohort "
        f"({'training and validation patients of the deep run' if spec.fit_on == 'train+val' else 'training patients of the deep run'}) "
        f"by stepwise AIC in both directions over the clinical factors "
        f"({', '.join(a.candidates) or 'none available'}), the Prognostic-score, the treatment and the treatment x "
        f"Predictive-score interaction; the treatment terms were kept in every candidate model so that the model "
        f"predicts each patient's DFS under both treatments. Comparison models (stepwise AIC on the training "
        f"cohort): Model_clin_all (clinical factors, all patients), Model_clin_ccrt and Model_clin_ict+ccrt "
        f"(clinical factors, each treatment's patients), Model_clin+prog (clinical factors and the "
        f"Prognostic-score). Harrell's C-index with 95% CI (infinitesimal jackknife) of each model's linear "
        f"predictor in every cohort and treatment group.",
        f"Calibration at {', '.join(f'{u:g}' for u in spec.nomogram_times)} months: groups of about "
        f"{spec.calibration_group_size} patients by predicted DFS, Kaplan-Meier observed DFS with 95% CI, "
        f"bootstrap-corrected ({spec.calibration_boot} resamples) in the training cohort; D'Agostino-Nam test and "
        f"Austin's ICI. Risk groups: high vs low CPTDN total points (received treatment), cut at the training "
        f"cohort's mean ({a.risk_threshold:.1f} points).",
        f"Recommendation: predicted {spec.horizon:g}-month DFS under IC+CCRT minus under CCRT (percentage points); "
        f"ICT-preferred when the difference exceeds the threshold ({', '.join(f'{x:g}' for x in spec.thresholds)} pp), "
        f"else CCRT-preferred. Inside each preferred group the treatments received are compared by Kaplan-Meier, "
        f"the Cox hazard ratio (IC+CCRT vs CCRT, 95% CI) and the log-rank test. C-for-benefit (van Klaveren 2018): "
        f"patients of the two arms paired 1:1 on the predicted difference; observed pair benefit from the event "
        f"before {spec.horizon:g} months (patients censored earlier left out); bootstrap CI over pairs "
        f"({spec.n_boot} resamples).",
        f"Preset: {resolved.preset or 'none'}. {resolved.preset_description} Software: "
        + ", ".join(f"{k} {v}" for k, v in package_versions().items()) + ".",
    ]


def _cindex_display(c: pd.DataFrame) -> pd.DataFrame:
    out = []
    for m in dict.fromkeys(c["model"]):
        row = {"Model": m}
        for coh in dict.fromkeys(c["cohort"]):
            r = c[(c["model"] == m) & (c["cohort"] == coh) & (c["group"] == "All")].iloc[0]
            row[f"{coh} (n = {r['n']}, {r['events']} events)"] = \
                (_ci(r["c_index"], r["low"], r["high"]) + (" (no term selected)" if r["note"] else "")).strip() \
                if _f(r["c_index"]) else r["note"]
        out.append(row)
    return pd.DataFrame(out)


def _preferred_display(p: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in p.itertuples():
        rows.append({"Threshold (pp)": f"{r.threshold_pp:g}", "Cohort": r.cohort, "Group": r.group, "n": r.n,
                     "CCRT / IC+CCRT": f"{r.n_ccrt} / {r.n_ic_ccrt}", "Events": r.events,
                     "HR IC+CCRT vs CCRT (95% CI)": _ci(r.hr, r.hr_low, r.hr_high, 2) or r.note,
                     "Log-rank p": _p(r.p_logrank)})
    return pd.DataFrame(rows)


def _deep_display(deep: dict) -> pd.DataFrame:
    rows = []
    for c, m in deep.items():
        ci = m.get("c_index_prognostic", {})
        inter = m.get("interaction", {})
        hr = m.get("hr_per_sd", {})
        rows.append({"Cohort": c, "n": m.get("n_patients"), "Events": m.get("n_events"),
                     "C-index Prognostic-score (95% CI)": _ci(ci.get("c_index"), ci.get("low"), ci.get("high"))
                     or ci.get("unavailable", ""),
                     "HR per SD Prognostic-score": _ci(hr.get("prognostic_score", {}).get("hr"),
                                                       hr.get("prognostic_score", {}).get("hr_low"),
                                                       hr.get("prognostic_score", {}).get("hr_high"), 2),
                     "p interaction (treatment x Predictive-score)": _p(inter.get("p")) or inter.get("unavailable", "")})
    return pd.DataFrame(rows)


def build_decision_report(out: Path, cohort_dir: Path, resolved, a, matching, *, status: str,
                          train_seconds: float, seconds: float) -> Path:
    """Write ``OUT/report`` and return the path of report.html."""
    s = resolved.study
    out = Path(out)
    rdir = out / "report"
    fig = a.figures
    rep = Report(
        title=s.title,
        subtitle=f"npcai study '{s.name}' · design of seed {s.seed_paper} · preset {resolved.preset or 'none'}",
        facts=[("Study", f"{s.name} — {s.reference}"),
               ("Preset", f"{resolved.preset or 'none'}: {resolved.preset_description}"),
               ("Cohort", Path(cohort_dir).name), ("Endpoint", s.endpoint.upper()),
               ("Deep run", f"runs/deep_survival ({status})"),
               ("Generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + f" in {seconds / 60:.1f} min")],
        footer="Generated by npcai. Research use only, not a medical device. Every number is reproducible from "
               "OUT/study.yaml, OUT/runs/deep_survival and OUT/model.")

    sec = rep.section("summary", "Summary")
    sec.text(s.description)
    if a.findings:
        sec.bullets(a.findings)
    if resolved.preset == "fast":
        sec.note("Preset 'fast': a small network at low resolution, trained briefly so that the study finishes on a "
                 "CPU in minutes. The numbers demonstrate the pipeline; run --preset paper for the seed's protocol.")

    sec = rep.section("methods", "Methods")
    for p in decision_methods(resolved, matching, a, cohort_dir, train_seconds):
        sec.text(p)

    sec = rep.section("cohort", "Cohorts, matching and exclusions")
    rows = [{"Step": "eligible (follow-up and CCRT / IC+CCRT)", "Patients": matching.eligible}]
    rows += [{"Step": f"excluded: {k}", "Patients": v} for k, v in matching.excluded.items()]
    rows += [{"Step": f"matched: {k}", "Patients": v} for k, v in matching.per_treatment.items()]
    for c, d in a.cohorts.items():
        rows.append({"Step": f"{c} cohort ({int((d['treatment'] == 'CCRT').sum())} CCRT, "
                             f"{int((d['treatment'] == 'IC+CCRT').sum())} IC+CCRT; {int(d['event'].sum())} events)",
                     "Patients": len(d)})
    sec.table("Patients at each step", pd.DataFrame(rows), csv_name="cohorts")
    if matching.balance is not None:
        bal = matching.balance
        b = pd.DataFrame({"Covariate": bal["covariate"]})
        for tag, name in (("before", "before"), ("after", "after")):
            b[f"Mean IC+CCRT {name}"] = bal[f"mean_treated_{tag}"].map(lambda v: _f(v, 2))
            b[f"Mean CCRT {name}"] = bal[f"mean_control_{tag}"].map(lambda v: _f(v, 2))
            b[f"SMD {name}"] = bal[f"smd_{tag}"].map(lambda v: _f(v, 3))
            b[f"p {name}"] = bal[f"p_{tag}"].map(_p)
        atomic_csv(rdir / "tables" / "matching_balance_full.csv", bal)
        sec.table("Balance of the treatment groups before and after matching (SMD: standardised mean difference; "
                  "seed 004 Table A1)", b, csv_name="matching_balance")
    t1 = _table1(a)
    if t1 is not None:
        sec.table("Table 1. Baseline characteristics by cohort", t1, csv_name="table1")

    sec = rep.section("deep", "Deep model: Prognostic- and Predictive-score")
    sec.text("C-index of the Prognostic-score, its hazard ratio per standard deviation, and the Wald p of the "
             "treatment x Predictive-score interaction in Surv ~ treatment * Predictive-score (seed 004's "
             "p_interaction), in each cohort.")
    if a.deep_metrics:
        sec.table("Radiomic signatures (seed 004, section 3.2)", _deep_display(a.deep_metrics), csv_name="deep_scores")

    sec = rep.section("screening", "Univariate screening of clinical factors (training cohort)")
    if len(a.screening):
        scr = a.screening.copy()
        disp = pd.DataFrame({"Factor": scr["covariate"], "Term": scr["term"], "n": scr["n"], "Events": scr["events"],
                             "HR (95% CI)": [_ci(h, lo, hi, 2) for h, lo, hi in zip(scr.hr, scr.hr_low, scr.hr_high)],
                             "p": scr["p"].map(_p), "p interaction with treatment": scr["p_interaction"].map(_p)})
        sec.table("Univariate Cox regression (seed 004, Fig. D1)", disp, csv_name="univariate_screening")
    for n in a.notes:
        if n.startswith("Clinical factor"):
            sec.note(n)

    sec = rep.section("cptdn", "The CPTDN nomogram")
    sec.text(f"Selected terms: {', '.join(a.cptdn.terms)} (fitted on {a.cptdn.n} training patients, "
             f"{a.cptdn.events} events).")
    coef = a.coefficients.copy()
    coef_disp = pd.DataFrame({"Model": coef["model"], "Term": coef["term"], "Coefficient": coef["coef"].map(_f),
                              "HR (95% CI)": [_ci(h, lo, hi, 2) for h, lo, hi in zip(coef.hr, coef.hr_low, coef.hr_high)],
                              "p": coef["p"].map(_p)})
    sec.table("Coefficients of the CPTDN and the comparison models", coef_disp, csv_name="coefficients")
    if "nomogram" in fig:
        sec.figure("Fig. 2a. The CPTDN: points per predictor; the Predictive-score has one axis per treatment. A "
                   "patient's DFS under each treatment is read by summing the points with that treatment's axis.",
                   fig["nomogram"])
    for u in s.decision.nomogram_times:
        if f"calibration_{u:g}" in fig:
            sec.figure(f"Fig. 2b/c. Calibration of the CPTDN's {u:g}-month DFS in each cohort (Kaplan-Meier 95% CI).",
                       fig[f"calibration_{u:g}"])
    if len(a.calibration):
        c = a.calibration.copy()
        for col in ("ici", "e90", "gof_chisq"):
            c[col] = c[col].map(_f)
        c["gof_p"] = c["gof_p"].map(_p)
        sec.table("Calibration indices (ICI, E90) and the D'Agostino-Nam test", c, csv_name="calibration")

    sec = rep.section("comparison", "Prognostic performance: CPTDN vs clinical models")
    sec.table("C-index (95% CI) of each model, all patients of each cohort (seed 004, Table D2)",
              _cindex_display(a.cindex), csv_name="cindex_all")
    atomic_csv(rdir / "tables" / "cindex.csv", a.cindex)
    if "cindex" in fig:
        sec.figure("Fig. 3. C-index (95% CI) by treatment group and cohort.", fig["cindex"])

    sec = rep.section("risk", "Risk stratification")
    r = a.risk_groups
    disp = pd.DataFrame({"Cohort": r["cohort"], "Group": r["group"], "n (high risk)": [f"{n} ({h})" for n, h in
                                                                                      zip(r["n"], r["n_high"])],
                         "Events": r["events"], "HR high vs low (95% CI)": [
                             _ci(h, lo, hi, 2) or note for h, lo, hi, note in zip(r.hr, r.hr_low, r.hr_high, r.note)],
                         "Log-rank p": r["p_logrank"].map(_p)})
    sec.table("High vs low CPTDN risk (seed 004, Fig. 4)", disp, csv_name="risk_groups")
    if "risk_groups" in fig:
        sec.figure("Fig. 4. DFS by CPTDN risk group in each cohort: all patients, CCRT, IC+CCRT.", fig["risk_groups"])

    sec = rep.section("recommendation", "Treatment recommendation by the DFS difference")
    sec.text("A useful recommendation shows a hazard ratio below 1 (IC+CCRT better) in the ICT-preferred group and "
             "above 1 (CCRT better) in the CCRT-preferred group; the seed reports 0.17 and 6.24 in its internal test.")
    sec.table("Received treatments inside each preferred group (seed 004, Fig. 5, D4, D5)",
              _preferred_display(a.preferred), csv_name="preferred_groups")
    for t in s.decision.thresholds:
        if f"preferred_{t:g}" in fig:
            sec.figure(f"Fig. 5{'' if t == s.decision.thresholds[0] else ' / D4-D5'}. DFS by received treatment in "
                       f"the ICT-preferred (difference > {t:g} pp) and CCRT-preferred groups.", fig[f"preferred_{t:g}"])
    pt = a.patients.copy()
    for col in ("dfs_ccrt", "dfs_ic_ccrt", "true_dfs5_ccrt", "true_dfs5_ic_ccrt"):
        if col in pt:
            pt[col] = pt[col].map(lambda v: _f(v, 3))
    for col in ("difference_pp", "total_points"):
        pt[col] = pt[col].map(lambda v: _f(v, 1))
    atomic_csv(rdir / "tables" / "patients.csv", a.patients)
    test_rows = pt[pt["cohort"] != "Training"]
    show = {"patient_id": "Patient", "cohort": "Cohort", "received": "Received", "dfs_ccrt": "5-y DFS CCRT",
            "dfs_ic_ccrt": "5-y DFS IC+CCRT", "difference_pp": "Difference (pp)"}
    show.update({c: f"Recommended (> {c.split('_')[1][:-2]} pp)" for c in pt.columns if c.startswith("recommended_")})
    if "true_best" in pt:
        show["true_best"] = "True best (phantom)"
    sec.table(f"Per-patient recommendation, test patients (pseudonyms; first 25 of {len(test_rows)}; every patient "
              "with more columns in tables/patients.csv)", test_rows[list(show)].rename(columns=show).head(25))

    sec = rep.section("second", "Second endpoints")
    if len(a.second_endpoints):
        d = a.second_endpoints
        disp = pd.DataFrame({"Endpoint": d["endpoint"], "Group": d["group"], "n": d["n"], "Events": d["events"],
                             "HR IC+CCRT vs CCRT (95% CI)": [_ci(h, lo, hi, 2) or n for h, lo, hi, n in
                                                            zip(d.hr, d.hr_low, d.hr_high, d.note)],
                             "Log-rank p": d["p_logrank"].map(_p)})
        sec.table("OS and DMFS by received treatment inside the preferred groups, internal + external test "
                  "(seed 004, Fig. 6)", disp, csv_name="second_endpoints")
        if "second_endpoints" in fig:
            sec.figure("Fig. 6. Second endpoints by received treatment inside each preferred group.",
                       fig["second_endpoints"])
    else:
        sec.note("No second endpoint was analysed (see the notes).")

    sec = rep.section("subgroups", "Subgroups")
    if "subgroups_risk" in fig:
        sec.figure("Fig. D3. High vs low CPTDN risk within subgroups (internal + external test; p: interaction).",
                   fig["subgroups_risk"])
    for label in ("ICT-preferred", "CCRT-preferred"):
        if f"subgroups_{label}" in fig:
            sec.figure(f"Fig. D6. IC+CCRT vs CCRT within subgroups of the {label} group (internal + external test).",
                       fig[f"subgroups_{label}"])
    for n in a.notes:
        if n.startswith("Subgroup"):
            sec.note(n)

    sec = rep.section("benefit", "C-for-benefit of the predicted DFS difference")
    sec.text("Concordance between the predicted benefit of IC+CCRT and the observed benefit in pairs of patients with "
             "different treatments matched on the predicted benefit (0.5: no better than chance). It ranks benefit "
             "only (not its size), is noisy with few pairs, and in observational data is shifted by confounding.")
    if len(a.benefit):
        b = a.benefit
        disp = pd.DataFrame({"Cohort": b["cohort"],
                             "C-for-benefit (95% CI)": [_ci(c, lo, hi) if "c_for_benefit" in b else "" for c, lo, hi in
                                                        zip(b.get("c_for_benefit", np.nan), b.get("low", np.nan),
                                                            b.get("high", np.nan))],
                             "Pairs": b.get("n_pairs", ""), "Comparable pairs of pairs": b.get("n_comparable", ""),
                             "Censored before horizon": b.get("n_excluded", "")})
        sec.table("C-for-benefit", disp, csv_name="c_for_benefit")

    if a.truth is not None:
        sec = rep.section("truth", "Scored against the truth (phantom)")
        sec.text("This cohort is the phantom, which knows every patient's true 5-year DFS under both treatments. "
                 "Agreement: the share of patients whose recommended treatment is the truly best one (Wilson 95% CI). "
                 "Policy value: the mean true 5-year DFS if every patient received the recommended treatment, next "
                 "to the physicians' actual choices and the oracle (each patient's best); regret = oracle - "
                 "recommendation (paired bootstrap 95% CI). Compare with the seed-style hazard ratios above. The "
                 "physicians' choices and the two one-treatment-for-all policies are the baselines.")
        t = a.truth
        disp = pd.DataFrame({"Policy": t["policy"], "Cohort": t["cohort"],
                             "Agreement with the best treatment (95% CI)": [
                                 _pct(r, lo, hi) for r, lo, hi in zip(t["rate"], t["ci_low"], t["ci_high"])],
                             "n": t["n"]})
        sec.table("Agreement with the true best treatment", disp, csv_name="truth_agreement")
        side = _seed_vs_truth(a)
        if side is not None:
            sec.table("Seed-style judgement (hazard ratios inside the preferred groups) next to the truth-based one",
                      side, csv_name="seed_vs_truth")
        v = a.truth_value
        if v is not None and len(v):
            disp = pd.DataFrame({"Policy": v["policy"], "Cohort": v["cohort"],
                                 "n": v["n"],
                                 "Recommendation": [_ci(m, lo, hi) for m, lo, hi in zip(
                                     v["recommended_mean"], v["recommended_low"], v["recommended_high"])],
                                 "Physicians": [_ci(m, lo, hi) for m, lo, hi in zip(
                                     v["physician_mean"], v["physician_low"], v["physician_high"])],
                                 "Oracle": v["oracle_mean"].map(_f),
                                 "Regret": [_ci(m, lo, hi) for m, lo, hi in zip(
                                     v["regret_mean"], v["regret_low"], v["regret_high"])],
                                 "Gain over physicians": [_ci(m, lo, hi) for m, lo, hi in zip(
                                     v["gain_over_physician_mean"], v["gain_over_physician_low"],
                                     v["gain_over_physician_high"])]})
            sec.table("Mean true 5-year DFS under each policy", disp, csv_name="truth_policy_value")
        if a.oracle is not None and len(a.oracle):
            o = a.oracle
            disp = pd.DataFrame({"Cohort": o["cohort"], "n": o["n"], "Events": o["events"],
                                 "Oracle C-index (true log-hazard)": [_ci(v, lo, hi) for v, lo, hi in zip(
                                     o["oracle_c_index"], o["oracle_low"], o["oracle_high"])],
                                 "CPTDN C-index": [_ci(v, lo, hi) for v, lo, hi in zip(
                                     o["cptdn_c_index"], o["cptdn_low"], o["cptdn_high"])]})
            sec.table("The best achievable C-index on the same patients (the phantom's true DFS log-hazard) next to the "
                      "CPTDN's", disp, csv_name="oracle_cindex")
        if "truth_difference" in fig:
            sec.figure("Predicted vs true 5-year DFS difference per patient.", fig["truth_difference"])

    sec = rep.section("runs", "Runs and reproducibility")
    sec.text(f"The deep survival run is runs/deep_survival ({status}); the CPTDN is model/nomogram.json (format "
             "npcai-nomogram/1) with model/cptdn.json; `npcai recommend decision STUDY --cohort COHORT --out DIR` "
             "applies them to new patients. Matching: matching/pairs.csv, balance.csv, matched.csv.")
    for n in a.notes:
        if not n.startswith(("Clinical factor", "Subgroup")):
            sec.note(n)
    return write_report(rep, rdir)


def _seed_vs_truth(a) -> pd.DataFrame | None:
    """Per threshold and cohort: HR in each preferred group, agreement with the truth, regret."""
    if a.truth is None or not len(a.preferred):
        return None
    rows = []
    for (t, c), g in a.preferred.groupby(["threshold_pp", "cohort"], sort=False):
        g = g.set_index("group")
        tr = a.truth[(a.truth["threshold_pp"] == t) & (a.truth["cohort"] == c)]
        v = a.truth_value[(a.truth_value["threshold_pp"] == t) & (a.truth_value["cohort"] == c)] \
            if a.truth_value is not None else pd.DataFrame()
        row = {"Threshold (pp)": f"{t:g}", "Cohort": c}
        for grp in ("ICT-preferred", "CCRT-preferred"):
            r = g.loc[grp] if grp in g.index else None
            row[f"HR {grp} (want {'< 1' if grp.startswith('ICT') else '> 1'})"] = \
                (_ci(r["hr"], r["hr_low"], r["hr_high"], 2) or "n/a") if r is not None else "n/a"
        row["Agreement with truth"] = _pct(tr["rate"].iloc[0], tr["ci_low"].iloc[0], tr["ci_high"].iloc[0]) \
            if len(tr) else ""
        row["Regret (true 5-year DFS)"] = _ci(v["regret_mean"].iloc[0], v["regret_low"].iloc[0],
                                              v["regret_high"].iloc[0]) if len(v) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _table1(a) -> pd.DataFrame | None:
    from npcai.report.study import table1_display
    from npcai.stats.table1 import table1

    cols = [c for c in ("age", "sex", "t_stage", "n_stage", "ebv_dna", "tumour_volume", "centre", "treatment")
            if c in a.table.columns]
    d = a.table[cols + ["cohort"]].copy()
    try:
        t = table1(d, by="cohort", group_order=[c for c in ("Training", "Validation", "Internal test", "External test")
                                                if (d["cohort"] == c).any()])
    except NpcaiError as exc:
        log.warning("Table 1 by cohort not made: %s", exc)
        return None
    return table1_display(t)


def atomic_csv(path: Path, df: pd.DataFrame) -> None:
    from npcai.fsutil import atomic_write_text

    atomic_write_text(path, df.to_csv(index=False))
