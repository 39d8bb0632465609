"""Patient-level stratified K-fold cross-validation: K ordinary runs and the out-of-fold
predictions of every patient.

Each fold's patients are held out (split ``test`` of that fold's run); the fold's validation
patients — early stopping, checkpoint selection and the decision threshold — are carved from
the *other* folds, so nothing about a held-out patient selects anything. Every labelled
patient is predicted exactly once, by the model that never saw it.

::

    RUN/
      config.yaml                 kind: cv; options (TrainConfig, with folds and fold_seed), fold source
      split.csv                   patient_id, split (= oof), fold (1..K), label
      predictions_patients.csv    patient_id, split (= oof), fold, label, prob, n_slices, threshold
      predictions_slices.csv      the folds' held-out slices with split = oof and fold
      summary.json                per fold: patients, positives, best epoch, validation AUC, held-out AUC
      folds/fold1 .. foldK/       one complete `npcai train` run folder per fold

``threshold`` is the Youden threshold of the patient's fold, fixed on that fold's validation
patients. :func:`evaluate_cv` reports the pooled out-of-fold AUC with its DeLong CI, the
per-fold AUC mean ± SD and the binary metrics at the folds' own thresholds.

Examples:
    >>> cfg = TrainConfig(cohort="cohort", roi="seg", endpoint="pfs-median", backbone="resnet18",
    ...                   pretrained=False, epochs=5, folds=5)          # doctest: +SKIP
    >>> cv = train_folds(cfg, "runs/cv5")                               # doctest: +SKIP
    >>> evaluate_cv("runs/cv5").pooled_auc                              # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.progress import track

__all__ = ["CvResult", "CvEvaluation", "train_folds", "evaluate_cv", "is_cv_run", "fold_table",
           "fold_validation_threshold",
           "oof_metrics", "fold_threshold_metrics", "check_same_folds", "fold_run_dirs", "CV_KIND", "OOF"]

log = logging.getLogger(__name__)
CV_KIND = "cv"
OOF = "oof"


@dataclass
class CvResult:
    """What :func:`train_folds` returns."""

    run_dir: Path
    n_patients: int
    n_positive: int
    fold_aucs: list[float]
    oof_auc: float
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class CvEvaluation:
    """Metrics of a cross-validated run (the content of its ``metrics.json``).

    Attributes:
        pooled_auc: out-of-fold AUC over all patients with DeLong SE and 95% CI
            (:class:`npcai.stats.auc.AucResult`).
        folds: one row per fold: fold, n, n_pos, auc (held-out patients), threshold.
        fold_auc_mean, fold_auc_sd: mean and SD (n - 1) of the per-fold AUCs.
        binary: :class:`npcai.stats.binary.BinaryMetrics` of the pooled patients, each called
            label 1 when its probability exceeds its own fold's validation threshold.
    """

    run: str
    endpoint: str | None
    n_patients: int
    n_label_1: int
    pooled_auc: Any
    folds: pd.DataFrame
    fold_auc_mean: float
    fold_auc_sd: float
    binary: Any

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "split": OOF, "endpoint": self.endpoint, "n_patients": self.n_patients,
                "n_label_1": self.n_label_1, "n_label_0": self.n_patients - self.n_label_1,
                "patient": {"auc": self.pooled_auc.to_dict()},
                "folds": self.folds.to_dict(orient="records"),
                "fold_auc": {"mean": self.fold_auc_mean, "sd": self.fold_auc_sd, "k": int(len(self.folds))},
                "threshold": {"source": "per fold: Youden's J on that fold's validation patients",
                              "values": self.folds["threshold"].tolist()},
                "binary": {**self.binary.to_dict(), "threshold": "per fold (see threshold.values)"}}


# ---------------------------------------------------------------------------- reading
def is_cv_run(run_dir: str | Path) -> bool:
    """True for a run folder written by :func:`train_folds` (``kind: cv``)."""
    from npcai.runs import CONFIG, read_config

    path = Path(run_dir)
    return (path / CONFIG).is_file() and read_config(path).kind == CV_KIND


def fold_run_dirs(run_dir: str | Path) -> list[Path]:
    """The fold run folders of a cross-validated run, fold 1 first."""
    from npcai.runs import read_config

    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if cfg.kind != CV_KIND:
        raise NpcaiError(f"{run_dir}: not a cross-validated run (kind {cfg.kind!r})")
    return [run_dir / p for p in cfg.raw.get("fold_runs", [])]


def _oof_predictions(run_dir: Path) -> pd.DataFrame:
    from npcai.runs import read_predictions

    pred = read_predictions(run_dir).patients
    if "fold" not in pred.columns or not (pred["split"] == OOF).all():
        raise NpcaiError(f"run {run_dir}: its patient predictions are not out-of-fold "
                         f"(need split {OOF} and a fold column); train it again with folds")
    return pred


# ---------------------------------------------------------------------------- training
def _workdir(out: Path, resume: bool, overwrite: bool, cohort: str) -> Path:
    """The partial folder the cross-validation is built in (kept on resume; a finished run is
    copied back to it, refused when its cohort changed)."""
    from npcai.fsutil import OUTPUT_MARKER, check_replaceable
    from npcai.runs import CONFIG, check_cohort, partial_dir, read_config

    work = partial_dir(out)
    if resume:
        if work.is_dir():
            if (work / CONFIG).is_file():
                check_cohort(read_config(work), cohort, "resume")
            log.info("resuming the interrupted cross-validation in %s", work)
            return work
        if (out / CONFIG).is_file():
            check_cohort(read_config(out), cohort, "resume")
            shutil.copytree(out, work)
            (work / OUTPUT_MARKER).unlink(missing_ok=True)
            return work
        raise NpcaiError(f"{out}: nothing to resume; train without resume")
    check_replaceable(out, overwrite)   # a non-empty OUT is replaced only when npcai wrote it
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work


def _fold_assignment(cfg, lp, work: Path, folds_from) -> tuple[pd.Series, str]:
    from npcai.cohort.splits import assign_folds, read_split, reuse_folds
    from npcai.runs import SPLIT

    def resume_split(folder: Path) -> bool:
        return (folder / SPLIT).is_file()

    if folds_from is not None:
        folds = reuse_folds(folds_from, lp.labels)
        source = f"reused from {Path(folds_from).resolve()}"
        if folds.nunique() != cfg.folds:
            raise NpcaiError(f"{folds_from}: has {folds.nunique()} folds for these patients, not {cfg.folds}; "
                             f"use the same number of folds")
    else:
        folds = assign_folds(lp.labels, cfg.folds, seed=cfg.fold_seed, strata=lp.strata)
        source = f"stratified by label{' and centre' if lp.strata is not None else ''}, seed {cfg.fold_seed}"
    if resume_split(work):      # resume: the folds of the interrupted run
        before = read_split(work)["fold"].astype(int)
        if not before.sort_index().equals(folds.sort_index()):
            raise NpcaiError(f"{work}: the interrupted run has other folds than these options give; "
                             f"train again without resume")
    return folds, source


def fold_validation_threshold(val: pd.DataFrame, fold: int) -> float:
    """A fold's threshold: Youden's J on its validation patients (``label``, ``prob``), 0.5
    with a warning when they cannot give one (e.g. one class only). Shared by every kind of
    cross-validated run (deep and radiomics)."""
    from npcai.stats.auc import youden_threshold

    try:
        return float(youden_threshold(val["label"].to_numpy(), val["prob"].to_numpy(),
                                      what=f"fold {fold} validation threshold").threshold)
    except NpcaiError as exc:
        log.warning("fold %d: %s; its threshold is 0.5", fold, exc)
        return 0.5


def train_folds(config, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                mlflow: bool = False, callbacks: list | None = None,
                folds_from: str | os.PathLike | None = None) -> CvResult:
    """K-fold cross-validation of ``config`` (``config.folds`` = K) into the run folder ``out``.

    Args:
        config: :class:`npcai.models.train.TrainConfig` with ``folds`` >= 2.
        out: the cross-validated run folder (built in ``.OUT.partial`` and renamed when complete).
        resume: continue an interrupted cross-validation (finished folds are kept).
        overwrite: replace an existing ``out``.
        mlflow: log each fold to MLflow too.
        callbacks: extra Lightning callbacks given to every fold's training (e.g. for tests).
        folds_from: reuse the fold assignment of this earlier cross-validated run, so that runs
            are compared on the same folds.

    Returns:
        :class:`CvResult`.
    """
    from npcai.cohort.model import Cohort
    from npcai.cohort.splits import fold_split
    from npcai.runs import is_finished, read_summary
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.fsutil import check_output_path, replace_output_dir
    from npcai.models.train import labelled_patients, train
    from npcai.runs import CONFIG, RUN_FORMAT, package_versions, partial_dir, read_config, read_run, write_run
    from npcai.stats.auc import roc_auc

    cfg = config.validate()
    if not cfg.folds:
        raise NpcaiError("folds: give the number of folds (at least 2) for cross-validation")
    check_output_path(out, [cfg.cohort, cfg.weights, folds_from])
    out = Path(out).resolve()
    cohort = Cohort.load(cfg.cohort)
    roi = RoiDataset.open(cfg.cohort, cfg.roi)
    lp = labelled_patients(cfg, cohort, roi)
    if folds_from is not None:
        check_cohort_of(folds_from, cfg.cohort)
    work = _workdir(out, resume, overwrite, cfg.cohort)
    folds, source = _fold_assignment(cfg, lp, work, folds_from)
    split_df = pd.DataFrame({"patient_id": folds.index, "split": OOF, "fold": folds.to_numpy(),
                             "label": lp.labels.reindex(folds.index).to_numpy()})
    write_run(work, split=split_df)

    fold_cfg = dataclasses.replace(cfg, folds=None, split_from=None, test_where=None)
    patients, slices, rows = [], [], []
    for k in track(range(1, cfg.folds + 1), f"Cross-validation ({cfg.folds} folds)"):
        fold_dir = work / "folds" / f"fold{k}"
        if not (resume and is_finished(fold_dir)):
            split = fold_split(folds, k, lp.labels, val_fraction=cfg.val_fraction, seed=cfg.seed,
                               strata=lp.strata)
            again = resume and (partial_dir(fold_dir) / "checkpoints" / "last.ckpt").is_file()
            train(fold_cfg, fold_dir, resume=again, overwrite=True, mlflow=mlflow, callbacks=callbacks,
                  split=split)
        run = read_run(fold_dir)
        p = run.patients
        held = p[p["split"] == "test"]
        if set(held["patient_id"]) != set(folds.index[folds == k]):
            raise NpcaiError(f"{fold_dir}: its held-out patients are not fold {k}; train again without resume")
        threshold = fold_validation_threshold(p[p["split"] == "val"], k)
        patients.append(held.assign(split=OOF, fold=k, threshold=threshold))
        if run.slices is not None:
            sl = run.slices
            slices.append(sl[sl["split"] == "test"].assign(split=OOF, fold=k))
        summ = read_config(fold_dir).raw  # fold config (for the cohort and ROI blocks of the parent's config)
        fsum = read_summary(fold_dir)
        auc = roc_auc(held["label"], held["prob"]) if held["label"].nunique() == 2 else float("nan")
        rows.append({"fold": k, "run": f"folds/fold{k}", "patients": int(len(held)),
                     "label_1": int(held["label"].sum()), "best_epoch": fsum.get("best_epoch"),
                     "val_auc": fsum.get("val_auc"), "val_patients": fsum["splits"]["val"]["patients"],
                     "train_patients": fsum["splits"]["train"]["patients"], "auc": float(auc),
                     "threshold": threshold})
    oof = pd.concat(patients, ignore_index=True).sort_values("patient_id")
    cols = ["patient_id", "split", "fold", "label", "prob", "n_slices", "threshold"]
    oof = oof[[c for c in cols if c in oof.columns]]
    pooled = roc_auc(oof["label"], oof["prob"])
    aucs = [r["auc"] for r in rows]
    summary = {
        "endpoint": cfg.endpoint, "where": cfg.where, "folds": cfg.folds, "fold_seed": cfg.fold_seed,
        "fold_source": source, "patients": int(len(oof)), "label_1": int(oof["label"].sum()),
        "excluded": {"count": int(sum(lp.excluded.values())), "reasons": lp.excluded},
        "per_fold": rows, "oof_auc": float(pooled),
        "fold_auc_mean": float(np.nanmean(aucs)), "fold_auc_sd": float(np.nanstd(aucs, ddof=1)),
        "selection": "each fold: best epoch and threshold on validation patients carved from the other folds; "
                     "its held-out patients predicted once after selection",
    }
    config_doc = {
        "format": RUN_FORMAT, "kind": CV_KIND, "options": dataclasses.asdict(cfg),
        "folds": {"k": cfg.folds, "seed": cfg.fold_seed, "source": source},
        "fold_runs": [r["run"] for r in rows], "seed": cfg.seed, "versions": package_versions(),
        "cohort": summ.get("cohort"), "roi": summ.get("roi"),
        "reproduce": f"npcai train --config {out / CONFIG} --out NEW_RUN"
                     + (f" --folds-from {out}" if folds_from is not None else ""),
    }
    write_run(work, config=config_doc, patients=oof, summary=summary,
              slices=pd.concat(slices, ignore_index=True).sort_values("roi_row") if slices else None)
    replace_output_dir(work, out)
    return CvResult(out, int(len(oof)), int(oof["label"].sum()), aucs, float(pooled), summary)


def check_cohort_of(run_dir: str | os.PathLike, cohort: str | os.PathLike) -> None:
    """Refuse folds reused from a run trained on another cohort (or a changed one)."""
    from npcai.runs import check_cohort, read_config

    check_cohort(read_config(run_dir), cohort, f"reusing the folds of {run_dir}")


# ---------------------------------------------------------------------------- evaluation
def fold_table(pred: pd.DataFrame) -> pd.DataFrame:
    """Per fold: n, n_pos and the AUC of its held-out patients (NaN when one class)."""
    from npcai.stats.auc import roc_auc

    rows = []
    for k, g in pred.groupby("fold", sort=True):
        auc = roc_auc(g["label"], g["prob"]) if g["label"].nunique() == 2 else float("nan")
        rows.append({"fold": int(k), "n": int(len(g)), "n_pos": int(g["label"].sum()), "auc": float(auc),
                     "threshold": float(g["threshold"].iloc[0]) if "threshold" in g else float("nan")})
    return pd.DataFrame(rows, columns=["fold", "n", "n_pos", "auc", "threshold"])


def fold_threshold_metrics(pred: pd.DataFrame):
    """:class:`npcai.stats.binary.BinaryMetrics` (Wilson CIs) of out-of-fold predictions, each
    patient called label 1 when its probability exceeds its own fold's validation threshold
    (column ``threshold``)."""
    from npcai.stats.binary import binary_metrics

    if "threshold" not in pred.columns:
        raise NpcaiError("out-of-fold predictions: no threshold column; train the run again with folds")
    called = (pred["prob"].to_numpy() > pred["threshold"].to_numpy()).astype(float)
    return binary_metrics(pred["label"].to_numpy().astype(int), called, 0.5)


def evaluate_cv(run_dir: str | Path, *, write: bool = True, figures: bool = True, n_boot: int = 500,
                seed: int = 0) -> CvEvaluation:
    """Pooled out-of-fold AUC (DeLong CI), per-fold AUC mean ± SD and binary metrics at the
    folds' validation thresholds; writes ``RUN/metrics.json`` when ``write`` and, with
    ``figures``, ``RUN/figures/roc.png`` (pooled out-of-fold ROC, bootstrap band of ``n_boot``)."""
    import json

    from npcai.fsutil import atomic_write_text
    from npcai.runs import read_config
    from npcai.stats.auc import auc_ci

    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    pred = _oof_predictions(run_dir)
    y = pred["label"].to_numpy()
    pooled = auc_ci(y, pred["prob"].to_numpy(), what="pooled out-of-fold AUC", ids=list(pred["patient_id"]))
    table = fold_table(pred)
    aucs = table["auc"].dropna()
    binary = fold_threshold_metrics(pred)
    ev = CvEvaluation(run=run_dir.resolve().name, endpoint=cfg.endpoint,
                      n_patients=int(len(y)), n_label_1=int(y.sum()), pooled_auc=pooled, folds=table,
                      fold_auc_mean=float(aucs.mean()) if len(aucs) else float("nan"),
                      fold_auc_sd=float(aucs.std(ddof=1)) if len(aucs) > 1 else float("nan"), binary=binary)
    if write:
        atomic_write_text(run_dir / "metrics.json", json.dumps(_jsonable(ev.to_dict()), indent=1))
        if figures:
            from npcai.stats.figures import plot_roc

            plot_roc(run_dir / "figures" / "roc.png", {"pooled out-of-fold": (y, pred["prob"].to_numpy())},
                     title=f"ROC, out-of-fold predictions of {len(y)} patients\n{ev.run} ({len(table)} folds)",
                     ci_band=n_boot > 0, n_boot=max(n_boot, 1), seed=seed)
    return ev


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def oof_metrics(pred: pd.DataFrame) -> dict[str, Any]:
    """A study's results-row metrics of out-of-fold predictions (``split == "oof"``): pooled
    AUC with DeLong CI, per-fold AUC mean and SD, and the confusion counts and rates at the
    folds' own validation thresholds."""
    from npcai.stats.auc import auc_ci

    oof = pred[pred["split"] == OOF]
    y = oof["label"].to_numpy().astype(int)
    out: dict[str, Any] = {"n_test": int(len(oof)), "n_pos": int(y.sum()), "threshold": float("nan")}
    try:
        a = auc_ci(y, oof["prob"].to_numpy(), what="pooled out-of-fold AUC")
        out.update(auc=a.auc, auc_low=a.low, auc_high=a.high)
    except NpcaiError as exc:
        log.warning("pooled out-of-fold AUC left empty: %s", exc)
    table = fold_table(oof) if "fold" in oof.columns else fold_table(oof.iloc[:0].assign(fold=0))
    aucs = table["auc"].dropna()
    out.update(fold_auc_mean=float(aucs.mean()) if len(aucs) else float("nan"),
               fold_auc_sd=float(aucs.std(ddof=1)) if len(aucs) > 1 else float("nan"), n_folds=int(len(table)))
    if "threshold" in oof.columns and len(oof):
        bm = fold_threshold_metrics(oof)
        cm = bm.confusion
        val = lambda m: m.value if m.value is not None else float("nan")  # noqa: E731
        out.update(tp=cm.tp, fp=cm.fp, tn=cm.tn, fn=cm.fn, sensitivity=val(bm.sensitivity),
                   specificity=val(bm.specificity), precision=val(bm.ppv), ppv=val(bm.ppv), npv=val(bm.npv),
                   accuracy=val(bm.accuracy), f1=bm.f1 if bm.f1 is not None else float("nan"))
    return out


def check_same_folds(run_dirs: list[str | Path]) -> None:
    """Refuse (one line) cross-validated runs whose patients or folds differ: a paired
    comparison of out-of-fold predictions needs every patient held out by the same fold."""
    from npcai.cohort.splits import read_split

    first = None
    for d in run_dirs:
        if not is_cv_run(d):
            raise NpcaiError(f"{d}: not a cross-validated run; compare out-of-fold predictions only "
                             f"between runs trained with folds")
        folds = read_split(d)["fold"].astype(int).sort_index()
        if first is None:
            first = (Path(d), folds)
            continue
        if not folds.equals(first[1]):
            common = folds.index.intersection(first[1].index)
            moved = int((folds.loc[common] != first[1].loc[common]).sum())
            raise NpcaiError(f"runs {first[0].name} and {Path(d).name} were cross-validated on different folds "
                             f"({moved} patients in another fold, {len(folds.index.symmetric_difference(first[1].index))} "
                             f"in only one run); train the second with folds reused from the first")
