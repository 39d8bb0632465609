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


def print_evaluation(con, m: dict[str, Any]) -> None:
    """The table ``npcai evaluate`` prints for a survival run's metrics (see
    :func:`npcai.survival.deep.evaluate.evaluate_survival_run`)."""
    from rich.table import Table

    t = Table(title=f"{m['run']}: survival run, endpoint {m['endpoint']}")
    for col in ("cohort", "patients (events)", "C-index prognostic (95% CI)", "HR/SD prognostic",
                "HR/SD predictive", "p interaction"):
        t.add_column(col)
    for name, c in m["cohorts"].items():
        hr = c.get("hr_per_sd", {})
        inter = c.get("interaction", {})
        t.add_row(name, f"{c['n_patients']} ({c['n_events']})", _c(c["c_index_prognostic"]),
                  _hr(hr.get("prognostic_score")), _hr(hr.get("predictive_score")), f"{inter['p']:.3g}" if "p" in inter else inter.get("unavailable", "-"))
    con.print(t)
