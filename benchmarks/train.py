"""Training throughput: npcai's ROI-cache pipeline vs the pure model ceiling vs a PNG-decoding loader.

Measured in one run on the same model, batch size and images:

1. ceiling   forward + backward + optimiser step on tensors already in memory (no data loading);
2. npcai     the training data path of ``npcai train``: batches gathered from the memory-mapped
             ROI cache (``SliceDataset`` + ``EpochShuffleSampler`` + DataLoader), augmented on
             tensors, then the same step;
3. png       the seeds' way: every step decodes one PNG file per slice (PIL), per-item collate,
             the same augmentation and step.

Prints images/s for each and the ratios npcai/ceiling (target >= 0.9) and npcai/png.

Where a CUDA GPU is present (or with ``--device DEV``), the same model is then timed on that
device, next to its own pure-compute ceiling:

4. device ceiling   the step on batches already on the device;
5. device npcai     memmap batch -> pinned host memory -> device (non-blocking), augmentation
                    and step on the device (what ``npcai train --accelerator gpu`` does per step),

with ``--precision 32|16-mixed|bf16-mixed`` (autocast, as Lightning's mixed precision) and the
ratio npcai/ceiling on the device. ``--device cpu`` runs this path on the CPU (to check it).

Usage: ``.venv/bin/python benchmarks/train.py [--patients 24] [--size 128] [--steps 4] [--rounds 3]
[--device cuda] [--precision bf16-mixed]``
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _cohort(root: Path, patients: int, size: int) -> Path:
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom
    from npcai.imaging.roi_cache import build_roi

    generate_phantom(root / "export", patients=patients, size=256, slices=8, seed=0)
    ingest(root / "export" / "dicom", clinical=root / "export" / "clinical.csv", out=root / "cohort",
           contours=root / "export" / "contours")
    build_roi(root / "cohort", "bench", "expand:10mm", size=size, slices="all", min_component=(1, 1))
    return root / "cohort"


def _step(model, opt, x, y):
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _timed(it, model, opt, steps: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second) over ``steps`` batches of iterator ``it``.

    CPU time (all threads of this process) is reported too because the machine's cores may
    be shared: it measures the work done, wall time what a user waits.
    """
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    for _ in range(steps):
        x, y = next(it)
        _step(model, opt, x, y)
        n += len(y)
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def _device_rates(device: torch.device, model, images, labels: np.ndarray, args) -> dict[str, float]:
    """images/s of the pure step and of npcai's batches on ``device`` (median of the rounds)."""
    from npcai.models.data import EpochShuffleSampler, SliceAugment, read_rows

    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    aug = SliceAugment(seed=0)
    n, bs = len(labels), args.batch_size
    pin = device.type == "cuda"

    def step(x, y):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    x_dev = torch.from_numpy(np.asarray(images[: min(n, bs)], dtype=np.float32)).to(device)
    y_dev = torch.from_numpy(labels[: len(x_dev)]).to(device)
    order = list(EpochShuffleSampler(range(n), seed=0))

    def npcai_batch(i):
        rows = np.asarray(order[(i * bs) % n:(i * bs) % n + bs] or order[:bs])
        x = read_rows(images, rows)
        x = x.pin_memory() if pin else x
        x = x.to(device, non_blocking=True)
        y = torch.from_numpy(labels[rows]).to(device, non_blocking=True)
        return aug(x, step=i), y

    step(x_dev, y_dev)
    step(*npcai_batch(0))                              # warm-up (cuDNN autotuning, allocator)
    rates: dict[str, list[float]] = {"ceiling": [], "npcai": []}
    i = 1
    for _ in range(args.rounds):
        sync()
        t = time.perf_counter()
        for _ in range(args.steps):
            step(x_dev, y_dev)
        sync()
        rates["ceiling"].append(args.steps * len(y_dev) / (time.perf_counter() - t))
        t, k = time.perf_counter(), 0
        for _ in range(args.steps):
            x, y = npcai_batch(i)
            step(x, y)
            i, k = i + 1, k + len(y)
        sync()
        rates["npcai"].append(k / (time.perf_counter() - t))
    return {k: float(np.median(v)) for k, v in rates.items()}


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--size", type=int, default=128, help="ROI side in px")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per method and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else None,
                    help="also time on this device (default: cuda when a GPU is present); cpu checks the path")
    ap.add_argument("--precision", default="32", choices=("32", "16-mixed", "bf16-mixed"),
                    help="autocast precision of the device timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models import create_classifier
    from npcai.models.data import EpochShuffleSampler, SliceAugment, SliceDataset, collate_batch

    tmp = Path(tempfile.mkdtemp(prefix="npcai-bench-train-"))
    try:
        t = time.perf_counter()
        cohort = _cohort(tmp, args.patients, args.size)
        roi = RoiDataset.open(cohort, "bench")
        n = len(roi)
        print(f"ROI cache: {n} slices of {roi.images.shape[1:]} from {args.patients} phantom patients "
              f"({time.perf_counter() - t:.0f} s to build); {args.backbone}, batch {args.batch_size}, "
              f"{args.rounds} rounds x {args.steps} timed steps, {torch.get_num_threads()} threads")
        labels = (np.arange(n) % 2).astype(np.float32)
        aug = SliceAugment(seed=0)
        need = (args.steps * args.rounds + 1) * args.batch_size

        torch.manual_seed(0)
        model = create_classifier(args.backbone, in_chans=roi.images.shape[1])
        model.train()
        opt = torch.optim.Adam(model.parameters(), 1e-4)

        # 1. ceiling: tensors in memory, pure compute
        x_all = torch.from_numpy(np.asarray(roi.images[: min(n, need)], dtype=np.float32))
        y_all = torch.from_numpy(labels[: len(x_all)])

        def preloaded():
            i = 0
            while True:
                idx = torch.arange(i, i + args.batch_size) % len(x_all)
                i += args.batch_size
                yield x_all[idx], y_all[idx]


        # 2. npcai: memmap batches + tensor augmentation
        ds = SliceDataset(roi.images, np.arange(n), labels)
        loader = DataLoader(ds, batch_size=args.batch_size, sampler=EpochShuffleSampler(ds, seed=0),
                            collate_fn=collate_batch, num_workers=0)

        def npcai_batches():
            step = 0
            while True:
                for x, y, _ in loader:
                    yield aug(x, step=step), y
                    step += 1


        # 3. png: decode one file per slice every step (the seeds' loaders)
        png_dir = tmp / "png"
        png_dir.mkdir()
        lo, hi = float(np.min(roi.images[:need])), float(np.max(roi.images[:need]))
        for i in range(n):
            img = np.asarray(roi.images[i, 0], dtype=np.float32)
            Image.fromarray(np.uint8(np.clip((img - lo) / (hi - lo + 1e-6), 0, 1) * 255)).save(png_dir / f"{i}.png")

        class PngDataset(Dataset):
            def __len__(self):
                return n

            def __getitem__(self, i):
                arr = np.asarray(Image.open(png_dir / f"{i}.png"), dtype=np.float32) / 255.0
                return torch.from_numpy(arr)[None], torch.tensor(labels[i])

        png_loader = DataLoader(PngDataset(), batch_size=args.batch_size, shuffle=True, num_workers=0,
                                generator=torch.Generator().manual_seed(0))

        def png_batches():
            step = 0
            while True:
                for x, y in png_loader:
                    yield aug(x, step=step), y
                    step += 1

        # interleave the methods over several rounds (drift and shared cores hit all alike)
        iters = {"ceiling": preloaded(), "npcai": npcai_batches(), "png": png_batches()}
        for it in iters.values():  # warm-up step each
            _step(model, opt, *next(it))
        rates = {k: [] for k in iters}
        for _ in range(args.rounds):
            for name, it in iters.items():
                rates[name].append(_timed(it, model, opt, args.steps))
        wall = {k: float(np.median([r[0] for r in v])) for k, v in rates.items()}
        cpu = {k: float(np.median([r[1] for r in v])) for k, v in rates.items()}
        print(f"{'method':<10}{'images/s (wall)':>17}{'images/CPU-s':>15}   (median of {args.rounds} rounds)")
        for name in iters:
            print(f"{name:<10}{wall[name]:>17.1f}{cpu[name]:>15.1f}")
        for a, b, note in (("npcai", "ceiling", "  (target >= 0.9)"), ("npcai", "png", ""), ("png", "ceiling", "")):
            print(f"{a} / {b:<8} = {wall[a] / wall[b]:.3f} wall, {cpu[a] / cpu[b]:.3f} CPU{note}")
        if args.device:
            device = torch.device(args.device)
            dev = _device_rates(device, model, roi.images, labels, args)
            print(f"on {device} ({_device_name(device)}), precision {args.precision}, batch {args.batch_size}:")
            print(f"{'device ceiling':<16}{dev['ceiling']:>11.1f} images/s")
            print(f"{'device npcai':<16}{dev['npcai']:>11.1f} images/s")
            print(f"device npcai / device ceiling = {dev['npcai'] / dev['ceiling']:.3f}; "
                  f"device npcai / CPU npcai = {dev['npcai'] / wall['npcai']:.1f}x")
        else:
            print("no GPU here: device timing skipped (--device cpu checks its code path)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
