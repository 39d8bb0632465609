"""``npcai evaluate``, ``npcai compare`` and ``npcai table1``: parse, call npcai.stats, print."""
from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `npcai train` (or `npcai ensemble`), or a "
                                         "prediction folder written by `npcai predict`."),
    split: str = typer.Option(None, help="Split to evaluate: default test for a run (RUN/metrics.json), "
                                         "external for predictions; val writes RUN/metrics_val.json."),
    threshold: float = typer.Option(None, help="Fixed decision threshold on the probability; "
                                               "default: Youden's J on the validation patients."),
    n_boot: int = typer.Option(1000, help="Bootstrap resamples for the F1 and slice-AUC CIs and the "
                                          "ROC band (0 skips them)."),
    seed: int = typer.Option(0, help="Bootstrap random seed."),
    figures: bool = typer.Option(True, help="Write RUN/figures/roc.png and confusion.png."),
) -> None:
    """Evaluate a run on its test patients (or predictions on their external cohort): AUC with DeLong CI, metrics at the threshold fixed on validation patients (Wilson CIs), confusion matrix, C-index, calibration, TNM baseline; writes RUN/metrics.json and RUN/figures/."""
    from rich.console import Console

    from npcai.models.folds import is_cv_run
    from npcai.progress import show_progress
    from npcai.stats.evaluate import evaluate_run

    if is_cv_run(run):
        _print_cv(run, figures=figures, n_boot=n_boot, seed=seed)
        return
    with show_progress():
        m = evaluate_run(run, split, threshold=threshold, n_boot=n_boot, seed=seed, figures=figures)
    _print_metrics(m)
    if m.get("task") == "survival":      # every cohort of the run is in one metrics.json
        Console().print(f"wrote {run / 'metrics.json'}")
        return
    external = None
    if m["split"] == "test" and _has_split(run, "test_external"):
        with show_progress():
            external = evaluate_run(run, "test_external", threshold=threshold, n_boot=n_boot, seed=seed,
                                    figures=figures)
        _print_metrics(external)
    default = "external" if m.get("kind") == "predictions" else "test"
    sfx = "" if m["split"] == default else f"_{m['split']}"
    Console().print(f"wrote {run / f'metrics{sfx}.json'}" + (", metrics_test_external.json" if external else "") +
                    (f", {run / 'figures'}/roc{sfx}.png, confusion{sfx}.png" if figures else ""))


def _has_split(run: Path, split: str) -> bool:
    """Whether the run's predictions hold patients of ``split`` (e.g. the external test cohort)."""
    from npcai.runs import read_run

    return bool((read_run(run).patients["split"] == split).any())


def _print_cv(run: Path, *, figures: bool, n_boot: int, seed: int) -> None:
    """`npcai evaluate` of a cross-validated run: pooled out-of-fold AUC and the folds."""
    from rich.console import Console
    from rich.table import Table

    from npcai.models.folds import evaluate_cv

    ev = evaluate_cv(run, figures=figures, n_boot=min(n_boot, 500), seed=seed)
    a = ev.pooled_auc
    t = Table(title=f"{ev.run}: {len(ev.folds)}-fold cross-validation, {ev.n_patients} patients "
                    f"({ev.n_label_1} label 1), endpoint {ev.endpoint}")
    t.add_column("metric")
    t.add_column("value (95% CI)")
    t.add_column("note")
    t.add_row("AUC, pooled out-of-fold", f"{a.auc:.3f} ({a.low:.3f}-{a.high:.3f})",
              "DeLong; every patient predicted by the fold model that did not see it")
    t.add_row("AUC per fold, mean ± SD", f"{ev.fold_auc_mean:.3f} ± {ev.fold_auc_sd:.3f}",
              ", ".join(f"fold {int(r.fold)} {r.auc:.3f} (n {int(r.n)})" for r in ev.folds.itertuples()))
    b = ev.binary
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        p = getattr(b, key)
        t.add_row(key, "undefined" if p.value is None else f"{p.value:.3f} ({p.low:.3f}-{p.high:.3f})",
                  f"{p.k}/{p.n}; Wilson; thresholds fixed per fold on its validation patients")
    Console().print(t)
    Console().print(f"wrote {run / 'metrics.json'}" + (f", {run / 'figures' / 'roc.png'}" if figures else ""))


