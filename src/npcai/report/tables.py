"""The study's main table in its seed paper's layout, built from one results table.

The runner collects one row per evaluated model (:data:`RESULT_COLUMNS`): every training
run, every ensemble and the TNM baseline, with test-patient metrics. The functions here only
reshape and format those rows; they compute no statistics.

====================  ===========================================================================
layout                table
====================  ===========================================================================
``expansion`` (000)   Table 3: dataset x backbone, Se, Sp, F1, precision, AUC (95% CI), aAUC +- SD
``prepost`` (001)     Table 2 confusion matrices, and AUC / C-index with 95% CI vs TNM
``units`` (002)       Table 2: treatment x unit x backbone, ACC, Se, Sp, AUC (95% CI), aAUC
``metastasis`` (003)  Table 2: dataset x backbone, AUC and accuracy, intratumour vs intra-peritumour
``generic``           one row per model
====================  ===========================================================================

Every layout also lists the clinical baseline and the combined model (``source`` ``baseline``
and ``combined``, :mod:`npcai.studies.baseline`) on the same test patients, after the image models.

Examples:
    >>> import pandas as pd
    >>> rows = pd.DataFrame([dict(model="a", roi="seg", roi_label="Segmented", backbone="resnet18",
    ...                           auc=0.7, auc_low=0.6, auc_high=0.8, source="run")])
    >>> fmt_ci(0.7, 0.6, 0.8)
    '0.700 (0.600–0.800)'
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["RESULT_COLUMNS", "BASELINE_SOURCES", "COMPARATOR_SOURCES", "main_tables", "cv_table", "baseline_table", "backbone_average",
           "fmt", "fmt_ci", "fmt_pct"]

#: results-row sources of the models fitted on clinical covariates (not image runs, not TNM scores)
BASELINE_SOURCES = ("baseline", "combined")
#: the models listed below the deep runs in every layout: the radiomics baseline and the clinical ones
COMPARATOR_SOURCES = ("radiomics",) + BASELINE_SOURCES

#: columns of the runner's results table (one row per model evaluated on the test patients)
RESULT_COLUMNS = [
    "model", "source", "subset", "subset_label", "roi", "roi_label", "group", "kind", "expansion",
    "backbone", "unit", "n_test", "n_pos", "auc", "auc_low", "auc_high", "sensitivity",
    "specificity", "precision", "f1", "accuracy", "ppv", "npv", "tp", "fp", "tn", "fn",
    "threshold", "c_index", "c_low", "c_high", "run", "fold_auc_mean", "fold_auc_sd", "n_folds",
]


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(x, digits: int = 3) -> str:
    """A number with fixed digits; an en dash for missing values (never 'nan' in a table)."""
    if _nan(x):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{float(x):.{digits}f}"


def fmt_ci(value, low, high, digits: int = 3) -> str:
    """``value (low–high)``, or the value alone when the interval is missing."""
    if _nan(value):
        return "–"
    if _nan(low) or _nan(high):
        return fmt(value, digits)
    return f"{fmt(value, digits)} ({fmt(low, digits)}–{fmt(high, digits)})"


def fmt_pct(x) -> str:
    return "–" if _nan(x) else f"{100 * float(x):.2f}"


def backbone_average(results: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """aAUC (mean over backbones) and its SD per group, as the seeds report it (000, 002, 003)."""
    runs = results[results["source"] == "run"]
    g = runs.groupby(by, sort=False, dropna=False)["auc"]
    out = g.agg(aauc="mean", sd=lambda s: s.std(ddof=1) if s.notna().sum() > 1 else float("nan"),
                n_backbones="count").reset_index()
    acc = runs.groupby(by, sort=False, dropna=False)["accuracy"].mean().reset_index(drop=True)
    out["mean_accuracy"] = acc
    return out


def _aauc_text(aauc, sd) -> str:
    if _nan(aauc):
        return "–"
    return f"{aauc:.3f} ({sd:.3f})" if not _nan(sd) else f"{aauc:.3f}"


def _expansion(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    runs = results[results["source"] == "run"]
    avg = backbone_average(results, ["subset", "roi"]).set_index(["subset", "roi"])
    rows = []
    multi_subset = runs["subset"].nunique() > 1
    for (subset, roi), grp in runs.groupby(["subset", "roi"], sort=False):
        a = avg.loc[(subset, roi)]
        for i, (_, r) in enumerate(grp.iterrows()):
            row = {"Dataset": r["roi_label"] if i == 0 else "", "Model": r["backbone"]}
            if multi_subset:
                row = {"Subset": r["subset_label"] if i == 0 else "", **row}
            row.update({"Sensitivity": fmt(r["sensitivity"]), "Specificity": fmt(r["specificity"]),
                        "F1 score": fmt(r["f1"]), "Precision": fmt(r["precision"]),
                        "AUC": fmt(r["auc"]), "95% CI": _ci_only(r),
                        "aAUC (SD)": _aauc_text(a["aauc"], a["sd"]) if i == 0 else ""})
            rows.append(row)
    for _, r in _baselines(results).iterrows():
        row = {"Dataset": r["model"], "Model": _baseline_model(r)}
        if multi_subset:
            row = {"Subset": r["subset_label"], **row}
        row.update({"Sensitivity": fmt(r["sensitivity"]), "Specificity": fmt(r["specificity"]),
                    "F1 score": fmt(r["f1"]), "Precision": fmt(r["precision"]), "AUC": fmt(r["auc"]),
                    "95% CI": _ci_only(r), "aAUC (SD)": ""})
        rows.append(row)
    return {"main": pd.DataFrame(rows)}


def _baselines(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["source"].isin(COMPARATOR_SOURCES)]


def _baseline_model(r) -> str:
    if r["source"] == "radiomics":
        return f"elastic net on {r['roi_label']} features"
    return "logistic (clinical)" if r["source"] == "baseline" else "logistic (image + clinical)"


def _ci_only(r) -> str:
    if _nan(r.get("auc_low")) or _nan(r.get("auc_high")):
        return "–"
    return f"{r['auc_low']:.3f}–{r['auc_high']:.3f}"


def _prepost(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    conf, perf = [], []
    for _, r in results.iterrows():
        name = r["model"]
        conf.append({"Model": name, "TP": fmt(r["tp"]), "FP": fmt(r["fp"]), "TN": fmt(r["tn"]),
                     "FN": fmt(r["fn"]), "Accuracy (%)": fmt_pct(r["accuracy"]),
                     "Sensitivity": fmt(r["sensitivity"]), "Specificity": fmt(r["specificity"]),
                     "PPV": fmt(r["ppv"]), "NPV": fmt(r["npv"])})
        perf.append({"Model": name, "AUC (95% CI)": fmt_ci(r["auc"], r["auc_low"], r["auc_high"]),
                     "C-index (95% CI)": fmt_ci(r["c_index"], r["c_low"], r["c_high"]),
                     "Test patients (events)": f"{fmt(r['n_test'])} ({fmt(r['n_pos'])})"})
    return {"main": pd.DataFrame(perf), "confusion": pd.DataFrame(conf)}


def _units(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    runs = results[results["source"] == "run"]
    avg = backbone_average(results, ["subset", "unit"]).set_index(["subset", "unit"])
    rows = []
    for (subset, unit), grp in runs.groupby(["subset", "unit"], sort=False):
        for i, (_, r) in enumerate(grp.iterrows()):
            rows.append({"Model": r["subset_label"] if i == 0 else "",
                         "Unit": ("Image" if unit == "image" else "Patient") if i == 0 else "",
                         "Network": r["backbone"], "ACC": fmt(r["accuracy"]),
                         "Se": fmt(r["sensitivity"]), "Sp": fmt(r["specificity"]),
                         "AUC": fmt(r["auc"]), "95% CI": _ci_only(r),
                         "Test patients (residual)": f"{fmt(r['n_test'])} ({fmt(r['n_pos'])})"})
        a = avg.loc[(subset, unit)]
        rows.append({"Model": "", "Unit": "", "Network": "aAUC (SD)", "ACC": "", "Se": "", "Sp": "",
                     "AUC": _aauc_text(a["aauc"], a["sd"]), "95% CI": "", "Test patients (residual)": ""})
    others = results[results["source"].isin(("tnm",) + COMPARATOR_SOURCES)]
    for _, r in others.iterrows():
        rows.append({"Model": r["subset_label"], "Unit": "", "Network": r["model"],
                     "ACC": fmt(r["accuracy"]), "Se": fmt(r["sensitivity"]), "Sp": fmt(r["specificity"]),
                     "AUC": fmt(r["auc"]), "95% CI": _ci_only(r),
                     "Test patients (residual)": f"{fmt(r['n_test'])} ({fmt(r['n_pos'])})"})
    return {"main": pd.DataFrame(rows)}


def _metastasis(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    runs = results[results["source"] == "run"]
    kinds = list(dict.fromkeys(runs["kind"].dropna()))
    rows = []
    for group, grp in runs.groupby("group", sort=False):
        for backbone, bgrp in grp.groupby("backbone", sort=False):
            row = {"Dataset": group, "Model": backbone}
            for k in kinds:
                r = bgrp[bgrp["kind"] == k]
                row[f"AUC {k}"] = fmt_ci(*r[["auc", "auc_low", "auc_high"]].iloc[0]) if len(r) else "–"
            for k in kinds:
                r = bgrp[bgrp["kind"] == k]
                row[f"Accuracy (%) {k}"] = fmt_pct(r["accuracy"].iloc[0]) if len(r) else "–"
            rows.append(row)
        row = {"Dataset": group, "Model": "Average"}
        for k in kinds:
            row[f"AUC {k}"] = fmt(grp.loc[grp["kind"] == k, "auc"].mean())
        for k in kinds:
            row[f"Accuracy (%) {k}"] = fmt_pct(grp.loc[grp["kind"] == k, "accuracy"].mean())
        rows.append(row)
    for _, r in results[results["source"].isin(("tnm",) + COMPARATOR_SOURCES)].iterrows():
        row = {"Dataset": r["model"], "Model": "–" if r["source"] == "tnm" else _baseline_model(r)}
        for i, k in enumerate(kinds):
            row[f"AUC {k}"] = fmt_ci(r["auc"], r["auc_low"], r["auc_high"]) if i == 0 else ""
        for i, k in enumerate(kinds):
            row[f"Accuracy (%) {k}"] = fmt_pct(r["accuracy"]) if i == 0 else ""
        rows.append(row)
    return {"main": pd.DataFrame(rows)}


def _generic(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rows = [{"Model": r["model"], "Test patients": fmt(r["n_test"]),
             "AUC (95% CI)": fmt_ci(r["auc"], r["auc_low"], r["auc_high"]),
             "Sensitivity": fmt(r["sensitivity"]), "Specificity": fmt(r["specificity"]),
             "F1": fmt(r["f1"]), "Accuracy (%)": fmt_pct(r["accuracy"]),
             "C-index (95% CI)": fmt_ci(r["c_index"], r["c_low"], r["c_high"])}
            for _, r in results.iterrows()]
    return {"main": pd.DataFrame(rows)}


_LAYOUTS = {"expansion": _expansion, "prepost": _prepost, "units": _units,
            "metastasis": _metastasis, "generic": _generic}


def cv_table(results: pd.DataFrame) -> pd.DataFrame:
    """Cross-validated studies: per ROI dataset and backbone, the pooled out-of-fold AUC with
    its DeLong 95% CI and the per-fold AUC mean ± SD (TNM scores: pooled AUC only)."""
    results = results.reindex(columns=RESULT_COLUMNS)
    rows = []
    for _, r in results.iterrows():
        folds = "" if _nan(r["fold_auc_mean"]) else (
            f"{r['fold_auc_mean']:.3f} ± {r['fold_auc_sd']:.3f}" if not _nan(r["fold_auc_sd"])
            else f"{r['fold_auc_mean']:.3f}")
        rows.append({"Dataset": r["roi_label"] if r["source"] != "tnm" else r["model"],
                     "Model": r["backbone"], "Patients (label 1)": f"{fmt(r['n_test'])} ({fmt(r['n_pos'])})",
                     "Pooled out-of-fold AUC (95% CI)": fmt_ci(r["auc"], r["auc_low"], r["auc_high"]),
                     "Per-fold AUC, mean ± SD": folds or "–",
                     "Folds": str(int(r["n_folds"])) if not _nan(r["n_folds"]) and r["source"] != "tnm" else "–"})
    return pd.DataFrame(rows)


def baseline_table(results: pd.DataFrame, models) -> pd.DataFrame:
    """The clinical baseline and combined model rows with how each was fitted: model, fitted on,
    evaluated patients (label 1), patients without a prediction, AUC (95% CI), C-index.

    Args:
        results: the study's results rows.
        models: the :class:`npcai.studies.baseline.BaselineModel` list (same subsets and kinds).
    """
    results = results.reindex(columns=RESULT_COLUMNS)
    rows = []
    for m in models:
        src = "baseline" if m.kind == "clinical" else "combined"
        r = results[(results["source"] == src) & (results["subset"] == m.subset)]
        if r.empty:
            continue
        r = r.iloc[0]
        rows.append({"Model": r["model"], "Fitted on": m.fitted_on, "How": m.description,
                     "Evaluated patients (label 1)": f"{fmt(r['n_test'])} ({fmt(r['n_pos'])})",
                     "Without a prediction (missing covariate)": str(m.n_unscored),
                     "AUC (95% CI)": fmt_ci(r["auc"], r["auc_low"], r["auc_high"]),
                     "C-index (95% CI)": fmt_ci(r["c_index"], r["c_low"], r["c_high"])})
    return pd.DataFrame(rows)


def main_tables(results: pd.DataFrame, layout: str) -> dict[str, pd.DataFrame]:
    """The paper-layout table(s) for ``layout``; ``"main"`` always, ``"confusion"`` for 001.

    A layout whose rows are missing (e.g. no TNM columns) still gives a table, with en dashes.
    """
    results = results.reindex(columns=RESULT_COLUMNS)
    tables = _LAYOUTS[layout](results)
    if layout != "generic":
        tables["all_models"] = _generic(results)["main"]
    return tables
