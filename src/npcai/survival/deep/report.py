"""Console lines of a survival run for the CLI (``npcai train``, ``npcai evaluate``); no computing here."""
from __future__ import annotations

from typing import Any

__all__ = ["print_train_result", "print_evaluation"]


def _c(block: dict[str, Any]) -> str:
    if "c_index" not in block:
        return block.get("unavailable", "unavailable")
    return f"{block['c_index']:.3f} ({block['low']:.3f}-{block['high']:.3f})"


def _hr(h: dict[str, Any] | None) -> str:
    if not h:
        return "-"
    if "hr" not in h:
        return h.get("unavailable", "-")
    return f"{h['hr']:.2f} ({h['hr_low']:.2f}-{h['hr_high']:.2f}), p {h['p']:.3g}"


def print_train_result(con, cfg, result) -> None:
    """What ``npcai train --task survival`` prints after training."""
    s = result.summary
    sp = s["splits"]
    con.print(f"[bold]run[/bold] {result.run_dir}: survival task, {cfg.backbone}, endpoint {cfg.endpoint}")
    con.print("patients train/val/test: " + " / ".join(
        f"{sp[k]['patients']} ({sp[k]['label_1']} events)" for k in ("train", "val", "test"))
        + f"; excluded {s['excluded']['count']}")
    con.print(f"selected epoch {result.best_epoch + 1} of {result.epochs_run} "
              f"(validation C-index {result.val_auc:.3f})")
    con.print(f"[bold]test C-index of the prognostic score {_c(s['test_c_index'])}[/bold] "
              f"(n = {s['n_test']} patients, {s['n_test_events']} events; `npcai evaluate {result.run_dir}`)")


def _auc(block: dict[str, Any] | None) -> str:
    if not block:
        return "-"
    if "auc" not in block:
        return block.get("unavailable", "-")
    return f"{block['auc']:.3f} ({block['low']:.3f}-{block['high']:.3f})"


def _association(r: dict[str, Any]) -> str:
    if r.get("p") is None or r["p"] != r["p"]:
        return r.get("note") or "-"
    stat = f"rho {r['rho']:+.2f}" if r["test"] == "Spearman" else f"H {r['h']:.2f}"
    return f"{stat}, p {r['p']:.3g}"


def print_evaluation(con, m: dict[str, Any]) -> None:
    """The tables ``npcai evaluate`` prints for a survival run's metrics (see
    :func:`npcai.survival.deep.evaluate.evaluate_survival_run`): per cohort the C-index, HRs
    and p_interaction (with the phantom's oracle C-index and necrosis AUC when known), then
    Table D1 (Predictive-score vs clinical factors)."""
    from rich.table import Table

    cohorts = m["cohorts"]
    t = Table(title=f"{m['run']}: survival run, endpoint {m['endpoint']}")
    for col in ("cohort", "patients (events)", "C-index prognostic (95% CI)", "HR/SD prognostic",
                "HR/SD predictive", "p interaction"):
        t.add_column(col)
    for name, c in cohorts.items():
        hr = c.get("hr_per_sd", {})
        inter = c.get("interaction", {})
        t.add_row(name, f"{c['n_patients']} ({c['n_events']})", _c(c["c_index_prognostic"]),
                  _hr(hr.get("prognostic_score")), _hr(hr.get("predictive_score")),
                  f"{inter['p']:.3g}" if "p" in inter else inter.get("unavailable", "-"))
    con.print(t)
    phantom = {name: c["phantom"] for name, c in cohorts.items() if "phantom" in c}
    if phantom:
        pt = Table(title="Phantom truth on the same patients")
        for col in ("cohort", "C-index prognostic", "oracle C-index", "AUC of -predictive for necrosis",
                    "p interaction: predictive / true necrosis"):
            pt.add_column(col)
        for name, ph in phantom.items():
            p_model, p_true = cohorts[name].get("interaction", {}), ph.get("necrosis_interaction", {})
            pt.add_row(name, _c(cohorts[name]["c_index_prognostic"]), _c(ph["oracle_c_index"]),
                       _auc(ph.get("necrosis_auc")),
                       " / ".join(f"{x['p']:.3g}" if "p" in x else "-" for x in (p_model, p_true)))
        con.print(pt)
    tables = {name: c["predictive_score_clinical"] for name, c in cohorts.items()
              if isinstance(c.get("predictive_score_clinical"), list)}
    if tables:
        d1 = Table(title="Table D1: Predictive-score vs clinical factors")
        d1.caption = "Spearman rho (numeric factors) or Kruskal-Wallis H (sex, centre), two-sided p"
        d1.add_column("factor")
        for name in tables:
            d1.add_column(name)
        factors = list(dict.fromkeys(r["factor"] for rows in tables.values() for r in rows))
        for f in factors:
            d1.add_row(f, *[next((_association(r) for r in rows if r["factor"] == f), "-") for rows in tables.values()])
        con.print(d1)
