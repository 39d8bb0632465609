"""One request from upload to answer, in a private temporary folder, on a bounded worker pool.

:func:`predict_upload` is synchronous and self-contained: it creates the request's folder
(``mkdtemp``, mode 0700), copies the uploads in, checks/extracts/de-identifies them
(:mod:`npcai.serve.upload`), ingests the one-patient cohort, scores it
(:func:`npcai.serve.pipeline.score_patient`), renders the figures, and deletes the folder in
a ``finally`` whatever happened. Results live only in the returned :class:`Prediction`:
the server stores nothing between requests.

:class:`WorkerPool` runs those calls on a fixed number of threads and admits at most
``workers + queue`` requests at once; the rest are refused (503) instead of piling up.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from npcai.errors import NpcaiError
from npcai.serve.upload import UploadError, UploadLimits, prepare_patient

__all__ = ["Prediction", "predict_upload", "WorkerPool", "NOTICE", "TEMP_PREFIX"]

NOTICE = "Research use only, not a medical device."
TEMP_PREFIX = "npcai-serve-"


@dataclass
class Prediction:
    """Everything one request produced (in memory only)."""

    pseudonym: str
    result: Any                              # npcai.serve.pipeline.PatientResult
    clinical: dict[str, Any]
    warnings: list[str]
    percentile: float
    seconds: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)   # reference: bytes, cams: [bytes], report: bytes

    def to_json(self, served, *, images: bool = False) -> dict[str, Any]:
        """The API's answer: one entry under ``outputs`` per output the served model offers."""
        r = self.result
        thr = (served.card.threshold or {}).get("value")
        outputs: dict[str, Any] = {}
        if "risk" in served.outputs:
            outputs["risk"] = {
                "probability": r.probability, "endpoint": served.card.endpoint,
                "interval": list(r.interval) if r.interval else None,
                "interval_note": None if r.interval else "this model gives no interval for one patient",
                "percentile": self.percentile,
                "reference": {"n": int(len(served.reference)),
                              "patients": "the run's training and validation patients"},
                "threshold": served.card.threshold,
                "above_threshold": None if thr is None else bool(r.probability > thr),
                "n_slices": r.n_slices,
            }
        if "gradcam" in served.outputs:
            outputs["gradcam"] = {
                "method": "gradcam", "target": "high-risk", "target_layer": r.target_layer,
                "shares_mean": _finite(r.shares),
                "slices": [{"slice_index": s.slice_index, "prob": s.prob, "tumour_area_px": s.tumour_area_px,
                            "shares": _finite(s.shares), "shares_mm": _finite(s.shares_mm)} for s in r.slices],
            }
            if images:
                for entry, png in zip(outputs["gradcam"]["slices"], self.figures.get("cams", [])):
                    entry["overlay_png"] = _b64(png)
        out = {"pseudonym": self.pseudonym, "notice": NOTICE, "model": served.card.name, "outputs": outputs,
               "clinical": self.clinical, "warnings": self.warnings,
               "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}
        if images:
            out["figures"] = {"reference_png": _b64(self.figures.get("reference")),
                              "report_png": _b64(self.figures.get("report"))}
        return out


def _finite(d: dict[str, float]) -> dict[str, float | None]:
    return {k: (float(v) if np.isfinite(v) else None) for k, v in d.items()}


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _copy(src: IO[bytes], dst: Path) -> None:
    src.seek(0)
    with open(dst, "wb") as fh:
        shutil.copyfileobj(src, fh, 1 << 20)


_RENAMES = (("x/dicom/", "images: "), ("x/dicom", "images"), ("x/volumes/", "images: "), ("x/volumes", "images"),
            ("x/contours/", "contour "), ("x/contours", "contour"),
            ("check --sequence-map", "the series description must name the sequence (T1, T2 or T1c)"))


def _scrub(message: str, work: Path) -> str:
    """Messages name the upload's parts, never the private folder or a command-line option."""
    message = message.replace(str(work) + "/", "").replace(str(work), "upload")
    for old, new in _RENAMES:
        message = message.replace(old, new)
    return message


def predict_upload(served, images: IO[bytes], contour: IO[bytes] | None, contour_name: str | None,
                   clinical: dict[str, Any], limits: UploadLimits, *, warnings: list[str] | None = None,
                   tmp_root: str | Path | None = None,
                   render: bool = True) -> Prediction:
    """Score one uploaded patient; the request's temporary folder is gone when this returns.

    Args:
        served: the :class:`npcai.serve.model.ServedModel`.
        images: the uploaded zip (file object).
        contour: the uploaded contour file (NIfTI label map or RTSTRUCT), or None.
        contour_name: its file name (only its extension is used).
        clinical: validated form values.
        warnings: messages for the page (e.g. values outside the training population).
        limits: upload limits.
        tmp_root: where request folders are created (default: the system's temp folder).
        render: render the overlay, histogram and report PNGs.

    Raises:
        UploadError: a refused upload (its ``status`` is the HTTP status).
        NpcaiError: the upload could not be turned into the model's input.
    """
    from npcai.cohort.ingest import ingest
    from npcai.serve.pipeline import score_patient
    from npcai.serve.render import percentile

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=tmp_root))
    try:
        zip_path = work / "images.zip"
        _copy(images, zip_path)
        contour_path = None
        if contour is not None:
            name = (contour_name or "").lower()
            suffix = next((s for s in (".nii.gz", ".nii", ".nrrd") if name.endswith(s)), ".dcm")
            contour_path = work / f"contour{suffix}"
            _copy(contour, contour_path)
        p = served.roi_params
        t_copy = time.perf_counter()
        up = prepare_patient(zip_path, contour_path, work, limits, clinical=clinical,
                             timepoint="pre" if p["timepoint"] == "both" else p["timepoint"],
                             sequence=p["sequences"][0])
        t_unpack = time.perf_counter()
        ingest(up.dicom, images=up.images, contours=up.contours, clinical=up.clinical, out=work / "cohort")
        t_ingest = time.perf_counter()
        result = score_patient(served, work / "cohort")
        pct = percentile(served.reference, result.probability)
        pseudonym = "U-" + secrets.token_hex(3).upper()
        seconds = {"upload": t_copy - t0, "unpack": t_unpack - t_copy, "ingest": t_ingest - t_unpack, **result.seconds}
        pred = Prediction(pseudonym=pseudonym, result=result, clinical=dict(clinical), warnings=list(warnings or []),
                          percentile=pct, seconds=seconds)
        if render:
            t_r = time.perf_counter()
            _render(served, pred)
            seconds["render"] = time.perf_counter() - t_r
        seconds["total"] = time.perf_counter() - t0
        seconds["model_compute"] = seconds["forward"] + seconds["cam"]
        return pred
    except UploadError as exc:
        raise UploadError(_scrub(str(exc), work), exc.status) from None
    except NpcaiError as exc:
        raise UploadError(_scrub(str(exc), work), 422) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _render(served, pred: Prediction) -> None:
    from npcai.serve.render import cam_png, reference_png, report_png

    thr = (served.card.threshold or {}).get("value")
    pred.figures["reference"] = reference_png(served.reference, pred.result.probability, thr, served.card.endpoint)
    pred.figures["cams"] = [cam_png(s) for s in pred.result.slices]
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    pred.figures["report"] = report_png(pseudonym=pred.pseudonym, result=pred.result, card=served.card,
                                        reference=served.reference, percentile_value=pred.percentile,
                                        warnings=pred.warnings, clinical=pred.clinical, notice=NOTICE,
                                        created=created)


class WorkerPool:
    """A fixed number of worker threads and a bounded number of admitted requests.

    Args:
        workers: requests computed at the same time.
        queue: requests allowed to wait for a worker; beyond that the server answers 503.
    """

    def __init__(self, workers: int = 1, queue: int = 8):
        if workers < 1 or queue < 0:
            raise NpcaiError(f"workers must be >= 1 and queue >= 0 (got {workers}, {queue})")
        self.workers, self.queue = workers, queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="npcai-serve")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    async def run(self, fn, *args, **kwargs):
        if not self._slots.acquire(blocking=False):
            raise UploadError(f"server busy: {self.workers + self.queue} requests are already running or queued; "
                              "try again in a minute", status=503)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._tracked, fn, args, kwargs)
        finally:
            self._slots.release()

    def _tracked(self, fn, args, kwargs):
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.active -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
