"""Compare runs: study 000's Table 3, DeLong tests between runs, one ROC figure per dataset.

Runs are grouped by dataset (the ROI variant, ``--group-by roi``) or by backbone. Within a
group each run is one row: sensitivity, specificity, F1 and precision at the threshold fixed
on that run's validation patients (for a cross-validated run, each out-of-fold patient at its
own fold's validation threshold), and the AUC with its DeLong 95% CI; the group's aAUC ± SD
is the mean and sample SD (n - 1) of its runs' AUCs, as study 000.

Default DeLong pairs answer the study's question "does the dataset matter for the same
network?": every pair of runs with the same backbone and different datasets (with
``--group-by backbone``: the same dataset, different backbones). ``pairs`` names pairs
explicitly by run folder name. Paired tests need the same test patients with the same
labels; runs that differ are refused with the difference named, unless ``unpaired=True``
(pROC's unpaired DeLong test).

Examples:
    >>> res = compare_runs(["runs/seg_b0", "runs/exp20_b0"], group_by="roi")   # doctest: +SKIP
    >>> res.table3                                                           # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_output_dir
from npcai.progress import track
from npcai.stats.auc import delong_test, delong_test_unpaired
from npcai.stats.evaluate import evaluate_predictions
from npcai.runs.folder import RunFolder, read_run

__all__ = ["CompareResult", "compare_runs", "write_compare", "parse_pairs"]

log = logging.getLogger(__name__)

TABLE3_COLUMNS = ["dataset", "model", "run", "n_test", "sensitivity", "specificity", "f1",
                  "precision", "auc", "auc_low", "auc_high", "aauc", "aauc_sd"]


@dataclass
class CompareResult:
    """Tables of a comparison.

    Attributes:
        table3: one row per run (columns :data:`TABLE3_COLUMNS`, plus localisation shares when
            the runs were explained); ``aauc``/``aauc_sd`` on the first row of each dataset.
        delong: one row per compared pair: run_a, run_b, dataset_a, dataset_b, model_a, model_b,
            n, auc_a, auc_b, statistic, p_value, paired, df.
        group_by: "roi" or "backbone".
        curves: dataset -> {run label -> (y_true, prob)} for the ROC figures.
        tnm: TNM baseline on each run's test patients: run, score, n, auc, auc_low, auc_high,
            c_index, c_low, c_high, auc_model, z, p_value (paired DeLong run vs stage);
            None when the runs' cohort has no stage columns.
    """

    table3: pd.DataFrame
    delong: pd.DataFrame
    group_by: str
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    tnm: pd.DataFrame | None = None


def parse_pairs(text: str | None) -> list[tuple[str, str]] | None:
    """``"A:B,C:D"`` -> [("A", "B"), ("C", "D")] (run folder names)."""
    if not text:
        return None
    pairs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 2 or not all(parts):
            raise NpcaiError(f"--pairs: {item!r} is not RUN_A:RUN_B; write e.g. --pairs seg_b0:exp20_b0")
        pairs.append((parts[0], parts[1]))
    return pairs


def _localisation(run: RunFolder) -> dict[str, float]:
    """Mean Grad-CAM share per region (pixel bands and the phantom's signal band) from
    ``RUN/explain/localisation_summary.csv`` (long format written by ``npcai explain``)."""
    path = run.path / "explain" / "localisation_summary.csv"
    if not path.is_file():
        return {}
    df = pd.read_csv(path)
    need = {"scale", "region", "share_mean"}
    if not need <= set(df.columns):
        log.warning("%s: not the localisation summary of `npcai explain` (columns %s); not included",
                    path, ", ".join(sorted(need - set(df.columns))))
        return {}
    df = df[df["scale"].isin(["px", "signal"])]
    return {f"loc_{r.region}": float(r.share_mean) for r in df.itertuples()}


def _label_of(run: RunFolder, group_by: str) -> tuple[str, str]:
    """(dataset, model) of a run for the chosen grouping."""
    roi = run.roi or "?"
    backbone = run.backbone or "?"
    return (roi, backbone) if group_by == "roi" else (backbone, roi)


def _patients_differ(a: RunFolder, b: RunFolder, ta: pd.DataFrame, tb: pd.DataFrame) -> str | None:
    if a.config.cohort_id != b.config.cohort_id:
        return (f"runs {a.name} and {b.name} are about different cohorts (ids {str(a.config.cohort_id)[:12]} "
                f"and {str(b.config.cohort_id)[:12]})")
    only_a = sorted(set(ta.index) - set(tb.index))
    only_b = sorted(set(tb.index) - set(ta.index))
    if only_a or only_b:
        def show(x):
            return ", ".join(x[:5]) + (f" and {len(x) - 5} more" if len(x) > 5 else "") if x else "none"
        return (f"runs {a.name} and {b.name} have different test patients "
                f"(only in {a.name}: {show(only_a)}; only in {b.name}: {show(only_b)})")
    lab = ta["label"].astype(int) != tb.loc[ta.index, "label"].astype(int)
    if lab.any():
        return (f"runs {a.name} and {b.name} give different labels to {int(lab.sum())} test patient(s) "
                f"(e.g. {lab.index[lab][0]}); were they trained on different endpoints?")
    return None


def compare_runs(run_dirs: list[str | Path], group_by: Literal["roi", "backbone"] = "roi", *,
                 split: str | None = None, pairs: list[tuple[str, str]] | None = None,
                 unpaired: bool = False) -> CompareResult:
    """Table 3, DeLong tests and ROC curves of several runs evaluated on ``split``.

    Args:
        run_dirs: run folders (at least two), or prediction folders of several runs on the
            same external cohort (``npcai predict``).
        group_by: "roi" (dataset = ROI variant, rows = backbones) or "backbone".
        split: the split compared; default ``test`` for runs, ``external`` for prediction folders.
        pairs: explicit (run_a, run_b) folder-name pairs for DeLong tests; default see module doc.
        unpaired: use the unpaired DeLong test (runs on different patients).
    """
    if group_by not in ("roi", "backbone"):
        raise NpcaiError(f"--group-by {group_by!r}: choose roi or backbone")
    if len(run_dirs) < 2:
        raise NpcaiError("compare: give at least two run folders")
    runs = [read_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise NpcaiError(f"compare: two runs share the folder name {sorted(dup)[0]!r}; rename one")
    tests, rows, curves = {}, [], {}
    for run in track(runs, "Evaluating runs"):
        test = run.split_patients(split or run.default_split)
        test = test[test["label"].notna()].assign(label=lambda d: d["label"].astype(int))
        if run.config.kind == "cv":     # each patient at its own fold's validation threshold
            from npcai.models.folds import fold_threshold_metrics

            m = evaluate_predictions(test, threshold=0.5, n_boot=0)
            m["binary"] = fold_threshold_metrics(test).to_dict()
            m["threshold"] = {"value": None, "source": "per fold: Youden's J on that fold's validation patients"}
        elif run.recorded_threshold() is not None:    # predictions of a cross-validated run
            rec = run.recorded_threshold()
            m = evaluate_predictions(test, threshold=rec["value"], threshold_source=rec.get("source"), n_boot=0)
        else:
            val = run.validation()
            m = evaluate_predictions(test, val=val if len(val) else None, n_boot=0)
        tests[run.name] = test
        dataset, model = _label_of(run, group_by)
        b = m["binary"]
        rows.append({"dataset": dataset, "model": model, "run": run.name, "n_test": m["n_patients"],
                     "sensitivity": b["sensitivity"]["value"], "specificity": b["specificity"]["value"],
                     "f1": b["f1"], "precision": b["precision"]["value"],
                     "auc": m["patient"]["auc"]["auc"], "auc_low": m["patient"]["auc"]["low"],
                     "auc_high": m["patient"]["auc"]["high"], "threshold": m["threshold"]["value"],
                     "method": run.config.method, **_localisation(run)})
        group = curves.setdefault(dataset, {})
        label = model if model not in group else f"{model} ({run.name})"
        group[label] = (test["label"].to_numpy(), test["prob"].to_numpy())
    table = pd.DataFrame(rows)
    table["aauc"], table["aauc_sd"] = np.nan, np.nan
    for _dataset, g in table[table["method"] == "deep"].groupby("dataset", sort=False):
        first = g.index[0]          # aAUC: the mean over the dataset's networks (a radiomics run is not one)
        table.loc[first, "aauc"] = g["auc"].mean()
        table.loc[first, "aauc_sd"] = g["auc"].std(ddof=1) if len(g) > 1 else 0.0
    table = table.drop(columns="method")
    extra = [c for c in table.columns if c not in TABLE3_COLUMNS]
    table = table[TABLE3_COLUMNS + extra]
    by_name = {r.name: r for r in runs}
    if pairs is None:
        pairs = [(a.name, b.name) for a, b in itertools.combinations(runs, 2)
                 if _label_of(a, group_by)[1] == _label_of(b, group_by)[1]
                 and _label_of(a, group_by)[0] != _label_of(b, group_by)[0]]
    for a, b in pairs:
        for x in (a, b):
            if x not in by_name:
                raise NpcaiError(f"--pairs: no run named {x!r} among {', '.join(names)}")
    drows = []
    for a, b in pairs:
        ra, rb, ta, tb = by_name[a], by_name[b], tests[a], tests[b]
        if unpaired:
            t = delong_test_unpaired(ta["label"].to_numpy(), ta["prob"].to_numpy(),
                                     tb["label"].to_numpy(), tb["prob"].to_numpy())
            n = f"{len(ta)}/{len(tb)}"
        else:
            diff = _patients_differ(ra, rb, ta, tb)
            if diff:
                raise NpcaiError(f"{diff}; a paired DeLong test needs the same patients: "
                                 "pass --unpaired for the unpaired test")
            tb_al = tb.loc[ta.index]
            t = delong_test(ta["label"].to_numpy(), ta["prob"].to_numpy(), tb_al["prob"].to_numpy())
            n = str(len(ta))
        (da, ma), (db, mb) = _label_of(ra, group_by), _label_of(rb, group_by)
        drows.append({"run_a": a, "run_b": b, "dataset_a": da, "dataset_b": db, "model_a": ma,
                      "model_b": mb, "n": n, "auc_a": t.auc1, "auc_b": t.auc2,
                      "statistic": t.statistic, "p_value": t.p_value, "paired": t.paired, "df": t.df})
    delong = pd.DataFrame(drows, columns=["run_a", "run_b", "dataset_a", "dataset_b", "model_a",
                                          "model_b", "n", "auc_a", "auc_b", "statistic", "p_value",
                                          "paired", "df"])
    return CompareResult(table3=table, delong=delong, group_by=group_by, curves=curves,
                         tnm=_tnm_rows(runs, tests))


def _tnm_rows(runs: list[RunFolder], tests: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """TNM stages vs each run on that run's test patients (skipped, with a log line, when the
    cohort has no stage columns)."""
    from npcai.stats.evaluate import run_clinical, run_survival
    from npcai.stats.tnm import tnm_baseline

    rows = []
    for run in runs:
        clinical = run_clinical(run)
        if clinical is None:
            log.warning("%s: config names no cohort; no TNM baseline for this run", run.name)
            continue
        test = tests[run.name]
        survival, _ = run_survival(run, clinical)
        try:
            res = tnm_baseline(clinical, test["label"], survival, models={run.name: test["prob"]})
        except NpcaiError as exc:
            log.warning("%s: no TNM baseline (%s)", run.name, exc)
            continue
        tests_by_score = res.delong.set_index("score")
        for r in res.table.to_dict(orient="records"):
            d = tests_by_score.loc[r["score"]]
            rows.append({"run": run.name, **{k: r[k] for k in ("score", "n", "auc", "auc_low", "auc_high",
                                                               "c_index", "c_low", "c_high")},
                         "auc_model": d["auc_model"], "z": d["z"], "p_value": d["p_value"]})
    return pd.DataFrame(rows) if rows else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def write_compare(result: CompareResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """DIR/table3.csv, DIR/delong.csv, DIR/tnm.csv (when staged) and DIR/roc_<dataset>.png,
    written atomically."""
    from npcai.stats.figures import plot_roc

    out = Path(out)
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        result.table3.to_csv(tmp / "table3.csv", index=False, float_format="%.6g")
        result.delong.to_csv(tmp / "delong.csv", index=False, float_format="%.6g")
        if result.tnm is not None:
            result.tnm.to_csv(tmp / "tnm.csv", index=False, float_format="%.6g")
        word = "dataset" if result.group_by == "roi" else "backbone"
        for dataset, curves in result.curves.items():
            plot_roc(tmp / f"roc_{_safe(dataset)}.png", curves,
                     title=f"ROC, test patients: {word} {dataset}", ci_band=len(curves) == 1)
    return out
