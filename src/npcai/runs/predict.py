"""Apply a trained run to any cohort: ``predict_patients`` and the prediction folder.

The run's recorded preprocessing spec (:class:`~npcai.runs.folder.RoiSpec`) rebuilds its ROI
input for the new cohort through :func:`npcai.imaging.roi_cache.build_roi` (cached in
``COHORT/roi/run-<name>-<spec hash>``, reused while the inputs are unchanged); the selected
checkpoint (loaded ``weights_only``) predicts through the run's task, the same prediction loop
training used, so on the run's own cohort the saved predictions are reproduced.

A cohort that lacks a sequence, timepoint or mask source the run needs is refused with one
line naming it; a pixel spacing more than 20 % away from the training cohort's is warned
about. Patients of another cohort get ``split = external``; on the run's own cohort each
patient keeps its split (``excluded`` for those the run left out, e.g. without a label). Labels are computed when the cohort has the endpoint's columns
(``pfs-median`` with the *training* cut-off), else left empty.

Examples:
    >>> preds = predict_patients("runs/r1", "cohort_centre2")          # doctest: +SKIP
    >>> preds.patients[["patient_id", "prob"]]                          # doctest: +SKIP
    >>> write_predictions("pred_centre2", "runs/r1", "cohort_centre2", preds)  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from npcai.errors import NpcaiError
from npcai.runs.folder import (CONFIG, PATIENTS, RUN_FORMAT, ROI_SPEC_KEYS, Predictions, RoiSpec, RunConfig,
                               cohort_id, package_versions, read_config, read_split, read_summary,
                               write_run)

__all__ = ["predict_patients", "write_predictions", "native_pixel_mm", "cv_threshold", "SPACING_TOLERANCE",
           "CV_SEEN"]

log = logging.getLogger(__name__)
SPACING_TOLERANCE = 0.2


def native_pixel_mm(cohort, spec: RoiSpec, patients: Sequence[str] | None = None) -> float | None:
    """Median in-plane pixel spacing (mm) of the scans a spec reads (its first sequence)."""
    seq = spec.params.get("sequences", ["T1c"])[0]
    tp = "post" if spec.params.get("timepoint") == "post" else "pre"
    keep = None if patients is None else set(patients)
    values = [float(np.mean(s.spacing[:2])) for s in cohort.scans(timepoint=tp, sequence=seq)
              if keep is None or s.patient_id in keep]
    return float(np.median(values)) if values else None


def _needs_mask(spec: RoiSpec) -> bool:
    from npcai.imaging.slices import parse_slice_rule
    from npcai.imaging.variants import parse_variant

    return parse_variant(spec.params["variant"]).uses_mask or parse_slice_rule(spec.params["slices"]).kind != "all"


def check_inputs(config: RunConfig, cohort, patients: Sequence[str]) -> None:
    """Refuse, in one line naming what differs, a cohort without the run's sequences, timepoint
    or mask source (for the whole cohort, then for each requested patient)."""
    from npcai.imaging.volume_io import plan_patient

    spec = config.roi
    need_seq = list(spec.params.get("sequences", []))
    tp = spec.params.get("timepoint", "pre")
    tps = ("pre", "post") if tp == "both" else (tp,)
    have = sorted({f"{s.timepoint} {s.sequence}" for s in cohort.scans()})
    for t in tps:
        for seq in need_seq:
            if not cohort.scans(timepoint=t, sequence=seq):
                raise NpcaiError(f"{cohort.root}: no {t} {seq} scans, but run {config.path.name} needs "
                                 f"sequences {','.join(need_seq)} at timepoint {tp} (the cohort has: "
                                 f"{', '.join(have) or 'no scans'})")
    mask = spec.params.get("mask", "manual")
    if _needs_mask(spec):
        attr = "auto_mask" if mask == "auto" else "mask"
        if not any(getattr(s, attr) for s in cohort.scans()):
            raise NpcaiError(f"{cohort.root}: no {mask} masks, but run {config.path.name} reads its ROI from "
                             f"{mask} masks" + (" (make them with the segmentation model first)"
                                                if mask == "auto" else ""))
    known = set(cohort.patient_ids)
    for p in patients:
        if p not in known:
            raise NpcaiError(f"patient {p}: not in cohort {cohort.root}")
        plan = plan_patient(cohort, p, sequences=tuple(need_seq), timepoint=tp, mask=mask)
        if isinstance(plan, str):
            raise NpcaiError(f"patient {p}: {plan}, but run {config.path.name} needs sequences "
                             f"{','.join(need_seq)} at timepoint {tp}")
        if plan.mask_scan is None and _needs_mask(spec):
            raise NpcaiError(f"patient {p}: no {mask} mask, but run {config.path.name} reads its ROI from "
                             f"{mask} masks")


def _spec_hash(spec: RoiSpec, normalise: str = "") -> str:
    params = spec.params if not normalise.startswith("histogram") else {**spec.params, "normalisation": normalise}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def _histogram_digest(normalisation) -> str | None:
    """The landmarks digest of a ``histogram:PATH#SHA16`` normalisation (None for other methods)."""
    text = str(normalisation or "")
    return text.rsplit("#", 1)[-1] if text.startswith("histogram:") and "#" in text else None


