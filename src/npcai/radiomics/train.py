"""``npcai radiomics train``: the elastic-net radiomics model as an ordinary run folder.

The run is written through :mod:`npcai.runs` like a deep run, so ``npcai evaluate RUN`` and
``npcai compare RUN DEEP_RUN`` (paired DeLong) treat it like any other:

* one split (``kind: train``): drawn from the seed like ``npcai train`` (same fractions,
  stratified by label and centre: the same seed on the same labelled patients gives the same
  split as a deep run), or reused from another run with ``split_from``; the model is fitted on
  the ``train`` patients, its penalty and the decision threshold chosen on the ``val`` patients,
  and the ``test`` (and ``test_external``) patients are predicted once;
* K folds (``kind: cv``): every fold is a complete one-split run in ``folds/foldK`` (the held
  out fold is its test split, validation carved from the other folds exactly as
  :func:`npcai.models.folds.train_folds` does, so a deep CV run with the same folds has the same
  validation patients); the parent holds the out-of-fold predictions with each fold's Youden
  threshold. ``split_from`` a cross-validated run (or ``folds_from``) reuses its folds.

The configuration records ``method: radiomics`` and ``options.backbone`` =
:data:`MODEL_NAME`; such a run has no network (explain, predict and serve refuse it).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.progress import track
from npcai.radiomics.extractor import ExtractionSettings
from npcai.radiomics.model import DEFAULT_C_GRID, FittedModel, ModelSettings, fit_elastic_net

__all__ = ["MODEL_NAME", "METHOD", "RadiomicsConfig", "RadiomicsResult", "train_radiomics", "is_radiomics_run"]

log = logging.getLogger(__name__)

METHOD = "radiomics"
#: the run's ``options.backbone`` (what ``npcai compare`` shows as the model)
MODEL_NAME = "radiomics-elasticnet"


@dataclass
class RadiomicsConfig:
    """Options of a radiomics run (recorded as ``options`` in its config).

    Attributes:
        cohort, roi, endpoint: as ``npcai train`` (the ROI's region is what the features describe).
        where, test_where: patient filters (``test_where``: matching patients all go to test_external).
        seed, val_fraction, test_fraction: the drawn split (as ``npcai train``).
        split_from: reuse this run's split (a cross-validated run: its folds).
        folds, fold_seed, folds_from: K-fold cross-validation (folds reused from ``folds_from``).
        stratify_centre: stratify splits and folds by centre too.
        l1_ratio, c_grid, max_correlation: :class:`~npcai.radiomics.model.ModelSettings`.
        bin_count: grey-level bins of the features (:class:`~npcai.radiomics.extractor.ExtractionSettings`).
    """

    cohort: str
    roi: str
    endpoint: str
    where: str | None = None
    test_where: str | None = None
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_from: str | None = None
    folds: int | None = None
    fold_seed: int = 0
    folds_from: str | None = None
    stratify_centre: bool = True
    l1_ratio: float = 0.5
    c_grid: tuple[float, ...] = DEFAULT_C_GRID
    max_correlation: float = 0.9
    bin_count: int = 32
    backbone: str = MODEL_NAME
    unit: str = "patient"

    def validate(self) -> "RadiomicsConfig":
        from npcai.cohort.filters import parse_filter

        for text in (self.where, self.test_where):
            if text:
                parse_filter(text)
        if self.folds is not None and int(self.folds) < 2:
            raise NpcaiError(f"--folds {self.folds}: cross-validation needs at least 2 folds")
        if self.folds and self.test_where:
            raise NpcaiError("--folds and --test-where are exclusive: cross-validate inside one cohort, or hold "
                             "out the filtered patients with one split")
        if self.folds and self.split_from:
            raise NpcaiError("--folds with --split-from: give --folds-from CVRUN to reuse folds, or --split-from "
                             "a cross-validated run alone")
        if self.folds_from and not self.folds:
            raise NpcaiError("--folds-from needs --folds K")
        if not 0 <= self.test_fraction < 1 or not 0 < self.val_fraction < 1:
            raise NpcaiError(f"--val-fraction {self.val_fraction} / --test-fraction {self.test_fraction}: "
                             "fractions must be in [0, 1) (validation above 0: it chooses the penalty)")
        self.c_grid = tuple(float(c) for c in self.c_grid)
        self.model_settings()
        self.extraction_settings()
        return self

    def model_settings(self) -> ModelSettings:
        return ModelSettings(l1_ratio=self.l1_ratio, c_grid=tuple(self.c_grid),
                             max_correlation=self.max_correlation, seed=self.seed)

    def extraction_settings(self) -> ExtractionSettings:
        return ExtractionSettings(bin_count=self.bin_count)


@dataclass
class RadiomicsResult:
    """What :func:`train_radiomics` returns.

    Attributes:
        run_dir: the run folder.
        kind: ``train`` or ``cv``.
        auc: test AUC (one split) or pooled out-of-fold AUC (folds).
        n_test: patients in that AUC.
        val_auc: validation AUC of the chosen penalty (one split; mean over folds for cv).
        fold_aucs: per-fold held-out AUC (cv).
        n_features: features entering the model; n_selected: non-zero coefficients (one split).
        summary: the run's summary.
    """

    run_dir: Path
    kind: str
    auc: float
    n_test: int
    val_auc: float
    fold_aucs: list[float] = field(default_factory=list)
    n_features: int = 0
    n_selected: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def is_radiomics_run(config) -> bool:
    """True for a :class:`~npcai.runs.RunConfig` written by this module."""
    return (config.raw or {}).get("method") == METHOD


# ---------------------------------------------------------------------------- data
@dataclass
class _Labelled:
    clinical: pd.DataFrame
    labels: pd.Series
    excluded: dict[str, int]
    endpoint: Any
    strata: pd.Series | None


def _labelled(cfg: RadiomicsConfig, cohort, table) -> _Labelled:
    """The endpoint's labels of the (filtered) patients that have features."""
    from npcai.cohort.endpoints import endpoint_labels, filter_patients

    clinical = filter_patients(cohort.clinical(), cfg.where)
    ep = endpoint_labels(clinical, cfg.endpoint)
    excluded = ep.excluded_counts()
    have = set(table.features.index)
    missing = [p for p in ep.labels.index if p not in have]
    if missing:
        excluded[f"no radiomics features in ROI {cfg.roi}"] = len(missing)
    labels = ep.labels.drop(missing).sort_index()
    if labels.empty:
        raise NpcaiError(f"ROI {cfg.roi}: none of the {len(ep.labels)} labelled patients has radiomics features; "
                         "check --roi and --where")
    strata = clinical["centre"].reindex(labels.index) if cfg.stratify_centre and "centre" in clinical.columns \
        else None
    return _Labelled(clinical, labels, excluded, ep, strata)


def _split(cfg: RadiomicsConfig, lab: _Labelled) -> tuple[pd.Series, str]:
    from npcai.cohort.endpoints import filter_patients
    from npcai.cohort.splits import reuse_split, split_patients
    from npcai.runs import check_cohort, read_config

    if cfg.split_from:
        check_cohort(read_config(cfg.split_from), cfg.cohort, f"--split-from {cfg.split_from}")
        return reuse_split(cfg.split_from, lab.labels), f"reused from {Path(cfg.split_from).resolve()}"
    external = filter_patients(lab.clinical, cfg.test_where).index if cfg.test_where else None
    split = split_patients(lab.labels, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction,
                           seed=cfg.seed, strata=lab.strata, external=external)
    return split, "drawn from the seed"


def _counts(labels: pd.Series, split: pd.Series) -> dict[str, dict[str, int]]:
    out = {}
    names = ("train", "val", "test") + (("test_external",) if (split == "test_external").any() else ())
    for name in names:
        sub = labels[split.reindex(labels.index) == name]
        out[name] = {"patients": int(len(sub)), "label_0": int((sub == 0).sum()), "label_1": int((sub == 1).sum())}
    return out


def _config_doc(cfg: RadiomicsConfig, kind: str, table, roi, out: Path, split_source: str,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from npcai.fsutil import file_sha256
    from npcai.radiomics import PACKAGE
    from npcai.runs import RUN_FORMAT, RoiSpec, cohort_id, package_versions

    versions = package_versions()
    versions[PACKAGE] = table.meta.get("version")
    doc = {
        "format": RUN_FORMAT, "kind": kind, "task": "binary", "method": METHOD,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "seed": cfg.seed,
        "versions": versions,
        "cohort": {"path": str(Path(cfg.cohort).resolve()), "id": cohort_id(cfg.cohort),
                   "cohort_json_sha256": file_sha256(Path(cfg.cohort) / "cohort.json")},
        "roi": {**RoiSpec.of(roi).to_dict(), "path": str(roi.root.resolve())},
        "radiomics": {"features": str(table.path.resolve()), "features_sha256": table.sha256,
                      "cache_key": table.meta.get("cache_key"), "package": table.meta.get("package"),
                      "version": table.meta.get("version"), "settings": table.meta.get("settings"),
                      "aggregation": table.meta.get("aggregation"), "n_features": len(table.feature_names)},
        "split_source": split_source,
        "reproduce": f"npcai radiomics train {Path(cfg.cohort).resolve()} --roi {cfg.roi} --endpoint {cfg.endpoint} "
                     f"--split-from {out} --out NEW_RUN",
    }
    doc.update(extra or {})
    return doc


# ---------------------------------------------------------------------------- one split
def _fit_split(cfg: RadiomicsConfig, lab: _Labelled, table, split: pd.Series) -> tuple[FittedModel, pd.DataFrame]:
    """Fit on ``train``, choose on ``val``, predict everyone; patient predictions table."""
    X = table.features.loc[lab.labels.index]
    y = lab.labels
    split = split.reindex(y.index)
    for name in ("train", "val"):
        sub = y[split == name]
        if sub.nunique() < 2:
            raise NpcaiError(f"{name} split: {len(sub)} patients, all with label {sub.iloc[0] if len(sub) else '-'}; "
                             "both classes are needed — use more patients or a larger --val-fraction")
    train_ids, val_ids = y.index[split == "train"], y.index[split == "val"]
    fitted = fit_elastic_net(X.loc[train_ids], y.loc[train_ids], X.loc[val_ids], y.loc[val_ids],
                             cfg.model_settings())
    prob = fitted.predict(X)
    patients = pd.DataFrame({"patient_id": y.index, "split": split.to_numpy(), "label": y.to_numpy(),
                             "prob": np.clip(prob, 0.0, 1.0),
                             "n_slices": table.n_slices.reindex(y.index).to_numpy()})
    return fitted, patients


def _auc(patients: pd.DataFrame, split: str) -> tuple[float, int]:
    from npcai.stats.auc import roc_auc

    sub = patients[patients["split"] == split]
    if sub["label"].nunique() < 2:
        return float("nan"), int(len(sub))
    return float(roc_auc(sub["label"].to_numpy(dtype=int), sub["prob"].to_numpy())), int(len(sub))


def _write_split_run(cfg: RadiomicsConfig, lab: _Labelled, table, roi, split: pd.Series, work: Path,
                     out: Path, split_source: str) -> RadiomicsResult:
    from npcai.runs import write_run

    fitted, patients = _fit_split(cfg, lab, table, split)
    test_auc, n_test = _auc(patients, "test")
    summary = {
        "task": "binary", "method": METHOD, "endpoint": cfg.endpoint,
        "endpoint_description": lab.endpoint.description, "endpoint_cutoff_months": lab.endpoint.cutoff,
        "where": cfg.where, "test_where": cfg.test_where, "splits": _counts(lab.labels, split),
        "excluded": {"count": int(sum(lab.excluded.values())), "reasons": lab.excluded},
        "val_auc": fitted.val_auc, "test_auc": test_auc, "n_test": n_test,
        "model": {"C": fitted.C, "l1_ratio": cfg.l1_ratio, "grid": fitted.grid.to_dict(orient="records"),
                  "features": {"input": fitted.n_input, "after_variance_filter": fitted.n_after_variance,
                               "after_correlation_filter": fitted.n_after_correlation,
                               "selected": len(fitted.coefficients)},
                  "coefficients": fitted.coefficients},
        "selection": "imputation, variance and correlation filters, standardisation and the elastic net fitted "
                     "on the train patients; penalty and threshold chosen on the val patients; test patients "
                     "predicted once",
    }
    split_df = pd.DataFrame({"patient_id": lab.labels.index, "split": split.reindex(lab.labels.index).to_numpy(),
                             "label": lab.labels.to_numpy()})
    config = _config_doc(cfg, "train", table, roi, out, split_source,
                         {"model": {"type": "logistic regression, elastic net", "C": fitted.C,
                                    "l1_ratio": cfg.l1_ratio, "max_correlation": cfg.max_correlation}})
    write_run(work, config=config, split=split_df, patients=patients, summary=summary)
    return RadiomicsResult(out, "train", test_auc, n_test, fitted.val_auc, n_features=fitted.n_input,
                           n_selected=len(fitted.coefficients), summary=summary)


# ---------------------------------------------------------------------------- folds
def _folds(cfg: RadiomicsConfig, lab: _Labelled) -> tuple[pd.Series, str]:
    from npcai.cohort.splits import assign_folds, reuse_folds
    from npcai.runs import check_cohort, read_config

    source_run = cfg.folds_from or cfg.split_from
    if source_run:
        check_cohort(read_config(source_run), cfg.cohort, f"reusing the folds of {source_run}")
        folds = reuse_folds(source_run, lab.labels)
        if cfg.folds and folds.nunique() != cfg.folds:
            raise NpcaiError(f"{source_run}: has {folds.nunique()} folds for these patients, not {cfg.folds}; "
                             "use the same number of folds")
        return folds, f"reused from {Path(source_run).resolve()}"
    folds = assign_folds(lab.labels, cfg.folds, seed=cfg.fold_seed, strata=lab.strata)
    return folds, f"stratified by label{' and centre' if lab.strata is not None else ''}, seed {cfg.fold_seed}"


def _write_cv_run(cfg: RadiomicsConfig, lab: _Labelled, table, roi, work: Path, out: Path) -> RadiomicsResult:
    from npcai.cohort.splits import fold_split
    from npcai.fsutil import mark_output
    from npcai.models.folds import fold_validation_threshold
    from npcai.runs import write_run
    from npcai.stats.auc import roc_auc

    folds, source = _folds(cfg, lab)
    k_total = int(folds.nunique())
    fold_cfg = dataclasses.replace(cfg, folds=None, folds_from=None, split_from=None, test_where=None)
    held, rows = [], []
    for k in track(sorted(folds.unique()), f"Radiomics cross-validation ({k_total} folds)"):
        split = fold_split(folds, int(k), lab.labels, val_fraction=cfg.val_fraction, seed=cfg.seed,
                           strata=lab.strata)
        fold_dir = work / "folds" / f"fold{k}"
        res = _write_split_run(fold_cfg, lab, table, roi, split, fold_dir, out / "folds" / f"fold{k}",
                               f"given (fold {k} of the cross-validated run {out.name})")
        mark_output(fold_dir)
        from npcai.runs import read_predictions

        p = read_predictions(fold_dir).patients
        threshold = fold_validation_threshold(p[p["split"] == "val"], int(k))
        test = p[p["split"] == "test"]
        held.append(test.assign(split="oof", fold=int(k), threshold=threshold))
        s = res.summary
        rows.append({"fold": int(k), "run": f"folds/fold{k}", "patients": int(len(test)),
                     "label_1": int(test["label"].sum()), "best_epoch": None, "val_auc": s["val_auc"],
                     "val_patients": s["splits"]["val"]["patients"],
                     "train_patients": s["splits"]["train"]["patients"], "auc": res.auc, "threshold": threshold,
                     "C": s["model"]["C"], "selected_features": s["model"]["features"]["selected"]})
    oof = pd.concat(held, ignore_index=True).sort_values("patient_id")
    oof = oof[["patient_id", "split", "fold", "label", "prob", "n_slices", "threshold"]]
    pooled = float(roc_auc(oof["label"].to_numpy(dtype=int), oof["prob"].to_numpy()))
    aucs = [r["auc"] for r in rows]
    summary = {
        "task": "binary", "method": METHOD, "endpoint": cfg.endpoint, "where": cfg.where, "folds": k_total,
        "fold_seed": cfg.fold_seed, "fold_source": source, "patients": int(len(oof)),
        "label_1": int(oof["label"].sum()),
        "excluded": {"count": int(sum(lab.excluded.values())), "reasons": lab.excluded},
        "endpoint_cutoff_months": lab.endpoint.cutoff,
        "per_fold": rows, "oof_auc": pooled, "fold_auc_mean": float(np.nanmean(aucs)),
        "fold_auc_sd": float(np.nanstd(aucs, ddof=1)) if len(aucs) > 1 else float("nan"),
        "selection": "each fold: filters, standardisation and the elastic net fitted on its train patients, "
                     "penalty and threshold on validation patients carved from the other folds; its held-out "
                     "patients predicted once",
    }
    split_df = pd.DataFrame({"patient_id": folds.index, "split": "oof", "fold": folds.to_numpy(),
                             "label": lab.labels.reindex(folds.index).to_numpy()})
    config = _config_doc(cfg, "cv", table, roi, out, "folds " + source,
                         {"folds": {"k": k_total, "seed": cfg.fold_seed, "source": source},
                          "fold_runs": [r["run"] for r in rows]})
    config["reproduce"] = (f"npcai radiomics train {Path(cfg.cohort).resolve()} --roi {cfg.roi} --endpoint "
                           f"{cfg.endpoint} --split-from {out} --out NEW_RUN")
    write_run(work, config=config, split=split_df, patients=oof, summary=summary)
    return RadiomicsResult(out, "cv", pooled, int(len(oof)), float(np.nanmean([r["val_auc"] for r in rows])),
                           fold_aucs=aucs, n_features=len(table.feature_names), summary=summary)


# ---------------------------------------------------------------------------- main
def train_radiomics(config: RadiomicsConfig, out: str | os.PathLike, *, overwrite: bool = False) -> RadiomicsResult:
    """Extract (or reuse) the ROI's features and write a radiomics run folder to ``out``.

    Args:
        config: :class:`RadiomicsConfig`.
        out: the run folder (built beside it and renamed when complete).
        overwrite: replace an earlier npcai output at ``out``.

    Returns:
        :class:`RadiomicsResult`.

    Raises:
        NpcaiError: bad options, an output inside an input, a split run of another cohort,
            training or validation patients of one class.
    """
    from npcai.cohort.model import Cohort
    from npcai.fsutil import atomic_output_dir, check_output_path
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models.folds import is_cv_run
    from npcai.radiomics.table import extract_features

    cfg = config.validate()
    check_output_path(out, [cfg.cohort, cfg.split_from, cfg.folds_from])
    out = Path(out).resolve()
    cohort = Cohort.load(cfg.cohort)
    roi = RoiDataset.open(cfg.cohort, cfg.roi)
    table = extract_features(cfg.cohort, cfg.roi, settings=cfg.extraction_settings())
    lab = _labelled(cfg, cohort, table)
    cv = bool(cfg.folds) or (cfg.split_from is not None and is_cv_run(cfg.split_from))
    with atomic_output_dir(out, overwrite=overwrite) as work:
        if cv:
            return _write_cv_run(cfg, lab, table, roi, work, out)
        split, source = _split(cfg, lab)
        return _write_split_run(cfg, lab, table, roi, split, work, out, source)
