"""Evaluate one run folder on its test patients: what ``npcai evaluate RUN`` computes.

Honest by construction: the decision threshold is fixed on the *validation* patients
(Youden's J) and applied unchanged to the test patients; the test split selects nothing.
Every headline number carries a 95% CI: DeLong for AUC, Wilson for proportions, the
infinitesimal jackknife for the C-index, a patient-level bootstrap for F1 and for the
slice-level AUC (slices of one patient are not independent).

Writes ``RUN/metrics.json``, ``RUN/figures/roc.png`` and ``RUN/figures/confusion.png``
(for another split than test: ``metrics_<split>.json``, ``roc_<split>.png``, ...).

Examples:
    >>> m = evaluate_run("runs/r1")                         # doctest: +SKIP
    >>> m["patient"]["auc"]["auc"], m["binary"]["sensitivity"]["value"]   # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text
from npcai.stats.auc import auc_ci, roc_auc, youden_threshold
from npcai.stats.binary import binary_metrics
from npcai.stats.bootstrap import bootstrap_ci
from npcai.stats.calibration import calibration_intercept_slope
from npcai.stats.concordance import c_index_binary, harrell_c
from npcai.runs.folder import RunFolder, check_cohort, read_run

__all__ = ["evaluate_run", "evaluate_predictions", "run_survival", "run_clinical", "f1_score",
           "validation_threshold", "survival_c_index"]

log = logging.getLogger(__name__)


def f1_score(y_true, y_pred) -> float:
    """F1 of 0/1 predictions (2 TP / (2 TP + FP + FN)), from the one confusion count."""
    from npcai.stats.binary import confusion_matrix, metrics_from_confusion

    return metrics_from_confusion(confusion_matrix(y_true, y_pred)).f1


def run_clinical(run: RunFolder) -> pd.DataFrame | None:
    """The clinical table of the run's cohort (None when the config names no cohort); refuses a
    cohort whose patients or clinical data changed since the run recorded its id."""
    if run.cohort is None:
        return None
    from npcai.cohort.model import Cohort

    if not (Path(run.cohort) / "cohort.json").is_file():
        raise NpcaiError(f"run {run.name}: its cohort {run.cohort} is not found; "
                         "move the cohort back or train the run again")
    check_cohort(run.config, run.cohort, f"evaluating {run.name}")
    return Cohort.load(run.cohort).clinical()


def run_survival(run: RunFolder, clinical: pd.DataFrame | None) -> tuple[pd.DataFrame | None, str]:
    """(time, event) per patient for the run's endpoint, via ``npcai.cohort.endpoints``.

    Returns ``(None, reason)`` when the endpoint has no survival columns or the cohort lacks
    them; the reason goes into metrics.json instead of a number.
    """
    if clinical is None:
        return None, "the run names no cohort"
    if not run.endpoint:
        return None, "the run names no endpoint"
    from npcai.cohort.endpoints import NAMED_ENDPOINTS, endpoint_labels

    _, tcol, ecol = NAMED_ENDPOINTS.get(run.endpoint, (run.endpoint, None, None))
    if tcol is None:
        return None, f"endpoint {run.endpoint!r} has no survival time"
    if tcol not in clinical.columns or ecol not in clinical.columns:
        return None, f"the cohort's clinical.csv has no {tcol}/{ecol} columns for endpoint {run.endpoint!r}"
    ep = endpoint_labels(clinical, run.endpoint)
    if ep.survival is None:
        return None, f"endpoint {run.endpoint!r} has no survival data"
    # all patients with a time, not only those with a binary label (censored ones count in C)
    surv = pd.DataFrame({"time": pd.to_numeric(clinical[tcol], errors="coerce"),
                         "event": pd.to_numeric(clinical[ecol], errors="coerce")}).dropna()
    return surv, f"{tcol} / {ecol}"


def validation_threshold(val: pd.DataFrame | None, fixed: float | None = None, *,
                         default: float | None = 0.5, source: str | None = None) -> dict[str, Any]:
    """The decision threshold: ``fixed`` when given (``source`` says where it comes from,
    default "given (--threshold)"), else Youden's J on the validation patients (label, prob);
    ``default`` (said in ``source`` and logged) when they cannot fix one, or ``value`` None
    when ``default`` is None."""
    if fixed is not None:
        return {"value": float(fixed), "source": source or "given (--threshold)"}
    reason = None
    if val is None or val.empty:
        reason = "the run has no validation patients to fix a threshold on"
    elif val["label"].nunique() < 2:
        reason = (f"all {len(val)} validation patients have label {int(val['label'].iloc[0])}, "
                  "so Youden's threshold is undefined")
    else:
        y = val["label"].to_numpy().astype(int)
        try:
            cut = youden_threshold(y, val["prob"].to_numpy(), what="validation Youden threshold")
            return {"value": cut.threshold, "source": f"Youden's J on {len(y)} validation patients",
                    "validation": cut.to_dict()}
        except NpcaiError as exc:      # e.g. every validation score equal
            reason = str(exc)
    if default is None:
        return {"value": None, "source": f"none: {reason}"}
    log.warning("threshold %s: %s (pass --threshold to choose one)", default, reason)
    return {"value": float(default), "source": f"{default}: {reason}"}


def survival_c_index(prob: pd.Series, survival: pd.DataFrame, note: str = "") -> dict[str, Any]:
    """Harrell's C (with CI) of scores ``prob`` (by patient_id) against (time, event)."""
    sv = survival.loc[survival.index.intersection(prob.index)].dropna()
    try:
        c = harrell_c(sv["time"].to_numpy(), sv["event"].to_numpy().astype(int), prob.loc[sv.index].to_numpy(),
                      what="C-index", ids=list(sv.index))
        return {**c.to_dict(), "survival": note, "kind": "survival"}
    except NpcaiError as exc:
        return {"unavailable": str(exc), "survival": note}