def _same_param(key: str, built, recorded) -> bool:
    """Histogram normalisations are the same when their landmarks are (the file may have moved)."""
    if key == "normalisation" and _histogram_digest(recorded) is not None:
        return _histogram_digest(built) == _histogram_digest(recorded)
    return built == recorded


def _build_kwargs(config: RunConfig) -> dict[str, Any]:
    """The ROI build arguments of a run; a run that learnt histogram landmarks is rebuilt with its
    own copy of them (:data:`npcai.runs.folder.LANDMARKS`), which must be the recorded ones."""
    from npcai.fsutil import file_sha256
    from npcai.runs.folder import run_landmarks

    kwargs = config.roi.build_kwargs()
    recorded = _histogram_digest(kwargs.get("normalise"))
    own = run_landmarks(config.path)
    if recorded is None or own is None:
        return kwargs
    if file_sha256(own)[:16] != recorded:
        raise NpcaiError(f"{own}: these histogram landmarks are not the ones run {config.path.name} was trained "
                         f"with (recorded {recorded}); restore the run's file or train again")
    kwargs["normalise"] = f"histogram:{own.resolve()}"
    return kwargs


def _roi_for(config: RunConfig, cohort_dir: Path, same_cohort: bool):
    """The run's ROI input for ``cohort_dir``: the run's own cache when it is this cohort's and
    unchanged, else built (or reused) from the recorded spec."""
    from npcai.imaging.roi_cache import RoiDataset, build_roi, list_rois

    spec = config.roi
    if same_cohort and spec.name in list_rois(cohort_dir):
        roi = RoiDataset.open(cohort_dir, spec.name)
        if roi.input_hash == spec.input_hash:
            return roi
        log.info("ROI dataset %s was rebuilt since run %s; building the run's input again",
                 spec.name, config.path.name)
    kwargs = _build_kwargs(config)
    name = f"run-{spec.name}-{_spec_hash(spec, kwargs['normalise'] if 'normalise' in kwargs else '')}"
    build_roi(cohort_dir, name, **kwargs)
    roi = RoiDataset.open(cohort_dir, name)
    differs = [k for k in ROI_SPEC_KEYS if k in spec.params and not _same_param(k, roi.params.get(k), spec.params[k])]
    if differs:
        raise NpcaiError(f"ROI dataset {roi.root}: {differs[0]} is {roi.params.get(differs[0])!r} but run "
                         f"{config.path.name} recorded {spec.params[differs[0]]!r}; the ROI cannot be rebuilt "
                         "as the run saw it")
    return roi


def _labels(config: RunConfig, clinical: pd.DataFrame) -> tuple[pd.Series, str]:
    """The endpoint's labels on a cohort (pfs-median with the training cut-off), or none with
    the reason when the cohort lacks the endpoint's columns."""
    from npcai.cohort.endpoints import NAMED_ENDPOINTS, endpoint_labels

    endpoint = config.endpoint
    column, tcol, ecol = NAMED_ENDPOINTS.get(endpoint, (endpoint, None, None))
    needed = [tcol, ecol] if endpoint == "pfs-median" else [column]
    missing = [c for c in needed if c not in clinical.columns]
    if missing:
        return pd.Series(dtype=float), f"the cohort has no {', '.join(missing)} column: no labels"
    cutoff = None
    if endpoint == "pfs-median":
        cutoff = read_summary(config.path).get("endpoint_cutoff_months")
        if cutoff is None:
            raise NpcaiError(f"{config.path}: summary.json records no pfs-median cut-off; train the run again")
    ep = endpoint_labels(clinical, endpoint, cutoff=cutoff)
    return ep.labels.astype(float), ep.description


