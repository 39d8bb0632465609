"""Benchmark: the web tool, one patient from upload to answer, and a bounded local load test.

Measured in one run against a live ``uvicorn`` on 127.0.0.1 (nothing else is contacted):

1. **One request** (after one warm-up): the whole request as the client sees it, and the
   server's split: upload copy, unpack (zip checks, extraction, de-identification of every
   DICOM file), ingest (series reading, NIfTI conversion, contour checks), ROI build + prediction
   (``npcai.runs.predict_patients``: ROI rebuilt from the run's spec, checkpoint loaded, slices
   predicted), the network's forward pass alone on the same slices, Grad-CAM, rendering of the
   overlays/histogram/report. "Model compute" is the forward pass + Grad-CAM; the ratio to the
   whole request says what the pipeline around the network costs. Target: under 3 s for the whole request on 2 CPU cores.
2. **Load test**: 20 requests, 4 clients at a time, through the server's bounded worker pool;
   every answer is checked against the run's own prediction for that patient (the patients
   are from the run's cohort), and the request folders are checked to be gone. Prints the
   latency distribution.

The model is fast-preset-like: ResNet-18 from scratch on 64 px bbox crops around the tumour
grown by 10 px, trained for 2 epochs on a phantom export (40 patients, 256 px, 16 slices),
built once into ``--cache``.

Usage::

    .venv/bin/python benchmarks/serve.py [--cache DIR] [--requests 20] [--concurrency 4] [--workers 2]
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLINICAL = {"age": 52, "t_stage": 3, "n_stage": 1, "treatment": "CCRT"}
STAGES = ("upload", "unpack", "ingest", "roi_and_prediction", "forward", "cam", "render")


def _model(cache: Path, patients: int) -> tuple[Path, Path, Path]:
    """(export, cohort, run), built once into ``cache``."""
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom
    from npcai.imaging.roi_cache import build_roi
    from npcai.models.train import TrainConfig, train

    from npcai.errors import NpcaiError
    from npcai.runs import load_run

    export, cohort, run = cache / "export", cache / "cohort", cache / "run"
    if (run / "summary.json").is_file():
        try:
            load_run(run)                 # a run of an older format or a changed cohort is rebuilt
            return export, cohort, run
        except NpcaiError as exc:
            print(f"rebuilding the cached model ({exc})", flush=True)
    print(f"building the benchmark model into {cache} (once) ...", flush=True)
    t = time.perf_counter()
    shutil.rmtree(cache, ignore_errors=True)
    generate_phantom(export, patients=patients, size=256, slices=16, seed=3)
    ingest(export / "dicom", clinical=export / "clinical.csv", out=cohort, contours=export / "contours")
    build_roi(cohort, "bbox10", "expand:10px", size=64, frame="bbox")
    train(TrainConfig(cohort=str(cohort), roi="bbox10", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, epochs=2, batch_size=16, lr=1e-3), run)
    print(f"  done in {time.perf_counter() - t:.1f} s", flush=True)
    return export, cohort, run


def _upload(export: Path, hospital_id: str) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((export / "dicom" / hospital_id).rglob("*.dcm")):
            zf.write(p, p.relative_to(export / "dicom"))
    return buf.getvalue(), (export / "contours" / f"{hospital_id}_pre_T1c.nii.gz").read_bytes()


def _serve(run: Path, tmp_root: Path, workers: int, queue: int):
    import uvicorn

    from npcai.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run, tmp_root=tmp_root, workers=workers, queue=queue),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _post(client, url: str, upload: tuple[bytes, bytes]) -> tuple[float, dict]:
    t = time.perf_counter()
    r = client.post(url + "/api/predict", files={"images": ("p.zip", upload[0], "application/zip"),
                                                 "contour": ("c.nii.gz", upload[1])},
                    data={"clinical": json.dumps(CLINICAL)}, timeout=300)
    wall = time.perf_counter() - t
    if r.status_code != 200:
        raise SystemExit(f"request failed ({r.status_code}): {r.text[:300]}")
    return wall, r.json()


def _q(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/npcai-bench/serve"))
    ap.add_argument("--patients", type=int, default=40, help="phantom patients for the model (built once)")
    ap.add_argument("--single", type=int, default=5, help="sequential single requests measured")
    ap.add_argument("--requests", type=int, default=20, help="load test: requests in all")
    ap.add_argument("--concurrency", type=int, default=4, help="load test: clients at a time")
    ap.add_argument("--workers", type=int, default=2, help="server worker threads")
    ap.add_argument("--queue", type=int, default=8, help="server queue length")
    args = ap.parse_args()

    import httpx
    import pandas as pd
    import torch

    export, cohort, run = _model(args.cache, args.patients)
    pseudo = pd.read_csv(cohort.parent / f"{cohort.name}.pseudonyms.csv", dtype=str).set_index("patient_id")
    preds = pd.read_csv(run / "predictions_patients.csv", dtype={"patient_id": str})
    chosen = preds.head(4)
    patients = [(pseudo.loc[p, "hospital_id"], float(prob)) for p, prob in zip(chosen["patient_id"], chosen["prob"])]
    uploads = [_upload(export, hid) for hid, _ in patients]
    tmp_root = Path(tempfile.mkdtemp(prefix="npcai-bench-serve-"))
    torch.set_num_threads(1)
    server, thread, url = _serve(run, tmp_root, args.workers, args.queue)
    try:
        with httpx.Client() as client:
            print(f"server {url}: {args.workers} worker(s), queue {args.queue}; torch threads per worker "
                  f"{torch.get_num_threads()}; upload {len(uploads[0][0]) / 1024:.0f} kB zip "
                  f"({sum(1 for _ in (export / 'dicom' / patients[0][0]).rglob('*.dcm'))} DICOM files)")
            _post(client, url, uploads[0])                       # warm-up: imports, model copy
            walls, splits = [], []
            for _ in range(args.single):
                wall, body = _post(client, url, uploads[0])
                walls.append(wall)
                splits.append(body["seconds"])
            print(f"\n1. one request (median of {args.single}, after one warm-up)")
            total = statistics.median(walls)
            for k in STAGES:
                v = statistics.median(s[k] for s in splits)
                print(f"   {k:<19} {v:7.3f} s  {100 * v / total:5.1f} %")
            server_total = statistics.median(s["total"] for s in splits)
            compute = statistics.median(s["model_compute"] for s in splits)
            print(f"   server total {server_total:6.3f} s; client wall (incl. HTTP, multipart, JSON) {total:.3f} s")
            print(f"   model compute (forward pass + Grad-CAM) {compute:.3f} s = {100 * compute / total:.0f} % of the "
                  f"request; the request costs {total / compute:.1f}x the model compute "
                  f"({'under' if total < 3 else 'OVER'} the 3 s target)")

            print(f"\n2. load test: {args.requests} requests, {args.concurrency} at a time")
            jobs = [i % len(uploads) for i in range(args.requests)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as ex:
                answers = list(ex.map(lambda i: (i, *_post(client, url, uploads[i])), jobs))
            span = time.perf_counter() - t0
            wrong = [i for i, _, body in answers
                     if abs(body["outputs"]["risk"]["probability"] - patients[i][1]) > 2e-3]
            lat = [w for _, w, _ in answers]
            left = list(tmp_root.iterdir())
            print(f"   latency p50 {_q(lat, 0.5):.2f} s, p90 {_q(lat, 0.9):.2f} s, max {max(lat):.2f} s, "
                  f"min {min(lat):.2f} s; throughput {len(lat) / span:.2f} requests/s ({span:.1f} s in all)")
            print(f"   answers equal to the run's own prediction: {len(answers) - len(wrong)}/{len(answers)}; "
                  f"request folders left: {len(left)}")
            if wrong or left:
                raise SystemExit("load test FAILED: wrong answers or temporary folders left")
    finally:
        server.should_exit = True
        thread.join(10)
        shutil.rmtree(tmp_root, ignore_errors=True)


if __name__ == "__main__":
    main()
