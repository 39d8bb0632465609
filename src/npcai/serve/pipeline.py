"""One patient through the served model: the only place the server predicts.

:func:`score_patient` takes a one-patient cohort (ingested from the upload) and returns a
:class:`PatientResult`. The probability comes from :func:`npcai.runs.predict_patients`
(the run's recorded ROI spec rebuilt on this cohort, the selected checkpoint, the run's own
prediction loop and slice aggregation); Grad-CAM with localisation shares is then computed on
the largest tumour slices of that same ROI input, with this worker's copy of the network.

Examples:
    >>> res = score_patient(open_model("run"), "one_patient_cohort")   # doctest: +SKIP
    >>> res.probability, res.slices[0].shares["tumour"]                 # doctest: +SKIP
"""
from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from npcai.errors import NpcaiError

__all__ = ["SliceResult", "PatientResult", "score_patient", "MAX_CAM_SLICES"]

MAX_CAM_SLICES = 4
_REGIONS = {"primary": "tumour", "nodes": "nodal", "both": "tumour + nodal"}
_local = threading.local()


@dataclass
class SliceResult:
    """One tumour slice: its probability, Grad-CAM and where the CAM's energy lies."""

    slice_index: int
    prob: float
    tumour_area_px: int
    shares: dict[str, float]                 # px scale: tumour, nodes, band_0_5px, ...
    shares_mm: dict[str, float]
    image: np.ndarray = field(repr=False)    # (S, S) first channel of the ROI
    cam: np.ndarray = field(repr=False)      # (S, S) non-negative
    labels: np.ndarray = field(repr=False)   # (S, S) 1 tumour, 2 nodes
    geometry: Any = field(repr=False)        # npcai.explain.localisation.RoiGeometry


@dataclass
class PatientResult:
    """The served model's answer for one patient.

    Attributes:
        patient_id: the one-patient cohort's pseudonym.
        probability: P(label 1) for the patient, aggregated over slices as the run does.
        interval: (low, high) 95 % interval when the model provides one, else None.
        n_slices: slices the model read.
        slices: the explained slices (largest tumour area first, at most MAX_CAM_SLICES).
        shares: mean localisation shares over the explained slices (px scale).
        seconds: time per stage: roi_and_prediction (:func:`npcai.runs.predict_patients`: the run's ROI
            rebuilt, checkpoint loaded, slices predicted and aggregated), forward (the network alone on
            the patient's slices), cam.
        target_layer: the layer Grad-CAM hooked.
    """

    patient_id: str
    probability: float
    interval: tuple[float, float] | None
    n_slices: int
    slices: list[SliceResult]
    shares: dict[str, float]
    seconds: dict[str, float]
    target_layer: str


def _models(served):
    """This thread's own copy of the network and its Grad-CAM layer (hooks must not cross requests)."""
    from npcai.explain.target_layers import find_target_layer

    key = id(served.run)
    cached = getattr(_local, "models", None)
    if cached is None or cached[0] != key:
        run = served.run
        if run.patient_model is not None:
            patient_model = copy.deepcopy(run.patient_model).eval()
            model = patient_model.slice_model.eval()
        else:
            patient_model, model = None, copy.deepcopy(run.model).eval()
        in_chans = int(run.config.raw["resolved"]["in_chans"])
        layer = find_target_layer(model, input_shape=(1, in_chans, served.net_size, served.net_size))
        cached = (key, model, patient_model, layer)
        _local.models = cached
    return cached[1], cached[2], cached[3]


def _check_scans(cohort, params: dict[str, Any]) -> None:
    """The upload holds the sequences/timepoint the model reads, with a tumour contour."""
    timepoints = ("pre", "post") if params["timepoint"] == "both" else (params["timepoint"],)
    have = sorted({f"{s.timepoint} {s.sequence}" for s in cohort.scans()})
    for tp in timepoints:
        for seq in params["sequences"]:
            if not cohort.scans(timepoint=tp, sequence=seq):
                raise NpcaiError(f"images: the model reads a {tp}-treatment {seq} scan, and the upload holds "
                                 f"{', '.join(have) or 'no recognised scan'}; upload the {seq} series")
    first = cohort.scans(timepoint=timepoints[0])
    if not any(s.mask for s in first if s.sequence in params["sequences"]):
        raise NpcaiError(f"contour: no tumour contour matches the {timepoints[0]}-treatment "
                         f"{'/'.join(params['sequences'])} scan; upload the contour (NIfTI label map on the scan's "
                         "grid, or an RTSTRUCT referencing the series)")