def _spacing_check(config: RunConfig, cohort, patients: Sequence[str]) -> str | None:
    trained = (config.raw.get("cohort") or {}).get("pixel_mm")
    now = native_pixel_mm(cohort, config.roi, patients)
    if not trained or not now:
        return None
    change = abs(now - float(trained)) / float(trained)
    if change > SPACING_TOLERANCE:
        msg = (f"pixel spacing {now:.3g} mm differs by {100 * change:.0f}% from the training cohort's "
               f"{float(trained):.3g} mm; the model may not transfer")
        log.warning("%s: %s", cohort.root, msg)
        return msg
    return None


def _predict_train_run(config: RunConfig, cohort_dir: Path, patients: Sequence[str] | None,
                       checkpoint: str) -> Predictions:
    from npcai.cohort.model import Cohort
    from npcai.models.tasks import make_task
    from npcai.runs.load import load_network

    if config.roi is None:
        raise NpcaiError(f"{config.path / CONFIG}: records no ROI spec, so its input cannot be rebuilt; "
                         "train the run again")
    cohort = Cohort.load(cohort_dir)
    wanted = list(dict.fromkeys(patients)) if patients else list(cohort.patient_ids)
    check_inputs(config, cohort, wanted)
    same = config.cohort_id == cohort_id(cohort_dir)
    roi = _roi_for(config, cohort_dir, same)
    net, patient_net = load_network(config, checkpoint)
    rows = roi.index.reset_index(names="roi_row")
    rows = rows[rows["patient_id"].isin(wanted)]
    skipped = {p: roi.params.get("skipped", {}).get(p, "no slices in the ROI") for p in wanted
               if p not in set(rows["patient_id"])}
    for p, why in skipped.items():
        log.warning("patient %s: not predicted (%s)", p, why)
    if rows.empty:
        raise NpcaiError(f"{cohort_dir}: none of the {len(wanted)} patients has a usable ROI "
                         f"({'; '.join(f'{p}: {w}' for p, w in list(skipped.items())[:3])})")
    resolved = config.raw.get("resolved") or {}
    size = int(resolved["input_size"]) if resolved.get("input_size") != resolved.get("roi_size") else None
    task = make_task(config.options, config.raw.get("task", "binary"))
    slices, per_patient = task.predict(patient_net or net, roi.images, rows, size=size)
    labels, label_note = _labels(config, cohort.clinical())
    if same:
        split = read_split(config.path)["split"]
    else:
        split = pd.Series("external", index=per_patient.index)
    pts = pd.DataFrame({"patient_id": per_patient.index,
                        "split": split.reindex(per_patient.index).fillna("excluded" if same else "external")
                        .to_numpy(),
                        "label": labels.reindex(per_patient.index).to_numpy()})
    for col, values in task.outcomes(cohort.clinical(), config.endpoint, per_patient.index).items():
        pts[col] = values            # e.g. a survival run's time, event, treatment
    if "event" in pts.columns:
        pts["label"] = pts["event"]
    for col in task.prediction_columns:
        pts[col] = per_patient[col].to_numpy()
    pts["n_slices"] = per_patient["n_slices"].to_numpy()
    slices.insert(2, "split", pts.set_index("patient_id")["split"].reindex(slices["patient_id"]).to_numpy())
    slices.insert(4, "label", pts.set_index("patient_id")["label"].reindex(slices["patient_id"]).to_numpy())
    info = {"roi": {"name": roi.root.name, "input_hash": roi.input_hash}, "skipped": skipped,
            "labels": label_note, "spacing_warning": _spacing_check(config, cohort, wanted),
            "same_cohort": same}
    return Predictions(pts, slices, info=info)


def _soft_vote(members: list[Predictions], names: list[str], weights: list[float] | None) -> pd.DataFrame:
    """Patient rows predicted by every member with the (weighted) mean probability
    (:func:`npcai.models.ensemble.soft_vote`, the one soft vote) and each member's own
    ``prob_<name>``; split and label from the first member."""
    from npcai.models.ensemble import soft_vote

    tables = [m.patients.set_index("patient_id") for m in members]
    common = sorted(set.intersection(*(set(t.index) for t in tables)))
    first = tables[0].loc[common]
    out = pd.DataFrame({"patient_id": common, "split": first["split"].to_numpy(),
                        "label": first["label"].to_numpy(),
                        "prob": soft_vote([t.loc[common, "prob"].to_numpy() for t in tables], weights),
                        "n_slices": np.sum([t.loc[common, "n_slices"].to_numpy() for t in tables], axis=0)})
    for name, t in zip(names, tables):
        out[f"prob_{name}"] = t.loc[common, "prob"].to_numpy()
    return out


