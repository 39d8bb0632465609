"""Segmentation benchmark: Dice each architecture reaches on the default phantom within a fixed
CPU budget, and inference speed (slices/s). Printed, not asserted.

    .venv/bin/python benchmarks/segment.py [--work /tmp/npcai-bench-segment] [--minutes 10] [--size 64] [--threads 1]

Generates the default phantom (120 patients, 256 px, 16 slices) and ingests it once (reused
when present), trains U-Net and DeepLabV3 (same encoder, split and budget), evaluates both on
the same test patients, compares them, and times whole-volume inference of the better one.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/npcai-bench-segment"))
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per architecture")
    ap.add_argument("--size", type=int, default=64, help="model grid (px)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from npcai.cohort.ingest import ingest
    from npcai.cohort.model import Cohort
    from npcai.cohort.phantom import generate_phantom
    from npcai.segmentation.compare import compare_segruns
    from npcai.segmentation.evaluate import evaluate_segrun
    from npcai.segmentation.predict import predict_volume
    from npcai.segmentation.train import load_segrun, train_segmenter

    work = args.work
    export, cohort = work / "export", work / "cohort"
    if not (cohort / "cohort.json").is_file():
        t = time.perf_counter()
        generate_phantom(export, overwrite=True)
        ingest(export / "dicom", clinical=export / "clinical.csv", out=cohort, contours=export / "contours",
               overwrite=True)
        print(f"phantom + ingest: {time.perf_counter() - t:.0f} s")
    runs = {}
    for arch in ("unet", "deeplabv3"):
        out = work / f"seg_{arch}"
        if not (out / "summary.json").is_file():
            train_segmenter(cohort, out, overwrite=True, arch=arch, encoder=args.encoder, size=args.size,
                            batch_size=args.batch_size, epochs=40, max_minutes=args.minutes, patience=10)
        run = load_segrun(out)
        ev = evaluate_segrun(run)
        s, m = run.summary, ev.metrics
        print(f"{arch:10s} {args.encoder} {args.size}px budget {args.minutes:g} min: {s['epochs_run']} epochs "
              f"(best {s['best_epoch']}), val Dice {s['val_dice']:.3f}; test Dice per slice: " +
              ", ".join(f"{r} {m['slice'][r]['dice']['estimate']:.3f} "
                        f"({m['slice'][r]['dice']['low']:.3f}-{m['slice'][r]['dice']['high']:.3f})"
                        for r in m["slice"]) +
              f"; per patient tumour {m['patient']['tumour']['dice']['estimate']:.3f}, "
              f"HD95 tumour {m['patient']['tumour']['hd95_mm']['estimate']:.1f} mm")
        runs[arch] = run
    cmp = compare_segruns(work / "seg_unet", work / "seg_deeplabv3")
    print(f"compare on {cmp.n_patients} test patients: better = {cmp.better} "
          f"(difference {cmp.difference['estimate']:+.3f}, Wilcoxon p = {cmp.p_value})")
    co = Cohort.load(cohort)
    vols = [co.read_array(s) for s in co.scans()[:10]]
    for arch, run in runs.items():
        predict_volume(run, vols[0])           # warm-up
        t = time.perf_counter()
        n = 0
        for v in vols:
            predict_volume(run, v)
            n += len(v)
        dt = time.perf_counter() - t
        print(f"inference {arch}: {n / dt:.1f} slices/s ({n} slices of 256 px via the {args.size} px model grid, "
              f"incl. normalisation, resizing and component filtering; torch threads {args.threads})")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
