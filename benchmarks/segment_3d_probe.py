"""Probe: does a small 3D U-Net on resampled volumes beat the 2.5D recipe on OpenKBP PTV70?

    .venv/bin/python benchmarks/segment_3d_probe.py [--work DIR] [--minutes 20] [--threads 1]

This is a measurement, not a library feature. ``npcai segment train`` is 2D/2.5D. Before
anyone builds a 3D path into the library, this script asks whether one would help on the
real CTs. It uses the cohort and the patient split of ``benchmarks/segment.py``: run that
first, with its default ``--work`` and ``--name``. So the comparison is on the same 26
training, 6 validation and 8 test patients.

Recipe, in the spirit of nnU-Net's low-resolution 3D stage, sized for one CPU core:

* Each CT is windowed as in the 2D run (40/400 HU). The centred 256 mm square is cropped
  and resampled to 4 mm in-plane and 5 mm between slices (64 x 64 px, about 64 slices),
  then padded to 80 slices. The CTs' own spacing varies: 2.7-5.1 mm in-plane, 1.5-3 mm
  between slices.
* MONAI ``UNet`` (3D, channels 16-256, strided convolutions, 2 residual units). Dice +
  BCE loss, AdamW (lr 3e-3), batch 2.
* Augmentation: a random axial rotation (+-10 deg), scaling (0.9-1.1) and shift (+-8 %),
  a left-right flip, and intensity jitter.
* Every 5 epochs the model is scored on the validation patients (per-patient Dice on the
  network grid), and the best one is kept. The test patients select nothing.
* Test: the probability (with its left-right flip averaged in) is resampled to each scan's
  native grid and thresholded at 0.5, and the largest 3D component is kept. Scoring uses the
  library's ``dice_score`` and ``hd95``, and ``mean_ci`` for the patient-bootstrap CI, as in
  ``npcai segment evaluate``.

Measured (1 CPU thread, 20 min budget, split seed 0; 128 epochs, the best at epoch 40):
per-patient test Dice 0.480 (95% CI 0.422-0.533), HD95 43.0 mm. The 2.5D recipe scores 0.526
(0.442-0.609) on the same patients, so no gain that would justify a 3D path.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

SPACING_XY, SPACING_Z, GRID_XY, GRID_Z = 4.0, 5.0, 64, 80


def load_volumes(work: Path, name: str):
    """Windowed, cropped and resampled volumes with their split, and the native masks for scoring."""
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from npcai.cohort.model import Cohort
    from npcai.imaging.normalise import normalise_volume
    from npcai.segmentation.data import crop_box, crop_stack

    cohort = Cohort.load(work / "cohort")
    split = pd.read_csv(work / name / "split.csv", dtype={"patient_id": str}).set_index("patient_id")["split"]
    items = []
    for scan in cohort.scans():
        raw, truth = cohort.read_array(scan), (cohort.read_mask(scan) == 1).astype(np.uint8)
        sp = scan.spacing                                             # (x, y, z) mm
        box = crop_box(raw.shape[1], raw.shape[2], sp, GRID_XY * SPACING_XY)
        vol = crop_stack(normalise_volume(raw, "window:40,400"), box, fill=0.0)
        nz = int(round(vol.shape[0] * sp[2] / SPACING_Z))
        grid = F.interpolate(torch.from_numpy(vol)[None, None], size=(nz, GRID_XY, GRID_XY), mode="trilinear")[0, 0]
        target = F.interpolate(torch.from_numpy(crop_stack(truth, box).astype(np.float32))[None, None],
                               size=(nz, GRID_XY, GRID_XY), mode="trilinear")[0, 0] > 0.5
        x, y = np.zeros((GRID_Z, GRID_XY, GRID_XY), np.float32), np.zeros((GRID_Z, GRID_XY, GRID_XY), np.float32)
        top = (GRID_Z - nz) // 2
        x[top:top + nz], y[top:top + nz] = grid.numpy(), target.numpy()
        items.append({"patient_id": scan.patient_id, "split": split[scan.patient_id], "x": x, "y": y,
                      "top": top, "nz": nz, "box": box, "truth": truth, "spacing": sp})
    return items


def augment(x, y, rng):
    """Random axial rotation, scaling, shift and left-right flip (one affine per volume), intensity jitter."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    theta = torch.tensor(rng.uniform(-10, 10, n) * math.pi / 180, dtype=torch.float32)
    scale = torch.tensor(rng.uniform(0.9, 1.1, n), dtype=torch.float32)
    affine = torch.zeros(n, 3, 4)
    affine[:, 0, 0], affine[:, 0, 1] = torch.cos(theta) / scale, -torch.sin(theta) / scale
    affine[:, 1, 0], affine[:, 1, 1] = torch.sin(theta) / scale, torch.cos(theta) / scale
    affine[:, 2, 2] = 1 / scale
    affine[:, :, 3] = torch.tensor(rng.uniform(-0.08, 0.08, (n, 3)), dtype=torch.float32)
    affine[torch.tensor(rng.random(n) < 0.5), 0, :] *= -1
    grid = F.affine_grid(affine, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5
    gain = torch.tensor(rng.uniform(0.9, 1.1, n), dtype=torch.float32).view(-1, 1, 1, 1, 1)
    shift = torch.tensor(rng.uniform(-0.05, 0.05, n), dtype=torch.float32).view(-1, 1, 1, 1, 1)
    return x * gain + shift, y.float()


def probability(net, x):
    """Foreground probability on the network grid, averaged with the left-right flipped input."""
    import torch

    t = torch.from_numpy(x)[None, None]
    with torch.no_grad():
        return ((torch.sigmoid(net(t)) + torch.sigmoid(net(t.flip(-1))).flip(-1)) / 2)[0, 0]


def grid_dice(net, item) -> float:
    from npcai.segmentation.metrics import dice_score
    from npcai.segmentation.postprocess import keep_largest_3d

    pred = keep_largest_3d((probability(net, item["x"]) > 0.5).numpy().astype(np.uint8))
    return dice_score(item["y"].astype(np.uint8), pred)


def native_prediction(net, item) -> np.ndarray:
    """The label map on the scan's own grid: probability resampled back, thresholded, largest 3D component."""
    import torch.nn.functional as F

    from npcai.segmentation.data import paste_crop
    from npcai.segmentation.postprocess import keep_largest_3d

    prob = probability(net, item["x"])[item["top"]:item["top"] + item["nz"]]
    z, h, w = item["truth"].shape[0], item["box"][2], item["box"][3]
    native = F.interpolate(prob[None, None], size=(z, h, w), mode="trilinear")[0, 0].numpy() > 0.5
    return keep_largest_3d(paste_crop(native.astype(np.uint8), item["box"], item["truth"].shape[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/npcai-bench-segment-openkbp"))
    ap.add_argument("--name", default="ptv70", help="the benchmarks/segment.py run whose split is used")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    from npcai.segmentation.evaluate import mean_ci
    from npcai.segmentation.metrics import dice_score, hd95

    if not (args.work / args.name / "split.csv").is_file():
        raise SystemExit(f"{args.work / args.name}/split.csv not found: run benchmarks/segment.py first")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    items = load_volumes(args.work, args.name)
    train = [it for it in items if it["split"] == "train"]
    val = [it for it in items if it["split"] == "val"]
    test = [it for it in items if it["split"] == "test"]
    net = UNet(3, 1, 1, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
    opt = torch.optim.AdamW(net.parameters(), args.lr, weight_decay=1e-4)
    loss_fn = DiceCELoss(sigmoid=True)
    t0, epoch, best, best_epoch, best_state = time.perf_counter(), 0, -1.0, 0, None
    while time.perf_counter() - t0 < args.minutes * 60:
        net.train()
        order = rng.permutation(len(train))
        for start in range(0, len(order), 2):
            batch = [train[i] for i in order[start:start + 2]]
            x, y = augment(torch.from_numpy(np.stack([b["x"] for b in batch]))[:, None],
                           torch.from_numpy(np.stack([b["y"] for b in batch]))[:, None], rng)
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch += 1
        if epoch % 5 == 0:
            net.eval()
            score = float(np.mean([grid_dice(net, it) for it in val]))
            if score > best:
                best, best_epoch = score, epoch
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            print(f"epoch {epoch:4d}  {time.perf_counter() - t0:5.0f} s  val Dice (grid) {score:.3f}  "
                  f"best {best:.3f} at {best_epoch}", flush=True)
    if best_state is None:
        raise SystemExit("the budget ended before the first validation; raise --minutes")
    net.load_state_dict(best_state)
    net.eval()
    dice, dist = [], []
    for it in test:
        pred = native_prediction(net, it)
        sp = it["spacing"]
        dice.append(dice_score(it["truth"], pred))
        dist.append(hd95(it["truth"], pred, 1, spacing=(sp[2], sp[1], sp[0])))
        print(f"  {it['patient_id']}  Dice {dice[-1]:.3f}  HD95 {dist[-1]:.1f} mm  volume true "
              f"{it['truth'].sum() * np.prod(sp) / 1000:.0f} ml, predicted {pred.sum() * np.prod(sp) / 1000:.0f} ml")
    d, h = mean_ci(dice), mean_ci(dist)
    print(f"3D U-Net probe, {len(train)}/{len(val)}/{len(test)} train/val/test patients, {epoch} epochs "
          f"(best {best_epoch}, val Dice on the grid {best:.3f}), {(time.perf_counter() - t0) / 60:.1f} min on "
          f"{args.threads} thread(s)")
    print(f"test Dice per patient (native grid) {d['estimate']:.3f} (95% CI {d['low']:.3f}-{d['high']:.3f}); "
          f"HD95 {h['estimate']:.1f} mm ({h['low']:.1f}-{h['high']:.1f})")


if __name__ == "__main__":
    main()