def _not_by_every(members: list[Predictions]) -> dict[str, str]:
    ids = [set(m.patients["patient_id"]) for m in members]
    common = set.intersection(*ids)
    return {p: "not predicted by every member" for s in ids for p in sorted(s - common)}


def _predict_ensemble(config: RunConfig, cohort_dir: Path, patients, checkpoint: str) -> Predictions:
    members = [predict_patients(m, cohort_dir, patients, checkpoint=checkpoint) for m in config.members]
    weights = [float(m.get("weight", 1.0)) for m in config.raw.get("members", [])]
    out = _soft_vote(members, [Path(p).name for p in config.members], weights)
    info = {"members": [m.info for m in members], "skipped": _not_by_every(members),
            "labels": members[0].info.get("labels"), "same_cohort": members[0].info.get("same_cohort")}
    return Predictions(out, None, info=info)


#: the split of a cross-validated run's own patients when the run predicts its own cohort
CV_SEEN = "seen"


def cv_threshold(run: str | Path) -> dict[str, Any]:
    """The decision threshold a cross-validated run applies to new patients: the mean of its
    fold models' validation thresholds (each Youden's J on that fold's validation patients,
    column ``threshold`` of its out-of-fold predictions)."""
    from npcai.models.folds import fold_table
    from npcai.runs.folder import read_predictions

    table = fold_table(read_predictions(run).patients)
    values = table["threshold"].astype(float)
    if table.empty or values.isna().any():
        raise NpcaiError(f"{run}: its out-of-fold predictions record no threshold per fold; train it again with folds")
    return {"value": float(values.mean()),
            "source": f"mean of the {len(values)} fold models' validation thresholds (Youden's J on each "
                      "fold's validation patients)",
            "folds": [float(v) for v in values]}


def _soft_vote_slices(members: list[Predictions], keep: Sequence[str]) -> pd.DataFrame | None:
    """Slice rows of the kept patients with the mean probability of the fold models (which all
    read the same ROI input)."""
    from npcai.models.ensemble import soft_vote

    if any(m.slices is None or "prob" not in m.slices.columns for m in members):
        return None
    tables = [m.slices.set_index("roi_row") for m in members]
    first = tables[0][tables[0]["patient_id"].isin(set(keep))]
    rows = first.index
    if not all(rows.isin(t.index).all() for t in tables[1:]):
        return None
    cols = [c for c in ("patient_id", "split", "slice_index", "label") if c in first.columns]
    out = first[cols].copy()
    out["prob"] = soft_vote([t.loc[rows, "prob"].to_numpy() for t in tables])
    return out.reset_index()


def _predict_cv(config: RunConfig, cohort_dir: Path, patients, checkpoint: str) -> Predictions:
    """A cross-validated run on any cohort: the soft vote (mean probability) of its K fold
    models, with the mean of their validation thresholds recorded for evaluation."""
    from npcai.models.folds import fold_run_dirs

    folds = fold_run_dirs(config.path)
    if len(folds) < 2:
        raise NpcaiError(f"{config.path / CONFIG}: a cross-validated run without its fold runs; train it again")
    threshold = cv_threshold(config.path)
    members = [predict_patients(f, cohort_dir, patients, checkpoint=checkpoint) for f in folds]
    out = _soft_vote(members, [f.name for f in folds], None)
    same = bool(members[0].info.get("same_cohort"))
    if same:     # each of these patients trained K - 1 of the fold models: not an honest estimate
        seen = set(read_split(config.path).index)
        out["split"] = np.where(out["patient_id"].isin(seen), CV_SEEN, "excluded")
        if (out["split"] == CV_SEEN).any():
            log.warning("run %s predicts its own cohort: %d of these patients trained %d of its %d fold models "
                        "(split %s); its out-of-fold predictions are the honest estimate",
                        config.path.name, int((out["split"] == CV_SEEN).sum()), len(folds) - 1, len(folds), CV_SEEN)
    slices = _soft_vote_slices(members, list(out["patient_id"]))
    if slices is not None:
        slices["split"] = out.set_index("patient_id")["split"].reindex(slices["patient_id"]).to_numpy()
    first = members[0].info
    info = {"roi": first.get("roi"), "skipped": {**{p: w for m in members for p, w in m.info.get("skipped", {}).items()},
                                                 **_not_by_every(members)},
            "labels": first.get("labels"), "spacing_warning": first.get("spacing_warning"),
            "same_cohort": same, "threshold": threshold,
            "vote": f"soft vote (mean probability) of the {len(folds)} fold models"}
    return Predictions(out, slices, info=info)


