"""A tiny synthetic cohort written with the cohort model + SimpleITK: bright ellipse
"tumours" (label 1) and round "nodes" (label 2) on noise. Independent of the phantom, so the
segmentation tests control contrast, size and geometry exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from npcai.cohort.model import Cohort, Patient, Scan, scan_id


def make_cohort(out: Path, *, patients: int = 12, size: int = 64, slices: int = 4, seed: int = 0,
                rows: int | None = None, spacing=(0.8, 0.7, 3.0), origin=(-20.0, 10.0, 5.0),
                nodes: bool = True, modality: str = "MR") -> Path:
    """Write a cohort folder; ``rows`` != ``size`` makes non-square slices."""
    rng = np.random.default_rng(seed)
    rows = rows or size
    out.mkdir(parents=True)
    (out / "images").mkdir()
    (out / "masks").mkdir()
    plist = []
    seq = "CT" if modality == "CT" else "T1c"
    yy, xx = np.mgrid[:rows, :size]
    for i in range(patients):
        pid = f"P{i + 1:04d}"
        img = rng.normal(100, 12, (slices, rows, size)).astype(np.float32)
        mask = np.zeros((slices, rows, size), np.uint8)
        cy, cx = rows * rng.uniform(0.35, 0.55), size * rng.uniform(0.4, 0.6)
        ry, rx = rows * rng.uniform(0.09, 0.15), size * rng.uniform(0.1, 0.17)
        ny, nx, nr = rows * rng.uniform(0.7, 0.8), size * rng.choice([0.2, 0.8]), size * 0.07
        for k in range(slices):
            shrink = 1.0 - 0.3 * abs(k - (slices - 1) / 2) / max(slices, 1)
            tum = ((yy - cy) / (ry * shrink)) ** 2 + ((xx - cx) / (rx * shrink)) ** 2 <= 1
            mask[k][tum] = 1
            if nodes and k < slices - 1:
                nod = (yy - ny) ** 2 + (xx - nx) ** 2 <= nr ** 2
                mask[k][nod] = 2
        img[mask == 1] += 60
        img[mask == 2] += 35
        sid = scan_id(pid, "pre", seq)
        im = sitk.GetImageFromArray(img)
        im.SetSpacing(spacing)
        im.SetOrigin(origin)
        m = sitk.GetImageFromArray(mask)
        m.CopyInformation(im)
        sitk.WriteImage(im, str(out / "images" / f"{sid}.nii.gz"))
        sitk.WriteImage(m, str(out / "masks" / f"{sid}.nii.gz"))
        scan = Scan(scan_id=sid, patient_id=pid, timepoint="pre", sequence=seq,
                    image=f"images/{sid}.nii.gz", size=[size, rows, slices], spacing=list(spacing),
                    origin=list(origin), mask=f"masks/{sid}.nii.gz")
        plist.append(Patient(patient_id=pid, scans=[scan]))
    Cohort(root=out, patients=plist, modality=modality).save()
    (out / "clinical.csv").write_text("patient_id\n" + "\n".join(p.patient_id for p in plist) + "\n")
    return out
