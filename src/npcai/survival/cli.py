"""``npcai survival km|cox|stepwise|nomogram|calibrate|risk-groups|subgroups|match|cindex``.

Thin: parse options, load the table (:mod:`npcai.survival.io`), call
:mod:`npcai.survival.commands`, print a short summary.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]

app = typer.Typer(help="Survival statistics checked against R: Kaplan-Meier, log-rank, Cox, stepwise AIC, "
                       "nomogram, calibration, risk groups, subgroups, 1:1 matching, C-index comparison.",
                  no_args_is_help=True)

COHORT = typer.Argument(..., help="Cohort folder (its clinical.csv) or a CSV file with a patient_id column.")
OUT = typer.Option(..., "--out", help="Output folder for CSV tables, PNG figures and summary.json.")
ENDPOINT = typer.Option(None, "--endpoint", help="dfs, pfs, os or dmfs (<name>_months / <name>_event).")
TIME = typer.Option(None, "--time", help="Time column (e.g. dfs_months), with --event.")
EVENT = typer.Option(None, "--event", help="Event column (1 = event, 0 = censored), with --time.")
RUN = typer.Option(None, "--run", help="Run folder: join its predictions_patients.csv (prob as a column "
                                       "named by --score-name, and its split).")
SCORE_NAME = typer.Option("prob", "--score-name", help="Column name given to the run's prob.")
COVARIATES = typer.Option(None, "--covariates", help="Comma-separated model terms: age,C(t_stage),"
                                                     "treatment*score (default: the clinical columns present "
                                                     "among age, sex, t_stage, n_stage, ebv_dna, treatment).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace a non-empty output folder.")
TIES = typer.Option("efron", "--ties", help="Tied event times: efron (R's default) or breslow.")


def _split(s: str | None) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()] if s else []


def _times(s: str | None) -> list[float]:
    from npcai.errors import NpcaiError

    try:
        return [float(x) for x in _split(s)]
    except ValueError as exc:
        raise NpcaiError(f"--at {s!r}: give comma-separated times, e.g. 36,60") from exc


def _table(cohort: Path, run: Path | None, score_name: str, endpoint, time, event):
    from npcai.survival.io import endpoint_columns, load_table

    t, e = endpoint_columns(endpoint, time, event)
    return load_table(cohort, run, score_name=score_name), t, e


def _run(fn, *args, **kwargs) -> dict:
    from npcai.progress import show_progress

    with show_progress():
        return fn(*args, **kwargs)


def _done(out: Path, lines: list[str]) -> None:
    from rich.console import Console

    con = Console()
    for line in lines:
        con.print(line, markup=False, highlight=False)
    con.print(f"wrote {out}", markup=False, highlight=False)


@app.command("km")
def km(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT, time: Optional[str] = TIME,
       event: Optional[str] = EVENT, by: Optional[str] = typer.Option(None, "--by", help="Group column."),
       strata: Optional[str] = typer.Option(None, "--strata", help="Stratify the log-rank test by this column."),
       at: Optional[str] = typer.Option(None, "--at", help="Survival at these times, e.g. 36,60."),
       reference: Optional[str] = typer.Option(None, "--reference", help="Reference group of the HRs."),
       conf_type: str = typer.Option("log-log", "--conf-type", help="CI type: log-log or log."),
       run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """Kaplan-Meier curves with log-rank test and HR.

    Example: npcai survival km COHORT --endpoint dfs --by treatment --at 36,60 --out km_dfs
    """
    from npcai.survival.commands import run_km

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_km, table, out, t, e, by=by, strata=strata, at=_times(at), reference=reference,
             conf_type=conf_type, overwrite=overwrite)
    lines = []
    if by:
        lr = s["logrank"]
        lines.append(f"log-rank chi2 = {lr['chisq']:.3f}, df = {lr['df']}, p = {lr['p_value']:.3g}")
        for h in s["hazard_ratios"]:
            lines.append(f"HR {h['group']} vs {h['reference']}: {h['hr']:.2f} ({h['hr_low']:.2f}-{h['hr_high']:.2f})")
    else:
        lines.append(f"n = {s['n']}, events = {s['events']}")
    _done(out, lines)


@app.command("cox")
def cox(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT, time: Optional[str] = TIME,
        event: Optional[str] = EVENT, covariates: Optional[str] = COVARIATES, ties: str = TIES,
        strata: Optional[str] = typer.Option(None, "--strata", help="Stratify the baseline hazard by this column."),
        at: Optional[str] = typer.Option(None, "--at", help="Write each patient's predicted S(t) at these times."),
        zph: str = typer.Option("km", "--zph", help="cox.zph time transform: km, identity or rank."),
        run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """Cox model: coefficients, HRs, Wald/LR/score tests, AIC, term (interaction) tests, cox.zph, univariate table.

    Example: npcai survival cox COHORT --endpoint dfs --covariates age,ebv_dna,treatment*prob --run RUN --out cox_dfs
    """
    from npcai.survival.commands import run_cox

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_cox, table, out, t, e, _split(covariates), ties=ties, strata=strata, at=_times(at), zph=zph,
             overwrite=overwrite)
    lines = [f"n = {s['n']}, events = {s['events']}, AIC = {s['aic']:.2f}, LR p = {s['lr']['p_value']:.3g}, "
             f"PH global p = {s['zph_global_p']:.3g}"]
    for c in s["coefficients"]:
        lines.append(f"{c['term']}: HR {c['hr']:.3f} ({c['hr_low']:.3f}-{c['hr_high']:.3f}), p = {c['p']:.3g}")
    _done(out, lines)


@app.command("stepwise")
def stepwise(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT,
             time: Optional[str] = TIME, event: Optional[str] = EVENT, covariates: Optional[str] = COVARIATES,
             lower: Optional[str] = typer.Option(None, "--lower", help="Terms always kept."),
             start: Optional[str] = typer.Option(None, "--start", help="First model (default: all covariates)."),
             ties: str = TIES, run: Optional[Path] = RUN, score_name: str = SCORE_NAME,
             overwrite: bool = OVERWRITE) -> None:
    """Stepwise Cox selection by AIC in both directions (MASS::stepAIC), with every step's candidates.

    Example: npcai survival stepwise COHORT --endpoint dfs --covariates age,sex,C(t_stage),n_stage,ebv_dna,treatment --out step_dfs
    """
    from npcai.survival.commands import run_stepwise

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_stepwise, table, out, t, e, _split(covariates), lower=_split(lower),
             start=_split(start) if start else None, ties=ties, overwrite=overwrite)
    _done(out, [f"selected: {' + '.join(s['final_terms']) or '(none)'} (AIC {s['final_aic']:.2f}, {s['steps']} steps)"])


@app.command("nomogram")
def nomogram(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT,
             time: Optional[str] = TIME, event: Optional[str] = EVENT, covariates: Optional[str] = COVARIATES,
             at: str = typer.Option("36,60", "--at", help="Survival axes at these times."), ties: str = TIES,
             run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """Nomogram of a Cox model (rms style): figure, JSON for the web tool, every patient's points.

    Example: npcai survival nomogram COHORT --endpoint dfs --covariates age,ebv_dna,treatment*prob --run RUN --at 36,60 --out nomo
    """
    from npcai.survival.commands import run_nomogram

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_nomogram, table, out, t, e, _split(covariates), at=_times(at), ties=ties, overwrite=overwrite)
    _done(out, [f"nomogram of {' + '.join(s['terms'])}: {s['scale']:.2f} points per unit of linear predictor; "
                f"mean total points {s['mean_total_points']:.1f}"])


@app.command("calibrate")
def calibrate(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT,
              time: Optional[str] = TIME, event: Optional[str] = EVENT, covariates: Optional[str] = COVARIATES,
              at: str = typer.Option("36,60", "--at", help="Time points, e.g. 36,60."),
              m: int = typer.Option(50, "--m", help="Patients per calibration group (rms's m)."),
              n_boot: int = typer.Option(40, "--n-boot", help="Bootstrap resamples for the optimism correction."),
              seed: int = typer.Option(0, "--seed", help="Bootstrap seed."), ties: str = TIES,
              run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """Calibration of predicted survival at each time (rms::calibrate, KM method), GOF test, ICI/E50/E90.

    Example: npcai survival calibrate COHORT --endpoint dfs --covariates age,ebv_dna,treatment --at 36,60 --out cal
    """
    from npcai.survival.commands import run_calibrate

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_calibrate, table, out, t, e, _split(covariates), at=_times(at), m=m, n_boot=n_boot, seed=seed,
             ties=ties, overwrite=overwrite)
    lines = [f"at {u}: ICI {c['ici']:.3f}, E50 {c['e50']:.3f}, E90 {c['e90']:.3f}; {c['gof']['test']} chi2 = "
             f"{c['gof']['chisq']:.2f} (df {c['gof']['df']}), p = {c['gof']['p_value']:.3g}"
             for u, c in s["times"].items()]
    _done(out, lines)


@app.command("risk-groups")
def risk_groups(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT,
                time: Optional[str] = TIME, event: Optional[str] = EVENT,
                score: str = typer.Option("prob", "--score", help="Score column (higher = riskier)."),
                rule: str = typer.Option("median", "--rule", help="Threshold: median, mean, or a number."),
                split_col: str = typer.Option("split", "--split-col", help="Column naming each patient's cohort."),
                train_split: str = typer.Option("train", "--train-split", help="Cohort the threshold is fixed on."),
                lower_is_riskier: bool = typer.Option(False, "--lower-is-riskier",
                                                      help="The score is a predicted survival (low = high risk)."),
                nomogram: Optional[Path] = typer.Option(None, "--nomogram", help="A nomogram.json: the score is "
                                                        "each patient's total points (use --rule mean as seed 004)."),
                run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """High/low risk groups at a threshold fixed on the training cohort; KM and log-rank in every cohort.

    Example: npcai survival risk-groups COHORT --run RUN --endpoint dfs --score prob --out risk
    (or --nomogram nomo/nomogram.json --rule mean: cut the nomogram's total points at the training mean)
    """
    from npcai.survival.commands import run_risk_groups

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_risk_groups, table, out, t, e, score, rule=rule, split_col=split_col, train_split=train_split,
             lower_is_riskier=lower_is_riskier, nomogram=nomogram, overwrite=overwrite)
    lines = [f"threshold {s['threshold']:.4g} ({rule} of {s['n_train']} patients in {s['fixed_on']})"]
    for c in s["cohorts"]:
        p = f"log-rank p = {c['p_value']:.3g}" if not c.get("note") else c["note"]
        lines.append(f"{c['cohort']}: {c['n_high']} high / {c['n_low']} low; {p}")
    _done(out, lines)


@app.command("subgroups")
def subgroups(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT,
              time: Optional[str] = TIME, event: Optional[str] = EVENT,
              by: str = typer.Option(..., "--by", help="The two-group comparison (e.g. treatment)."),
              factors: str = typer.Option(..., "--factors", help="Comma-separated subgroup columns: clinical "
                                          "columns and, from a cohort folder, its scan facts (centre, manufacturer, "
                                          "scanner_model, field_strength_t, slice_thickness_mm, tumour_volume_ml, "
                                          "nodes_volume_ml). Numeric columns with >5 values are cut at the median."),
              cuts: Optional[str] = typer.Option(None, "--cuts", help="Cut points of numeric factors instead of the "
                                                 "median, e.g. age=45,tumour_volume_ml=20."),
              reference: Optional[str] = typer.Option(None, "--reference", help="Reference value of --by."),
              run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """Hazard ratio of --by inside subgroups, with the interaction p per factor, and a forest plot.

    Example: npcai survival subgroups COHORT --endpoint dfs --by treatment --factors sex,age,tumour_volume_ml,centre,field_strength_t,manufacturer --cuts age=45 --out sub
    """
    from npcai.survival.commands import run_subgroups

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_subgroups, table, out, t, e, by, _split(factors), reference=reference,
             cuts=_named_numbers("--cuts", cuts) if cuts else None, overwrite=overwrite)
    _done(out, [f"HR {s['comparison']} in subgroups of {', '.join(s['factors'])}"])


def _optional_number(option: str, value: str) -> float | None:
    from npcai.errors import NpcaiError

    if value.strip().lower() == "none":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise NpcaiError(f"{option} {value!r}: give a number of SDs (e.g. 0.2) or none") from exc


def _named_numbers(option: str, value: str) -> dict[str, float]:
    from npcai.errors import NpcaiError

    out = {}
    for item in _split(value):
        name, _, number = item.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError as exc:
            raise NpcaiError(f"{option} {item!r}: write column=number, e.g. age=45") from exc
    return out


def _covariate_calipers(value: str) -> float | dict | None:
    if "=" not in value:
        return _optional_number("--covariate-caliper", value)
    return _named_numbers("--covariate-caliper", value)


@app.command("match")
def match(cohort: Path = COHORT, out: Path = OUT,
          treatment: str = typer.Option(..., "--treatment", help="Column with the two treatment groups."),
          covariates: str = typer.Option(..., "--covariates", help="Comma-separated covariates to balance "
                                                                   "(model terms, e.g. age,C(t_stage),log1p(ebv_dna))."),
          distance: str = typer.Option("mahalanobis", "--distance", help="What picks the control among the "
                                       "eligible ones: mahalanobis (of the covariates) or propensity (nearest score)."),
          caliper: str = typer.Option("0.2", "--caliper", help="Caliper in SDs of the propensity score "
                                      "(on --ps-scale), or none."),
          ps_scale: str = typer.Option("logit", "--ps-scale", help="logit (Austin 2011) or probability (MatchIt's "
                                       "default scale)."),
          exact: str = typer.Option("stage", "--exact", help="Columns that must agree within a pair; 'stage' = the "
                                    "covariates among t_stage,n_stage,stage; or none."),
          covariate_caliper: str = typer.Option("0.25", "--covariate-caliper", help="Caliper in SDs on every other "
                                                "numeric covariate (e.g. 0.25), per covariate (age=0.25,ebv_dna=0.5), "
                                                "or none."),
          treated: Optional[str] = typer.Option(None, "--treated", help="Which value is 'treated' (every one gets "
                                                                       "a control; default: the smaller group)."),
          run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """1:1 nearest-neighbour matching (MatchIt nearest) with a balance table and the matched patient list.

    Default recipe: the Mahalanobis distance of the covariates among controls within 0.2 SD of the logit
    propensity score, exactly on T/N stage, within 0.25 SD of every other numeric covariate. MatchIt's own
    default: --distance propensity --caliper none --ps-scale probability --exact none --covariate-caliper none.

    Example: npcai survival match COHORT --treatment treatment --covariates age,t_stage,n_stage,ebv_dna --out matched
    """
    from rich.console import Console
    from rich.table import Table

    from npcai.survival.commands import run_match
    from npcai.survival.io import load_table

    table = load_table(cohort, run, score_name=score_name)
    exact_cols = None if exact.strip().lower() == "stage" else \
        ([] if exact.strip().lower() == "none" else _split(exact))
    s = _run(run_match, table, out, treatment, _split(covariates), distance=distance,
             caliper=_optional_number("--caliper", caliper), ps_scale=ps_scale, exact=exact_cols,
             covariate_calipers=_covariate_calipers(covariate_caliper), treated=treated, overwrite=overwrite)
    con = Console()
    con.print(f"recipe: {s['recipe']}", markup=False, highlight=False)
    counts = Table(title="patients per arm")
    for c in ("arm", "treatment", "all", "matched", "discarded"):
        counts.add_column(c)
    for c in s["counts"]:
        counts.add_row(c["arm"], str(c["level"]), str(c["all"]), str(c["matched"]), str(c["unmatched"]))
    con.print(counts)
    tab = Table(title=f"balance ({s['treated']} vs {s['control']}; means in balance.csv)")
    for c in ("covariate", "SMD before", "p before", "SMD after", "p after"):
        tab.add_column(c, no_wrap=True)
    for b in s["balance"]:
        tab.add_row(b["covariate"], f"{b['smd_before']:+.3f}", f"{b['p_before']:.3g}", f"{b['smd_after']:+.3f}",
                    f"{b['p_after']:.3g}")
    con.print(tab)
    if s["warning"]:
        Console(stderr=True, soft_wrap=True).print(f"warning: {s['warning']}", markup=False, highlight=False)
    _done(out, [f"{s['pairs']} pairs; max |SMD| over the covariates after matching: {s['max_abs_smd_after']:.3f}; "
                f"matched patients in {out / 'matched_patients.txt'}"])


@app.command("cindex")
def cindex(cohort: Path = COHORT, out: Path = OUT, endpoint: Optional[str] = ENDPOINT,
           time: Optional[str] = TIME, event: Optional[str] = EVENT,
           scores: str = typer.Option(..., "--scores", help="Comma-separated score columns (higher = riskier)."),
           n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the paired differences."),
           seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
           run: Optional[Path] = RUN, score_name: str = SCORE_NAME, overwrite: bool = OVERWRITE) -> None:
    """C-index of several scores on the same patients, with CIs and paired bootstrap tests of the differences.

    Example: npcai survival cindex COHORT --run RUN --endpoint dfs --scores prob,t_stage,n_stage --out cidx
    """
    from npcai.survival.commands import run_cindex

    table, t, e = _table(cohort, run, score_name, endpoint, time, event)
    s = _run(run_cindex, table, out, t, e, _split(scores), n_boot=n_boot, seed=seed, overwrite=overwrite)
    lines = [f"{r['score']}: C = {r['c_index']:.3f} ({r['low']:.3f}-{r['high']:.3f})" for r in s["scores"]]
    lines += [f"{p['score_a']} - {p['score_b']}: {p['difference']:+.3f} ({p['low']:+.3f} to {p['high']:+.3f}), "
              f"p = {p['p_value']:.3g}" for p in s["pairs"]]
    _done(out, lines)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="survival")
