"""Deep multi-task survival (study 004) on a multi-centre phantom: the model against the clinical
covariates alone, the phantom's oracle, and with vs without histogram standardisation.

For each run given (trained with ``npcai train --task survival``; the runs must share their
split, e.g. the same ``--seed`` and ``--test-where``):

1. ``npcai evaluate``'s numbers per cohort: the prognostic score's C-index (95% CI), the
   oracle C-index on the same patients, p_interaction and the AUC of -predictive score for
   the planted necrosis;
2. a Cox model of the clinical covariates alone (age, sex, T, N, log EBV DNA, treatment),
   fitted on the run's *training* patients (the same patients the network learnt from) and
   scored on its internal and external test patients (Harrell's C with CI).

Prints one table and writes ``--out`` (JSON). The run labelled ``histogram`` (trained with
``--normalise histogram``) against the one labelled ``robust`` is the benchmark's
external-centre comparison.

Usage::

    .venv/bin/python benchmarks/survival_deep.py robust=RUN1 histogram=RUN2 [--out bench.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

CLINICAL_TERMS = ("age", "sex", "t_stage", "n_stage", "log_ebv", "treatment")
COHORTS = ("test", "test_external")


def clinical_cox(run: Path) -> dict[str, dict]:
    """Cox model of the clinical covariates fitted on the run's training patients; test C-indices."""
    from npcai.cohort.model import Cohort
    from npcai.runs import read_run
    from npcai.stats.concordance import harrell_c
    from npcai.survival.cox import CoxPH

    r = read_run(run)
    pats = r.patients.set_index("patient_id")
    clinical = Cohort.load(r.cohort).clinical()
    d = pats[["split", "time", "event"]].join(clinical[["age", "sex", "t_stage", "n_stage", "ebv_dna",
                                                        "treatment"]])
    d["log_ebv"] = np.log1p(d["ebv_dna"].astype(float))
    d["treatment"] = (d["treatment"] == "IC+CCRT").astype(float)
    fit = CoxPH().fit(d[d["split"] == "train"], "time", "event", list(CLINICAL_TERMS),
                      what="clinical-covariates Cox")
    out = {}
    for cohort in COHORTS:
        sub = d[d["split"] == cohort]
        c = harrell_c(sub["time"], sub["event"], fit.predict_lp(sub), what=f"clinical Cox C-index ({cohort})")
        out[cohort] = {"c_index": c.c_index, "low": c.low, "high": c.high, "n": c.n, "n_events": c.n_events}
    return out


def run_numbers(run: Path) -> dict:
    from npcai.survival.deep.evaluate import evaluate_survival_run

    m = evaluate_survival_run(run, write=True)
    out = {}
    for cohort in COHORTS:
        c = m["cohorts"][cohort]
        ph = c.get("phantom", {})
        out[cohort] = {"c_index": c["c_index_prognostic"], "oracle": ph.get("oracle_c_index"),
                       "p_interaction": c["interaction"].get("p"), "necrosis_auc": ph.get("necrosis_auc")}
    return out


def _ci(b: dict | None) -> str:
    if not b or "c_index" not in b and "auc" not in b:
        return "-"
    v = b.get("c_index", b.get("auc"))
    return f"{v:.3f} ({b['low']:.3f}-{b['high']:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR, e.g. robust=runs/a1 histogram=runs/h1")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    runs = dict(item.split("=", 1) for item in args.runs)
    results, rows = {}, []
    for label, run in runs.items():
        numbers, clin = run_numbers(Path(run)), clinical_cox(Path(run))
        results[label] = {"run": str(Path(run).resolve()), "model": numbers, "clinical_cox": clin}
        for cohort in COHORTS:
            n = numbers[cohort]
            rows.append({"run": label, "cohort": cohort, "C prognostic": _ci(n["c_index"]),
                         "C clinical Cox": _ci(clin[cohort]), "C oracle": _ci(n["oracle"]),
                         "p_interaction": f"{n['p_interaction']:.3g}" if n["p_interaction"] is not None else "-",
                         "AUC necrosis": _ci(n["necrosis_auc"])})
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
