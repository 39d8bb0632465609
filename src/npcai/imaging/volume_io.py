"""Reading one patient's scans as a multi-channel volume on one grid, with its label map.

Channels: the requested sequences of one timepoint (e.g. ``T1c,T2,T1``) become channels. The
first sequence is the reference grid; other sequences are resampled onto it with SimpleITK
(linear interpolation, physical coordinates respected) when their grids differ. With
``timepoint="both"`` the pre- and post-treatment scans are stacked as channels
(``pre:T1c, post:T1c, ...``) only when their grids match exactly; pre and post scans are
usually not registered, so otherwise this is an error suggesting two separate ROI datasets
(as study 001 trains its Pre- and Post-models).

The label map (0 background, 1 tumour, 2 nodes) comes from the reference scan (the
pre-treatment one for ``both``); if that scan has no mask of the requested kind, the first
other channel scan with one is resampled onto the grid (nearest neighbour).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from npcai.cohort.contours import read_image_file
from npcai.cohort.model import Cohort, Scan
from npcai.errors import NpcaiError

__all__ = ["ScanPlan", "ScanStack", "plan_patient", "load_stack", "TIMEPOINT_CHOICES"]

TIMEPOINT_CHOICES = ("pre", "post", "both")


@dataclass
class ScanPlan:
    """Which scans (one per channel) and which mask file make one patient's stack."""

    patient_id: str
    scans: list[Scan]                 # channel order; scans[0] is the reference grid
    mask_scan: Scan | None            # the scan whose mask is used (None: no mask available)
    mask_kind: str
    channels: list[str] = field(default_factory=list)   # e.g. ["T1c"] or ["pre:T1c", "post:T1c"]

    def files(self, cohort: Cohort) -> list[Path]:
        """Every file the stack is made of (images, then the mask), for input hashing."""
        paths = [cohort.path(s.image) for s in self.scans]
        if self.mask_scan is not None:
            rel = self.mask_scan.mask if self.mask_kind == "manual" else self.mask_scan.auto_mask
            paths.append(cohort.path(rel))
        return paths


@dataclass
class ScanStack:
    """One patient's channels on one grid: ``image`` (C, z, y, x) float32, ``labels`` (z, y, x)."""

    plan: ScanPlan
    image: np.ndarray
    labels: np.ndarray | None
    pixel_mm: tuple[float, float]      # (row_mm, col_mm) of the reference grid
    positions_mm: np.ndarray           # physical z of each slice (mm)


def _mask_rel(scan: Scan, kind: str) -> str | None:
    return scan.mask if kind == "manual" else scan.auto_mask


def plan_patient(cohort: Cohort, patient_id: str, *, sequences: tuple[str, ...],
                 timepoint: str, mask: str) -> ScanPlan | str:
    """The scans for one patient, or a string saying why the patient cannot be used.

    Raises:
        NpcaiError: ``mask="auto"`` and a needed scan has no automatic mask.
    """
    if timepoint not in TIMEPOINT_CHOICES:
        raise NpcaiError(f"--timepoint {timepoint!r} is not valid; use pre, post or both")
    if mask not in ("manual", "auto"):
        raise NpcaiError(f"--mask {mask!r} is not valid; use manual or auto")
    tps = ("pre", "post") if timepoint == "both" else (timepoint,)
    scans, channels = [], []
    for tp in tps:
        for seq in sequences:
            found = cohort.scans(timepoint=tp, sequence=seq, patient_id=patient_id)
            if not found:
                return f"no {tp} {seq} scan"
            scans.append(found[0])
            channels.append(f"{tp}:{seq}" if timepoint == "both" else seq)
    same_tp = [s for s in scans if s.timepoint == tps[0]]
    mask_scan = next((s for s in same_tp if _mask_rel(s, mask)), None)
    if mask_scan is None and mask == "auto":
        raise NpcaiError(f"patient {patient_id}: scan {scans[0].scan_id} has no automatic mask; "
                         "run `npcai segment predict` first or use --mask manual")
    return ScanPlan(patient_id, scans, mask_scan, mask, channels)


def _same_grid(a, b, tol: float = 1e-3) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def load_stack(cohort: Cohort, plan: ScanPlan) -> ScanStack:
    """Read the planned scans (resampling sequences onto the reference grid) and the mask."""
    import SimpleITK as sitk

    ref = cohort.read_image(plan.scans[0])
    arrays = []
    for scan in plan.scans:
        img = ref if scan is plan.scans[0] else cohort.read_image(scan)
        if not _same_grid(img, ref):
            if scan.timepoint != plan.scans[0].timepoint:
                raise NpcaiError(
                    f"patient {plan.patient_id}: pre- and post-treatment scans are on different grids "
                    f"({plan.scans[0].scan_id} vs {scan.scan_id}); --timepoint both needs registered "
                    "scans; build separate ROI datasets with --timepoint pre and --timepoint post")
            img = sitk.Resample(sitk.Cast(img, sitk.sitkFloat32), ref, sitk.Transform(),
                                sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        arrays.append(sitk.GetArrayFromImage(img).astype(np.float32, copy=False))
    labels = None
    if plan.mask_scan is not None:
        m = read_image_file(cohort.path(_mask_rel(plan.mask_scan, plan.mask_kind)),
                            fix="re-run `npcai ingest` (manual masks) or `npcai segment predict` (auto masks)")
        if m.GetSize() != ref.GetSize() or not _same_grid(m, ref):
            m = sitk.Resample(m, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, m.GetPixelID())
        labels = sitk.GetArrayFromImage(m).astype(np.uint8, copy=False)
    sx, sy, _ = ref.GetSpacing()
    positions = np.array([ref.TransformIndexToPhysicalPoint((0, 0, k))[2]
                          for k in range(ref.GetSize()[2])], dtype=np.float64)
    return ScanStack(plan, np.stack(arrays), labels, (float(sy), float(sx)), positions)