def _print_metrics(m: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if m.get("task") == "survival":
        from npcai.survival.deep.report import print_evaluation

        return print_evaluation(con, m)
    t = Table(title=f"{m['run']}: {m['split']} split, {m['n_patients']} patients "
                    f"({m['n_label_1']} label 1, {m['n_label_0']} label 0), endpoint {m['endpoint']}")
    t.add_column("metric")
    t.add_column("value (95% CI)")
    t.add_column("note")
    a = m["patient"]["auc"]
    t.add_row("AUC, patients", f"{a['auc']:.3f} ({a['low']:.3f}-{a['high']:.3f})", "DeLong")
    if "slice" in m:
        s = m["slice"]
        boot = s.get("auc_bootstrap_patients")
        t.add_row("AUC, slices", f"{s['auc']['auc']:.3f} ({s['auc']['low']:.3f}-{s['auc']['high']:.3f})",
                  f"{s['n_slices']} slices; DeLong" + (f"; patient bootstrap {boot['low']:.3f}-{boot['high']:.3f}"
                                                       if boot else ""))
    thr = m["threshold"]
    t.add_row("threshold", f"{thr['value']:.4f}", thr["source"])
    b = m["binary"]
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        p = b[key]
        if p["value"] is None:
            t.add_row(key, "undefined", p["undefined"])
        else:
            t.add_row(key, f"{p['value']:.3f} ({p['low']:.3f}-{p['high']:.3f})", f"{p['k']}/{p['n']}; Wilson")
    f1ci = b.get("f1_ci", {})
    t.add_row("F1", f"{b['f1']:.3f}" + (f" ({f1ci['low']:.3f}-{f1ci['high']:.3f})" if "low" in f1ci else ""),
              "patient bootstrap" if "low" in f1ci else "")
    cm = b["confusion"]
    t.add_row("confusion", f"TP {cm['tp']}  FN {cm['fn']}  FP {cm['fp']}  TN {cm['tn']}", "")
    c = m["c_index"]
    if "unavailable" in c:
        t.add_row("C-index", "-", c["unavailable"])
    else:
        t.add_row("C-index", f"{c['c_index']:.3f} ({c['low']:.3f}-{c['high']:.3f})",
                  f"{c['kind']}; {c['survival']}")
    cal = m["calibration"]
    if "unavailable" in cal:
        t.add_row("Brier", f"{cal['brier']:.3f}", "")
        t.add_row("calibration", "-", cal["unavailable"])
    else:
        t.add_row("Brier", f"{cal['brier']:.3f}", "")
        t.add_row("calibration", f"intercept {cal['intercept']:.2f} (SE {cal['intercept_se']:.2f}), "
                  f"slope {cal['slope']:.2f} (SE {cal['slope_se']:.2f})", "ideal 0 and 1")
    tnm = m.get("tnm", {})
    for row in tnm.get("table", []):
        note = ""
        for d in tnm.get("delong", []):
            if d["score"] == row["score"]:
                note = f"model vs {row['score']}: DeLong p = {d['p_value']:.3g}"
        cidx = f"; C {row['c_index']:.3f}" if row.get("c_index") is not None else ""
        t.add_row(f"TNM: {row['score']}", f"AUC {row['auc']:.3f} ({row['auc_low']:.3f}-{row['auc_high']:.3f})"
                  + cidx, note)
    if "unavailable" in tnm:
        t.add_row("TNM baseline", "-", tnm["unavailable"])
    con.print(t)


def compare(
    runs: list[Path] = typer.Argument(..., help="Two or more run folders evaluated on the same split, or "
                                                "prediction folders of several runs on one external cohort."),
    out: Path = typer.Option(..., "--out", help="Output folder for table3.csv, delong.csv, roc_<dataset>.png."),
    group_by: str = typer.Option("roi", help="Group runs into datasets by 'roi' (rows: backbones) "
                                             "or 'backbone' (rows: ROI variants)."),
    pairs: str = typer.Option(None, help="DeLong pairs as RUN_A:RUN_B,... (run folder names); default: "
                                         "same backbone, different dataset (or the reverse with "
                                         "--group-by backbone)."),
    unpaired: bool = typer.Option(False, help="Use the unpaired DeLong test (runs on different patients)."),
    split: str = typer.Option(None, help="Split compared (default: test for runs, external for predictions, "
                                         "oof (the out-of-fold predictions) when every run is cross-validated)."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty --out folder."),
) -> None:
    """Compare runs as study 000's Table 3 (sensitivity, specificity, F1, precision, AUC with CI, aAUC ± SD per dataset), with DeLong tests between runs and one ROC figure per dataset."""
    from rich.console import Console
    from rich.table import Table

    from npcai.progress import show_progress
    from npcai.fsutil import check_output_path
    from npcai.models.folds import check_same_folds, is_cv_run
    from npcai.stats.compare import compare_runs, parse_pairs, write_compare

    check_output_path(out, runs)
    if split is None and all(is_cv_run(r) for r in runs):
        split = "oof"
    if split == "oof" and not unpaired:
        check_same_folds(runs)
    with show_progress():
        res = compare_runs(runs, group_by=group_by, split=split, pairs=parse_pairs(pairs),
                           unpaired=unpaired)
        write_compare(res, out, overwrite=overwrite)
    con = Console()
    t = Table(title=f"Table 3 ({split or 'test/external'} patients)")
    for col in ("dataset", "model", "sens.", "spec.", "F1", "precision", "AUC", "95% CI", "aAUC (SD)"):
        t.add_column(col, overflow="fold")
    def num(v) -> str:
        return "undefined" if v is None or v != v else f"{v:.3f}"

    for _, r in res.table3.iterrows():
        aauc = "" if r["aauc"] != r["aauc"] else f"{r['aauc']:.3f} ({r['aauc_sd']:.3f})"
        t.add_row(str(r["dataset"]), str(r["model"]), num(r["sensitivity"]), num(r["specificity"]),
                  num(r["f1"]), num(r["precision"]), f"{r['auc']:.3f}",
                  f"{r['auc_low']:.3f}-{r['auc_high']:.3f}", aauc)
    con.print(t)
    if len(res.delong):
        d = Table(title="DeLong tests" + (" (unpaired)" if unpaired else " (paired)"))
        for col in ("run A", "run B", "AUC A", "AUC B", "statistic", "p"):
            d.add_column(col, overflow="fold")
        for _, r in res.delong.iterrows():
            d.add_row(r["run_a"], r["run_b"], f"{r['auc_a']:.3f}", f"{r['auc_b']:.3f}",
                      f"{r['statistic']:.3f}", f"{r['p_value']:.3g}")
        con.print(d)
    if res.tnm is not None:
        k = Table(title="TNM staging on the same test patients (paired DeLong vs each run)")
        for col in ("run", "stage", "AUC (95% CI)", "C-index", "run AUC", "p"):
            k.add_column(col, overflow="fold")
        for _, r in res.tnm.iterrows():
            k.add_row(r["run"], r["score"], f"{r['auc']:.3f} ({r['auc_low']:.3f}-{r['auc_high']:.3f})",
                      "-" if r["c_index"] is None or r["c_index"] != r["c_index"] else f"{r['c_index']:.3f}",
                      f"{r['auc_model']:.3f}", f"{r['p_value']:.3g}")
        con.print(k)
    con.print(f"wrote {out}/table3.csv, delong.csv, " + ("tnm.csv, " if res.tnm is not None else "") +
              ", ".join(f"roc_{k}.png" for k in res.curves))


def table1_cmd(
    folder: Path = typer.Argument(..., help="A run folder (patients of its split.csv) or a cohort folder."),
    by: str = typer.Option("split", help="Group by 'split' (runs), 'label', or any clinical column "
                                         "(e.g. centre, treatment)."),
    endpoint: str = typer.Option(None, help="Endpoint for --by label on a cohort (e.g. pfs-median)."),
    variables: str = typer.Option(None, help="Comma-separated clinical columns to describe "
                                             "(default: every column; identifiers, free text and empty "
                                             "columns are listed as not described)."),
    mean: bool = typer.Option(False, "--mean", help="Numeric columns as mean ± SD with t-test/ANOVA "
                                                    "(the seeds' layout) instead of median [IQR] with rank tests."),
    out: Path = typer.Option(None, help="Write the table as CSV to this file."),
) -> None:
    """Clinical characteristics by group (Table 1), every clinical column: median [IQR] with Wilcoxon rank-sum or Kruskal-Wallis, or n (%) with chi-square or Fisher p-values; printed and optionally written as CSV."""
    from rich.console import Console
    from rich.table import Table

    from npcai.fsutil import atomic_write_text
    from npcai.progress import show_progress
    from npcai.stats.table1 import table1_from_folder

    with show_progress():
        df = table1_from_folder(folder, by, endpoint=endpoint,
                                variables=[v.strip() for v in variables.split(",")] if variables else None,
                                continuous="mean" if mean else "median")
    if out is not None:
        atomic_write_text(out, df.to_csv(index=False, float_format="%.4g"))
    con = Console()
    t = Table(title=f"Table 1: clinical characteristics by {by}")
    for col in df.columns:
        t.add_column(str(col), overflow="fold")
    previous = None
    for _, r in df.iterrows():
        cells = ["" if v is None or v != v else (f"{v:.3f}" if isinstance(v, float) else str(v))
                 for v in r.tolist()]
        if r["variable"] == previous:
            cells[0] = ""      # the variable's name only on its first row, as in the papers
        previous = r["variable"]
        t.add_row(*cells)
    con.print(t)
    if out is not None:
        con.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add ``evaluate``, ``compare`` and ``table1`` to the root app."""
    app.command("evaluate")(evaluate)
    app.command("compare")(compare)
    app.command("table1")(table1_cmd)