def score_patient(served, cohort_dir: str | Path) -> PatientResult:
    """Predict and explain the single patient of ``cohort_dir`` with the served run.

    Args:
        served: a :class:`npcai.serve.model.ServedModel`.
        cohort_dir: a cohort (from :func:`npcai.cohort.ingest.ingest`) holding one patient.

    Raises:
        NpcaiError: the scans the model reads are missing, or the contour is empty.
    """
    from npcai.cohort.model import Cohort
    from npcai.explain.cam import compute_cams
    from npcai.explain.localisation import energy_shares, roi_geometry
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models.data import read_rows, resize_batch
    from npcai.runs import predict_patients

    t0 = time.perf_counter()
    cohort = Cohort.load(cohort_dir)
    if len(cohort.patients) != 1:
        raise NpcaiError(f"images: the upload holds {len(cohort.patients)} patients; upload one patient at a time")
    pid = cohort.patients[0].patient_id
    p = served.roi_params
    _check_scans(cohort, p)
    try:
        preds = predict_patients(served.run_dir, cohort_dir, [pid])
    except NpcaiError as exc:
        if "usable ROI" not in str(exc):
            raise
        small = p.get("min_component") or (0, 0)
        dropped = f" after dropping contour pieces under {small[0]}x{small[1]} px as in training" if any(small) else ""
        raise NpcaiError(f"contour: the {_REGIONS.get(p['region'], p['region'])} region is empty on every slice"
                         f"{dropped}; check that the contour marks the tumour (label 1"
                         f"{', nodes label 2' if p['region'] != 'primary' else ''}) on the {p['sequences'][0]} "
                         "scan") from exc
    prob = float(preds.patients.set_index("patient_id").loc[pid, "prob"])
    roi = RoiDataset.open(cohort_dir, preds.info["roi"]["name"])
    rows = roi.rows_of(pid)
    t_pred = time.perf_counter()

    # the network alone on the same slices: the model-compute share of the request, and a check
    # that this worker's copy of the network is the run's
    model, patient_model, layer = _models(served)
    size = int(roi.images.shape[-1])
    x = resize_batch(read_rows(roi.images, rows), served.net_size)
    with torch.inference_mode():
        slice_prob = torch.sigmoid(model(x)).float().numpy()
    if patient_model is None and preds.slices is not None and not np.allclose(np.sort(slice_prob), np.sort(preds.slices["prob"].to_numpy(float)),
                                                    atol=1e-4):
        raise RuntimeError("the served network's copy disagrees with predict_patients; restart the server")
    index = roi.index.iloc[rows]
    t_forward = time.perf_counter()

    order = np.argsort(-index["tumour_area_px"].to_numpy(dtype=float), kind="stable")[:MAX_CAM_SLICES]
    chosen = rows[np.sort(order)]
    images = read_rows(roi.images, chosen)
    cams = compute_cams(model, resize_batch(images, served.net_size), method="gradcam", target="high-risk",
                        target_layer=layer, batch_size=MAX_CAM_SLICES)
    cam_maps = torch.nn.functional.interpolate(torch.from_numpy(cams.cams[:, None]), size=(size, size),
                                               mode="bilinear", align_corners=False)[:, 0].clamp(min=0).numpy()
    slices: list[SliceResult] = []
    for k, r in enumerate(chosen):
        meta = roi.index.iloc[r]
        labels = np.asarray(roi.masks[r])
        geometry = roi_geometry(meta, size)
        shares = energy_shares(cam_maps[k], labels, geometry)
        slices.append(SliceResult(slice_index=int(meta["slice_index"]),
                                  prob=float(1 / (1 + np.exp(-cams.logits[k]))),
                                  tumour_area_px=int(meta["tumour_area_px"]), shares=shares["px"],
                                  shares_mm=shares["mm"], image=images[k, 0].numpy(), cam=cam_maps[k],
                                  labels=labels, geometry=geometry))
    mean_shares = {}
    for name in slices[0].shares:
        vals = [s.shares[name] for s in slices if np.isfinite(s.shares[name])]
        mean_shares[name] = float(np.mean(vals)) if vals else float("nan")
    t_cam = time.perf_counter()
    return PatientResult(patient_id=pid, probability=prob, interval=None, n_slices=int(len(rows)), slices=slices,
                         shares=mean_shares, target_layer=layer.name,
                         seconds={"roi_and_prediction": t_pred - t0, "forward": t_forward - t_pred,
                                  "cam": t_cam - t_forward})


