"""Segmentation benchmark: Dice reached within a fixed CPU budget, on real CT or on the phantom.
Printed, not asserted.

    .venv/bin/python benchmarks/segment.py [--data openkbp|phantom] [--work DIR] [--minutes M] [--threads 1]

``--data openkbp`` (default): the 40 OpenKBP head-and-neck CTs of ``../shared/realdata/openkbp-hn-ct``
(128 x 128 x 128 voxels; the README says 3.9 x 3.9 x 2.5 mm, but the spacing varies by patient:
2.7-5.1 mm in-plane and 1.5-3.0 mm between slices; label 1 = PTV70). They are ingested once into
``WORK/cohort`` (symlinks + ids.csv, as tests/segmentation/test_realdata.py does; reused when
present). One U-Net is trained on a patient split (test patients 1/5, never used for training
or selection; validation patients 1/5 of the rest select the epoch) with the levers of
``npcai segment train``: 2.5D input (``--context``), slices without PTV sampled in proportion
(``--negative-fraction``), a CT window, and 3D largest-component post-processing. It is
evaluated on the test patients (Dice per slice and per patient with 95% patient-bootstrap
CIs, HD95, volume error), automatic masks are predicted, and one overlay PNG per test
patient is written to ``WORK/overlays/``. Prints the numbers, the wall time and the budget.

Measured (2 shared CPU cores, torch 1 thread, 25 min budget, split seed 0, 8 test patients):
per-patient Dice 0.526 (95% CI 0.442-0.609), per slice 0.548 (0.483-0.614), HD95 43 mm;
without --spatial-augment 0.406 (0.294-0.495). The previous 2D recipe (slices with PTV
only, whole 128 px slice) gave 0.289 per patient with masks 3x too large.

``--data phantom``: the default phantom (120 patients, 256 px, 16 slices), U-Net and
DeepLabV3 (same encoder, split and budget), compared on the same test patients, and the
whole-volume inference speed of both.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

OPENKBP = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "openkbp-hn-ct"
if not OPENKBP.is_dir():
    OPENKBP = Path("/work/shared/realdata/openkbp-hn-ct")


def _ci(d: dict, digits: int = 3) -> str:
    if d.get("estimate") is None:
        return "n/a"
    if d.get("low") is None:
        return f"{d['estimate']:.{digits}f}"
    return f"{d['estimate']:.{digits}f} (95% CI {d['low']:.{digits}f}-{d['high']:.{digits}f})"


def ingest_openkbp(work: Path) -> Path:
    """Ingest the OpenKBP CTs into ``work/cohort`` once (symlinked inputs, ids.csv); reuse it after."""
    from npcai.cohort.ingest import ingest

    cohort = work / "cohort"
    if (cohort / "cohort.json").is_file():
        return cohort
    if not (OPENKBP / "images").is_dir():
        raise SystemExit(f"OpenKBP CTs not found at {OPENKBP} (expected ../shared/realdata/openkbp-hn-ct)")
    ids = sorted(p.name.removesuffix("_CT.nii.gz") for p in (OPENKBP / "images").glob("*_CT.nii.gz"))
    src = work / "export"
    for sub in ("images", "contours"):
        (src / sub).mkdir(parents=True, exist_ok=True)
        for p in ids:
            link = src / sub / f"{p}_CT.nii.gz"
            if not link.exists():
                link.symlink_to(OPENKBP / sub / f"{p}_CT.nii.gz")
    (src / "ids.csv").write_text("hospital_id\n" + "\n".join(ids) + "\n")
    t = time.perf_counter()
    ingest(images=src / "images", contours=src / "contours", clinical=src / "ids.csv", out=cohort, overwrite=True)
    print(f"ingest of {len(ids)} OpenKBP CTs: {time.perf_counter() - t:.0f} s")
    return cohort


def run_openkbp(args) -> None:
    import pandas as pd

    from npcai.segmentation.evaluate import evaluate_segrun
    from npcai.segmentation.overlay import overlay_contours
    from npcai.segmentation.predict import predict_masks
    from npcai.segmentation.train import load_segrun, train_segmenter

    t_all = time.perf_counter()
    work = args.work
    cohort = ingest_openkbp(work)
    out = work / args.name
    options = dict(arch="unet", encoder=args.encoder, encoder_depth=args.encoder_depth, pretrained=False,
                   labels=args.labels, size=args.size, batch_size=args.batch_size, optimizer="adam", lr=args.lr,
                   epochs=args.epochs, patience=args.patience, max_minutes=args.minutes,
                   normalise=args.window, context=args.context, crop_mm=args.crop_mm, negative_fraction=args.negative_fraction,
                   min_component=args.min_component, keep_largest_3d=args.keep_largest_3d,
                   split_seed=args.split_seed, seed=0, spatial_augment=args.spatial_augment)
    t = time.perf_counter()
    if not (out / "summary.json").is_file():
        train_segmenter(cohort, out, overwrite=True, **options)
    t_train = time.perf_counter() - t
    run = load_segrun(out)
    s = run.summary
    print(f"OpenKBP PTV70 (label 1; classes trained: {args.labels}), {s['patients']['train']}/{s['patients']['val']}/{s['patients']['test']} "
          f"train/val/test patients; U-Net {args.encoder} depth {args.encoder_depth}, {args.size} px grid of the "
          f"centred {args.crop_mm:g} mm square, "
          f"context {args.context} (channels {2 * args.context + 1}), negative fraction {args.negative_fraction}, "
          f"window {args.window}, Adam lr {args.lr}, batch {args.batch_size}, spatial augmentation "
          f"{'on' if args.spatial_augment else 'off'}")
    print(f"training: budget {args.minutes:g} min on {args.threads} CPU thread(s); {s['epochs_run']} epochs "
          f"(best {s['best_epoch']}), {s['seconds']:.0f} s, val Dice per slice {s['val_dice']:.3f}; slices/epoch "
          f"{s['slices']['train']} with PTV + {s['slices'].get('train_without_target_per_epoch', 0)} without")
    t = time.perf_counter()
    rows = []
    target = "PTV70" if args.labels == "tumour" else "PTV70 or PTV56/63"
    for label, mc, largest in (("2D only (10x10 px drop, no 3D)", "10x10", False),
                               (f"saved post-processing ({run.config['options']['min_component']} px drop"
                                f"{', largest 3D component' if run.config['options']['keep_largest_3d'] else ''})",
                                None, None)):
        ev = evaluate_segrun(run, min_component=mc, keep_largest_3d=largest, n_boot=2000, write=mc is None)
        m = ev.metrics
        p = m["patient"]["tumour"]
        rows.append(label)
        print(f"test, {label}: {m['n_patients']} patients, {m['n_slices']} slices with {target}")
        print(f"  Dice per slice   {_ci(m['slice']['tumour']['dice'])}")
        print(f"  Dice per patient {_ci(p['dice'])}")
        print(f"  HD95 (mm)        {_ci(p['hd95_mm'], 1)}")
        print(f"  |volume error|   {_ci(p['abs_volume_rel_error'], 2)} (relative); missed patients "
              f"{p['patients_missed']}")
        if "both" in m["patient"]:
            b = m["patient"]["both"]
            print(f"  all planning targets (PTV70 + PTV56/63 as one region): Dice per patient {_ci(b['dice'])}, "
                  f"HD95 {_ci(b['hd95_mm'], 1)} mm")
    pts = ev.patients[["patient_id", "dice_tumour", "hd95_mm_tumour", "volume_true_ml_tumour",
                       "volume_pred_ml_tumour"]]
    with pd.option_context("display.width", 120, "display.precision", 3):
        print(pts.to_string(index=False))
    t_eval = time.perf_counter() - t
    t = time.perf_counter()
    predict_masks(cohort, run)
    ov = work / "overlays"
    for pid in run.patients("test"):
        overlay_contours(cohort, pid, ov / f"{args.name}_{pid}.png", n_slices=4)
    t_pred = time.perf_counter() - t
    print(f"overlays: {ov}/{args.name}_<patient>.png ({len(run.patients('test'))} test patients)")
    print(f"wall time: training {t_train / 60:.1f} min (budget {args.minutes:g} min), evaluation "
          f"{t_eval / 60:.1f} min, predict + overlays {t_pred / 60:.1f} min, total "
          f"{(time.perf_counter() - t_all) / 60:.1f} min; torch threads {args.threads}")


def run_phantom(args) -> None:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=("openkbp", "phantom"), default="openkbp")
    ap.add_argument("--work", type=Path, default=None,
                    help="work folder (default /tmp/npcai-bench-segment-<data>; the ingested cohort is reused)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="training budget (default 25 min for openkbp, 10 per architecture for the phantom)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--size", type=int, default=None, help="model grid in px (default 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    g = ap.add_argument_group("openkbp levers")
    g.add_argument("--name", default="ptv70", help="run folder name under --work")
    g.add_argument("--encoder-depth", type=int, default=4)
    g.add_argument("--labels", default="tumour",
                   help="classes trained: tumour (PTV70 alone) or tumour,nodes (PTV70 and, as a second class, "
                        "label 2 = PTV56/63 outside it); PTV70 is what is scored")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--epochs", type=int, default=60)
    g.add_argument("--patience", type=int, default=12)
    g.add_argument("--context", type=int, default=2, help="2.5D neighbour slices each side")
    g.add_argument("--negative-fraction", type=float, default=0.3)
    g.add_argument("--window", default="window:40,400", help="CT normalisation")
    g.add_argument("--crop-mm", type=float, default=250.0,
                   help="centred square of each slice the network sees (250 mm = 64 px of 3.9 mm, the most common spacing; the crop is in mm, so every patient's is the same physical size)")
    g.add_argument("--min-component", default="3x3")
    g.add_argument("--keep-largest-3d", action=argparse.BooleanOptionalAction, default=True)
    g.add_argument("--split-seed", type=int, default=0)
    g.add_argument("--spatial-augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random rotation/scale/shift of training slices")
    args = ap.parse_args()
    args.work = args.work or Path(f"/tmp/npcai-bench-segment-{args.data}")
    args.minutes = args.minutes if args.minutes is not None else (25.0 if args.data == "openkbp" else 10.0)
    args.size = args.size or 64

    import torch

    torch.set_num_threads(args.threads)
    (run_openkbp if args.data == "openkbp" else run_phantom)(args)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