def predict_patients(run: str | Path, cohort: str | Path, patients: Sequence[str] | None = None, *,
                     checkpoint: str = "best") -> Predictions:
    """Predict the patients of ``cohort`` (all, or ``patients``) with a trained run or ensemble.

    A cross-validated run (``npcai train --folds K``) predicts with the soft vote (mean
    probability) of its K fold models, and ``.info["threshold"]`` records its decision
    threshold: the mean of the fold models' validation thresholds (:func:`cv_threshold`),
    which ``npcai evaluate`` applies unchanged to the predicted cohort. On the run's own cohort
    its patients get split ``seen`` (each trained K - 1 of the fold models).

    Args:
        run: a run folder (``npcai train``), an ensemble (members predicted and soft-voted) or a
            cross-validated run (fold models predicted and soft-voted).
        cohort: any ingested cohort with the sequences, timepoint and masks the run needs.
        patients: pseudonyms to predict (default: every patient of the cohort).
        checkpoint: ``best`` (selected on validation) or ``last``.

    Returns:
        :class:`~npcai.runs.folder.Predictions` in the run-folder format (``.patients``,
        ``.slices``; ``.info``: the ROI used, skipped patients, label and spacing notes).

    Raises:
        NpcaiError: the cohort lacks an input the run needs (one line naming it).
    """
    config = read_config(run)
    cohort = Path(cohort)
    if config.kind == "ensemble":
        return _predict_ensemble(config, cohort, patients, checkpoint)
    if config.kind == "cv":
        return _predict_cv(config, cohort, patients, checkpoint)
    if config.kind != "train":
        raise NpcaiError(f"{run}: a {config.kind} folder has no model; give the run folder that made it")
    if config.method == "radiomics":
        raise NpcaiError(f"{run}: a radiomics run has no network to apply; its predictions are in the run "
                         "(predicting another cohort with it is not supported)")
    return _predict_train_run(config, cohort, patients, checkpoint)


def write_predictions(out: str | Path, run: str | Path, cohort: str | Path, predictions: Predictions, *,
                      overwrite: bool = False) -> Path:
    """Write a prediction folder (``kind: predictions``; see :mod:`npcai.runs.folder`)."""
    from npcai.fsutil import atomic_output_dir, file_sha256

    run, cohort = Path(run), Path(cohort)
    src = read_config(run)
    p = predictions.patients
    labelled = p["label"].notna()
    config = {
        "format": RUN_FORMAT, "kind": "predictions",
        "options": {"endpoint": src.endpoint, "roi": src.roi_name if src.kind in ("train", "cv") else None,
                    "backbone": src.backbone if src.kind in ("train", "cv") else None,
                    "cohort": str(cohort.resolve()), "unit": src.option("unit")},
        "cohort": {"path": str(cohort.resolve()), "id": cohort_id(cohort)},
        "roi": predictions.info.get("roi"),
        "source_run": {"path": str(run.resolve()), "name": run.resolve().name, "kind": src.kind,
                       "config_sha256": file_sha256(run / CONFIG),
                       "predictions_sha256": file_sha256(run / PATIENTS)},
        "versions": package_versions(),
    }
    threshold = predictions.info.get("threshold")
    if threshold is not None:      # a cross-validated run: the mean of its fold thresholds
        config["threshold"] = threshold
    summary: dict[str, Any] = {
        "kind": "predictions", "run": run.resolve().name, "n_patients": int(len(p)),
        "n_labelled": int(labelled.sum()), "label_1": int((p["label"] == 1).sum()),
        "label_0": int((p["label"] == 0).sum()), "labels": predictions.info.get("labels"),
        "splits": {str(k): int(v) for k, v in p["split"].value_counts().items()},
        "skipped": predictions.info.get("skipped", {}),
        "spacing_warning": predictions.info.get("spacing_warning"),
        "threshold": (f"{threshold['value']:.6g}: {threshold['source']} (npcai evaluate)" if threshold is not None
                      else "fixed on the validation patients of the source run (npcai evaluate)"),
    }
    if predictions.info.get("vote"):
        summary["vote"] = predictions.info["vote"]
    split = p[["patient_id", "split", "label"]]
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_run(tmp, config=config, split=split, slices=predictions.slices, patients=p, summary=summary)
    return Path(out)
