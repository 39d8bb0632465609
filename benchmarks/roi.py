"""Benchmark the ROI cache: build rate, and random-batch reads from the cache vs PNG decoding.

The seeds' loaders (e.g. study 002's released code) keep each ROI slice as an image file and
decode it with PIL every time a batch is drawn. npcai decodes, normalises and crops once
(``npcai roi build``) and reads batches from a memory-mapped float16 array. This script
measures, in one run and on the same slices:

* build rate: slices/s of ``build_roi`` (wall and CPU time);
* cache read rate: slices/s of random batches read from ``images.npy`` (memmap -> torch
  float32, as :meth:`npcai.imaging.roi_cache.RoiDataset.batch` does);
* PNG read rate: slices/s of the same random batches decoded from PNG files with PIL
  (written once beforehand as 8-bit greyscale at the training size, the most favourable
  case for PNG: no resize, no normalisation in the loop) -> torch float32;
* the ratio cache / PNG.

Usage::

    .venv/bin/python benchmarks/roi.py                      # builds a 24-patient phantom
    .venv/bin/python benchmarks/roi.py --cohort COHORT      # an existing cohort (T1c)

Both read paths hit the OS page cache after the first pass (the files are small), so the
ratio compares decoding work, not disk speed.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_cohort(work: Path, patients: int, size: int) -> Path:
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    export = work / "export"
    generate_phantom(export, patients=patients, size=size, slices=16, seed=0)
    cohort = work / "cohort"
    ingest(export / "dicom", clinical=export / "clinical.csv", out=cohort, contours=export / "contours")
    return cohort


def _read_rates(images: np.ndarray, png_dir: Path, batch: int, n_batches: int, seed: int = 0
                ) -> tuple[float, float]:
    import torch
    from PIL import Image

    rng = np.random.default_rng(seed)
    batches = [np.sort(rng.choice(len(images), size=min(batch, len(images)), replace=False))
               for _ in range(n_batches)]
    t0 = time.perf_counter()
    total = 0.0
    for idx in batches:                        # what a training loop does with the cache
        x = torch.from_numpy(images[idx]).float()
        total += float(x[:, 0, 0, 0].sum())
    cache_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for idx in batches:                        # what the seeds' loaders do every epoch
        x = torch.from_numpy(np.stack([np.asarray(Image.open(png_dir / f"{i:06d}.png"))
                                       for i in idx])).float().div_(255.0)
        total += float(x[:, 0, 0].sum())
    png_s = time.perf_counter() - t0
    n = sum(len(b) for b in batches)
    return n / cache_s, n / png_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, help="existing cohort (default: make a phantom)")
    ap.add_argument("--patients", type=int, default=24, help="phantom patients (default 24)")
    ap.add_argument("--image-size", type=int, default=256, help="phantom image size (default 256)")
    ap.add_argument("--variant", default="expand:20px")
    ap.add_argument("--size", type=int, default=224, help="ROI size (default 224)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=60)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)                   # one core each way: a fair, quiet comparison

    from PIL import Image

    from npcai.imaging.roi_cache import RoiDataset, build_roi

    work = Path(tempfile.mkdtemp(prefix="npcai-bench-roi-"))
    try:
        cohort = args.cohort or _make_cohort(work, args.patients, args.image_size)
        name = "bench-roi"
        if (cohort / "roi" / name).exists():
            shutil.rmtree(cohort / "roi" / name)
        w0, c0 = time.perf_counter(), time.process_time()
        build_roi(cohort, name, args.variant, region="both", size=args.size)
        build_wall, build_cpu = time.perf_counter() - w0, time.process_time() - c0
        w0 = time.perf_counter()
        build_roi(cohort, name, args.variant, region="both", size=args.size)
        noop_wall = time.perf_counter() - w0
        ds = RoiDataset.open(cohort, name)
        n = len(ds)

        png_dir = work / "png"
        png_dir.mkdir()
        for i in range(n):                         # the seeds' format: one 8-bit PNG per slice
            x = np.asarray(ds.images[i, 0], np.float32)
            u8 = np.clip((x + 3.0) / 6.0 * 255.0, 0, 255).astype(np.uint8)
            Image.fromarray(u8).save(png_dir / f"{i:06d}.png")
        _read_rates(ds.images, png_dir, args.batch, 2)               # warm the page cache
        cache_rate, png_rate = _read_rates(ds.images, png_dir, args.batch, args.batches, seed=1)

        print(f"ROI benchmark: {args.variant}, region both, {n} slices of {ds.images.shape[1:]} "
              f"from {ds.params['n_patients']} patients ({cohort})")
        print(f"  build:        {n / build_wall:8.1f} slices/s wall ({build_wall:.1f} s), "
              f"{n / build_cpu:8.1f} slices/s CPU ({build_cpu:.1f} s); no-op rebuild {noop_wall:.2f} s")
        print(f"  read (cache): {cache_rate:8.0f} slices/s  random batches of {args.batch}, memmap -> torch float32")
        print(f"  read (PNG):   {png_rate:8.0f} slices/s  same batches, PIL decode -> torch float32")
        print(f"  ratio cache/PNG: {cache_rate / png_rate:.1f}x")
    finally:
        if args.cohort is not None and (args.cohort / "roi" / "bench-roi").exists():
            shutil.rmtree(args.cohort / "roi" / "bench-roi")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
