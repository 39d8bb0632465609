"""Benchmark: ingest speed (slices/s) on the default phantom export vs bare pydicom reading.

Measured in one run on the same files: (1) ``pydicom.dcmread`` of every DICOM file (the
floor any DICOM ingest pays), (2) the same plus decoding ``pixel_array``, (3) the full
``npcai.cohort.ingest.ingest`` (header scan, geometry checks, pixel reading, contour checks,
NIfTI writing, hashing) with 1 worker and with N workers (``--workers``, default one per free
core), each writing gzip ``.nii.gz`` (the default) and uncompressed ``.nii``. Reports slices/s
and each ingest's ratio to both pydicom rates; the target (issue 20) is >= 0.5 x
dcmread + pixel_array.

The default phantom export (120 patients, 256 px, 16 slices, T1c, pre only) is generated
once into a cache folder (``--cache``, default /tmp/npcai-bench/phantom-default).

Usage::

    .venv/bin/python benchmarks/ingest.py [--export DIR] [--cache DIR] [--repeat 1] [--workers N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def _default_export(cache: Path) -> Path:
    from npcai.cohort.phantom import generate_phantom

    if (cache / "phantom.json").is_file() and (cache / "dicom").is_dir():
        return cache
    print(f"generating the default phantom export into {cache} (once) ...", flush=True)
    t = time.perf_counter()
    generate_phantom(cache, overwrite=True)
    print(f"  done in {time.perf_counter() - t:.1f} s", flush=True)
    return cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=None, help="existing phantom export (default: generate)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/npcai-bench/phantom-default"),
                    help="where the default phantom export is generated and reused")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions; the best time of each is reported")
    ap.add_argument("--workers", type=int, default=None, help="N for the N-worker rows (default: free cores)")
    args = ap.parse_args()

    import pydicom

    from npcai.cohort.ingest import ingest

    export = args.export or _default_export(args.cache)
    files = sorted((export / "dicom").rglob("*.dcm"))
    n = len(files)
    # warm the page cache so both measurements read from memory
    for f in files:
        f.read_bytes()

    from npcai.threads import available_cores

    cores = available_cores()
    n_workers = args.workers or cores
    variants = [(w, c) for c in (True, False) for w in sorted({1, n_workers})]
    t_read, t_decode = float("inf"), float("inf")
    t_ingest = {v: float("inf") for v in variants}
    report = {}
    for _ in range(args.repeat):
        t = time.perf_counter()
        for f in files:
            pydicom.dcmread(f)
        t_read = min(t_read, time.perf_counter() - t)

        t = time.perf_counter()
        for f in files:
            _ = pydicom.dcmread(f).pixel_array
        t_decode = min(t_decode, time.perf_counter() - t)

        for workers, compress in variants:
            tmp = Path(tempfile.mkdtemp(prefix="npcai-bench-ingest-"))
            try:
                t = time.perf_counter()
                report = ingest(export / "dicom", clinical=export / "clinical.csv", out=tmp / "cohort",
                                contours=export / "contours", workers=workers, compress=compress)
                t_ingest[workers, compress] = min(t_ingest[workers, compress], time.perf_counter() - t)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            assert report["slices"] == n, (report["slices"], n)

    result = {
        "export": str(export), "files": n, "patients": report["patients"], "scans": report["scans"],
        "free_cores": cores, "n_workers": n_workers,
        "pydicom_dcmread_slices_per_s": round(n / t_read, 1),
        "pydicom_dcmread_pixel_array_slices_per_s": round(n / t_decode, 1),
        "ingest": [],
    }
    print(f"same {n} files ({report['scans']} scans), best of {args.repeat}, {cores} free core(s), N = {n_workers}")
    print(f"  bare pydicom.dcmread            {n / t_read:7.0f} slices/s")
    print(f"  pydicom.dcmread + pixel_array   {n / t_decode:7.0f} slices/s   <- the reference")
    print(f"  {'npcai ingest':31s} {'slices/s':>7s}   {'seconds':>7s}  x dcmread  x dcmread+pixel_array")
    for (workers, compress), seconds in t_ingest.items():
        rate = n / seconds
        row = {"workers": workers, "compressed": compress, "seconds": round(seconds, 2),
               "slices_per_s": round(rate, 1), "ratio_vs_dcmread": round(rate / (n / t_read), 3),
               "ratio_vs_dcmread_pixel_array": round(rate / (n / t_decode), 3)}
        result["ingest"].append(row)
        label = f"--workers {workers}{'' if compress else ' --uncompressed'}"
        print(f"  {label:31s} {rate:7.0f}   {seconds:7.2f}  {row['ratio_vs_dcmread']:9.2f}  "
              f"{row['ratio_vs_dcmread_pixel_array']:20.2f}")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