def evaluate_predictions(test: pd.DataFrame, *, val: pd.DataFrame | None = None,
                         slices: pd.DataFrame | None = None, survival: pd.DataFrame | None = None,
                         survival_note: str = "", threshold: float | None = None,
                         threshold_source: str | None = None,
                         n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All metrics of patient predictions ``test`` (index patient_id; columns label, prob).

    Args:
        test: the evaluated patients' labels and probabilities.
        val: validation patients (label, prob) to fix the threshold on (Youden's J).
        slices: slice predictions of the same patients (patient_id, label, prob), optional.
        survival: (time, event) by patient_id for the C-index, optional.
        threshold: a fixed threshold instead of Youden on ``val``.
        threshold_source: where ``threshold`` comes from (default "given (--threshold)").
        n_boot: bootstrap resamples for the F1 and slice-AUC intervals (0 to skip them).
    """
    ids = list(test.index)
    y, p = test["label"].to_numpy(), test["prob"].to_numpy()
    out: dict[str, Any] = {"n_patients": int(len(y)), "n_label_1": int((y == 1).sum()),
                           "n_label_0": int((y == 0).sum())}
    out["patient"] = {"auc": auc_ci(y, p, what="patient-level AUC", ids=ids).to_dict()}
    thr = validation_threshold(val, threshold, source=threshold_source)
    out["threshold"] = thr
    bm = binary_metrics(y, p, thr["value"])
    out["binary"] = bm.to_dict()
    if n_boot:
        pred = (p > thr["value"]).astype(int)
        try:
            f1 = bootstrap_ci(f1_score, y, pred, n_boot=n_boot, seed=seed)
            out["binary"]["f1_ci"] = f1.to_dict()
        except NpcaiError as exc:
            out["binary"]["f1_ci"] = {"unavailable": str(exc)}
    if slices is not None and len(slices):
        sl = slices[slices["patient_id"].isin(ids)]
        s_y, s_p = sl["label"].to_numpy(), sl["prob"].to_numpy()
        block: dict[str, Any] = {"n_slices": int(len(sl)),
                                 "auc": auc_ci(s_y, s_p, what="slice-level AUC").to_dict(),
                                 "note": "DeLong treats slices as independent; the bootstrap over "
                                         "patients is the honest interval"}
        if n_boot:
            b = bootstrap_ci(roc_auc, s_y, s_p, groups=sl["patient_id"].to_numpy(), n_boot=n_boot,
                             seed=seed)
            block["auc_bootstrap_patients"] = b.to_dict()
        out["slice"] = block
    if survival is not None:
        out["c_index"] = survival_c_index(test["prob"], survival, survival_note)
    else:
        c = c_index_binary(y, p, ids=ids)
        out["c_index"] = {**c.to_dict(), "kind": "binary outcome (equals the AUC)",
                          "survival": survival_note or "no survival endpoint"}
    try:
        out["calibration"] = calibration_intercept_slope(y, p, ids=ids).to_dict()
    except NpcaiError as exc:
        out["calibration"] = {"unavailable": str(exc),
                              "brier": float(np.mean((p - y) ** 2))}
    return out


def evaluate_run(run_dir: str | Path, split: str | None = None, *, threshold: float | None = None,
                 n_boot: int = 1000, seed: int = 0, write: bool = True,
                 figures: bool = True, tnm: bool = True) -> dict[str, Any]:
    """Evaluate a run (or a prediction folder) on one split; writes RUN/metrics.json and
    RUN/figures/ when ``write``.

    Args:
        run_dir: a run folder from ``npcai train`` (or ``npcai ensemble``), or a prediction
            folder from ``npcai predict`` (external cohort).
        split: the split evaluated; default ``test`` for a run, ``external`` for predictions.
        threshold: fixed decision threshold; default Youden's J on the validation patients of
            the run (for predictions: of the run that made them; never refitted on them; for
            predictions of a cross-validated run: the threshold they record, the mean of the
            fold models' validation thresholds).
        n_boot: bootstrap resamples (F1 CI, slice AUC CI, ROC band); 0 skips them.
        seed: bootstrap seed.
        write: write metrics.json (the figures only when ``figures`` too).
        tnm: add the TNM baseline when the cohort has stage columns.

    Returns:
        the metrics as a dict (the content of metrics.json).
    """
    run = read_run(run_dir)
    if run.config.raw.get("task") == "survival":   # study 004's metrics per cohort (no threshold)
        from npcai.survival.deep.evaluate import evaluate_survival_run

        return evaluate_survival_run(run, write=write)
    split = split or run.default_split
    test = run.split_patients(split)
    unlabelled = test["label"].isna()
    if unlabelled.all():
        raise NpcaiError(f"{run.name}: none of the {len(test)} {split} patients has a label for endpoint "
                         f"{run.endpoint!r}; evaluation needs the endpoint in the cohort's clinical table")
    if unlabelled.any():
        log.warning("%s: %d %s patients have no label and are not evaluated", run.name, int(unlabelled.sum()), split)
        test = test[~unlabelled]
    test = test.assign(label=test["label"].astype(int))
    val = run.validation()
    if split == "val":
        log.warning("%s: evaluating on the validation split, which also fixed the threshold", run.path)
    try:
        clinical, no_clinical = run_clinical(run), None
    except NpcaiError as exc:      # e.g. the cohort was moved: the AUCs still stand, say what is missing
        if "is not the cohort" in str(exc):
            raise
        log.warning("%s; no C-index against survival and no TNM baseline", exc)
        clinical, no_clinical = None, str(exc)
    survival, note = run_survival(run, clinical)
    if no_clinical:
        note = no_clinical
    metrics: dict[str, Any] = {"run": run.name, "kind": run.config.kind, "split": split,
                               "endpoint": run.endpoint, "roi": run.roi, "backbone": run.backbone}
    if run.config.kind == "predictions":
        metrics["source_run"] = (run.config.source_run or {}).get("name")
    threshold_source = None
    recorded = run.recorded_threshold()
    if threshold is None and recorded is not None:   # a cross-validated run's: mean of its fold thresholds
        threshold, threshold_source = recorded["value"], recorded.get("source")
    metrics.update(evaluate_predictions(test, val=val if len(val) else None, slices=run.slices,
                                        survival=survival, survival_note=note, threshold=threshold,
                                        threshold_source=threshold_source, n_boot=n_boot, seed=seed))
    if tnm:
        metrics["tnm"] = _tnm_block(clinical, test, survival, run.name) if no_clinical is None else \
            {"unavailable": no_clinical}
    if write:
        # figures first, metrics.json last: a failure (full disk, no permission) leaves no
        # metrics file that looks like a finished evaluation, and no figures folder it created
        fig_dir_is_new = not (run.path / "figures").exists()
        try:
            if figures:
                write_run_figures(run, test, metrics, n_boot=min(n_boot, 500) if n_boot else 0, seed=seed)
            atomic_write_text(run.path / f"metrics{_suffix(split, run)}.json", json.dumps(_jsonable(metrics), indent=1))
        except BaseException:
            if fig_dir_is_new:
                shutil.rmtree(run.path / "figures", ignore_errors=True)
            raise
    return metrics


def _tnm_block(clinical: pd.DataFrame | None, test: pd.DataFrame, survival: pd.DataFrame | None,
               name: str) -> dict[str, Any]:
    from npcai.stats.tnm import tnm_baseline

    if clinical is None:
        return {"unavailable": "the run names no cohort"}
    try:
        res = tnm_baseline(clinical, test["label"], survival, models={name: test["prob"]})
    except NpcaiError as exc:
        return {"unavailable": str(exc)}
    return res.to_dict()


def write_run_figures(run: RunFolder, test: pd.DataFrame, metrics: dict, *, n_boot: int = 500,
                      seed: int = 0) -> list[Path]:
    """RUN/figures/roc.png (with bootstrap CI band) and RUN/figures/confusion.png."""
    from npcai.stats.binary import ConfusionMatrix
    from npcai.stats.figures import plot_confusion, plot_roc

    fig_dir = run.path / "figures"
    source = f" by run {metrics['source_run']}" if metrics.get("source_run") else ""
    what = f"{run.name}{source} ({metrics['split']}, {metrics['n_patients']} patients)"
    sfx = _suffix(metrics["split"], run)
    roc = plot_roc(fig_dir / f"roc{sfx}.png", {run.name: (test["label"].to_numpy(), test["prob"].to_numpy())},
                   title=f"ROC, patient level: {what}", ci_band=n_boot > 0, n_boot=max(n_boot, 1),
                   seed=seed)
    cm = ConfusionMatrix(**metrics["binary"]["confusion"])
    names = _class_names(run.endpoint)
    conf = plot_confusion(fig_dir / f"confusion{sfx}.png", cm, class_names=names,
                          title=f"Confusion matrix at threshold {metrics['threshold']['value']:.3f}\n{what}")
    return [roc, conf]


def _suffix(split: str, run: RunFolder | None = None) -> str:
    """"" for the folder's default split (metrics.json), "_<split>" otherwise (metrics_val.json)."""
    default = run.default_split if run is not None else "test"
    return "" if split == default else f"_{split}"


def _class_names(endpoint: str | None) -> tuple[str, str]:
    return {"pfs-median": ("low risk (0)", "high risk (1)"),
            "distant-metastasis": ("no metastasis (0)", "metastasis (1)"),
            "residual-tumour": ("no residual (0)", "residual (1)")}.get(endpoint or "", ("label 0", "label 1"))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
