"""One patient through the served model: the only place the server predicts.

:func:`score_patient` takes a one-patient cohort (ingested from the upload) and returns a
:class:`PatientResult`. It rebuilds the run's ROI exactly as the run was trained (the
parameters recorded in the ROI's ``variant.json``), runs the selected checkpoint, aggregates
the slices as the run did, and computes Grad-CAM with localisation shares on the tumour
slices. When ``npcai.runs.predict_patients`` lands, the prediction part of this function
is the one to swap; its result type stays.

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
import pandas as pd
import torch

from npcai.errors import NpcaiError

__all__ = ["SliceResult", "PatientResult", "score_patient", "SERVE_ROI", "MAX_CAM_SLICES"]

SERVE_ROI = "serve"
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
        seconds: time per stage (roi, prediction, cam).
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
        in_chans = int(run.config["resolved"]["in_chans"])
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
    from npcai.imaging.roi_cache import RoiDataset, build_roi
    from npcai.models.data import read_rows, resize_batch
    from npcai.models.lightning_module import aggregate_patients

    t0 = time.perf_counter()
    cohort = Cohort.load(cohort_dir)
    if len(cohort.patients) != 1:
        raise NpcaiError(f"images: the upload holds {len(cohort.patients)} patients; upload one patient at a time")
    pid = cohort.patients[0].patient_id
    p = served.roi_params
    _check_scans(cohort, p)
    try:
        build_roi(cohort_dir, SERVE_ROI, p["variant"], region=p["region"], slices=p["slices"],
                  sequences=tuple(p["sequences"]), timepoint=p["timepoint"], mask="manual", size=int(p["size"]),
                  min_component=tuple(p.get("min_component") or (0, 0)), frame=p.get("frame"),
                  normalise=p.get("normalisation", "robust"))
    except NpcaiError as exc:
        small = p.get("min_component") or (0, 0)
        dropped = f" after dropping contour pieces under {small[0]}x{small[1]} px as in training" if any(small) else ""
        raise NpcaiError(f"contour: the {_REGIONS.get(p['region'], p['region'])} region is empty on every slice"
                         f"{dropped}; check that the contour marks the tumour (label 1"
                         f"{', nodes label 2' if p['region'] != 'primary' else ''}) on the {p['sequences'][0]} "
                         "scan") from exc
    roi = RoiDataset.open(cohort_dir, SERVE_ROI)
    rows = roi.rows_of(pid)
    if len(rows) == 0:
        raise NpcaiError("contour: no slice of the scan holds the tumour region; check the contour")
    t_roi = time.perf_counter()

    model, patient_model, layer = _models(served)
    size = int(roi.images.shape[-1])
    x = resize_batch(read_rows(roi.images, rows), served.net_size)
    with torch.inference_mode():
        slice_prob = torch.sigmoid(model(x)).float().numpy()
        if patient_model is not None:
            prob = float(torch.sigmoid(patient_model(x.unsqueeze(0)))[0])
    index = roi.index.iloc[rows]
    if patient_model is None:
        area = index["tumour_area_px"].fillna(0).to_numpy(dtype=float)
        agg = aggregate_patients(pd.DataFrame({"patient_id": pid, "prob": slice_prob, "weight": area}),
                                 served.run.config["options"].get("aggregate", "mean"))
        prob = float(agg["prob"].iloc[0])
    t_pred = time.perf_counter()

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
                         seconds={"roi": t_roi - t0, "prediction": t_pred - t_roi, "cam": t_cam - t_pred})


