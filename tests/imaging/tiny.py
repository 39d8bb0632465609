"""A tiny hand-made cohort writer for the imaging tests (independent of the phantom generator)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_cohort(root: Path, *, spacing=(0.5, 0.8, 3.0), size=(48, 40), n_slices=5,
                      seed=0, post=False, sequences=("T1c",)) -> Path:
    """Write a 4-patient cohort: squares of tumour (1) and nodes (2) on known slices.

    P0001..P0003 have tumour on slices 1-3 with growing areas and nodes on slices 2-3;
    P0004's tumour is only a 4x4 speck (dropped by the 10x10 component rule).
    ``spacing`` is SimpleITK order (x, y, z); ``size`` is (rows, cols).
    """
    import SimpleITK as sitk

    from npcai.cohort.model import Cohort, Patient, Scan

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = size
    patients = []
    for i in range(1, 5):
        pid = f"P{i:04d}"
        labels = np.zeros((n_slices, rows, cols), np.uint8)
        if i < 4:
            for k, half in ((1, 3 + i), (2, 5 + i), (3, 4 + i)):
                labels[k, 20 - half:20 + half, 18 - half:18 + half] = 1
            labels[2, 5:17, 30:36] = 2
            labels[3, 6:14, 31:37] = 2
            labels[2, 40:43, 2:5] = 1          # a 3x3 speck: dropped by min_component 10x10
        else:
            labels[2, 20:24, 20:24] = 1
        scans = []
        for tp in (("pre", "post") if post else ("pre",)):
            for seq in sequences:
                body = np.zeros((n_slices, rows, cols), np.float32)
                body[:, 2:-2, 2:-2] = 300.0
                vol = body + rng.normal(0, 20, body.shape).astype(np.float32) + 200.0 * (labels == 1)
                img = sitk.GetImageFromArray(vol)
                img.SetSpacing(spacing)
                img.SetOrigin((0.0, 0.0, -10.0))
                sid = f"{pid}_{tp}_{seq}"
                sitk.WriteImage(img, str(root / "images" / f"{sid}.nii.gz"))
                m = sitk.GetImageFromArray(labels)
                m.CopyInformation(img)
                sitk.WriteImage(m, str(root / "masks" / f"{sid}.nii.gz"))
                scans.append(Scan(scan_id=sid, patient_id=pid, timepoint=tp, sequence=seq,
                                  image=f"images/{sid}.nii.gz", size=[cols, rows, n_slices],
                                  spacing=list(spacing), origin=[0.0, 0.0, -10.0],
                                  mask=f"masks/{sid}.nii.gz"))
        patients.append(Patient(patient_id=pid, scans=scans, centre="A"))
    cohort = Cohort(root=root, patients=patients)
    cohort.save()
    (root / "clinical.csv").write_text("patient_id,pfs_months,pfs_event\n" +
                                       "".join(f"P{i:04d},{10 * i},1\n" for i in range(1, 5)))
    return root
