"""DICOM RTSTRUCT contours rasterised onto their image series.

Planning systems export contours as closed planar polygons in patient coordinates (mm).
:func:`rasterise_rtstruct` maps each polygon into the voxel grid of the referenced image
(SimpleITK geometry, so any orientation works), fills it on its slice (scikit-image
polygon fill plus the polygon's outline, matching how planning systems count boundary
voxels) and writes label 1 (tumour) or 2 (nodes) according to an ROI-name map.

Examples:
    >>> roi_label("gtvND", DEFAULT_ROI_MAP)
    2
    >>> mask = rasterise_rtstruct("RS.dcm", image)   # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from npcai.errors import NpcaiError

__all__ = ["DEFAULT_ROI_MAP", "roi_label", "load_roi_map", "roi_names", "rasterise_rtstruct"]

log = logging.getLogger(__name__)

#: ROI name (case-insensitive) -> label.
DEFAULT_ROI_MAP: dict[str, int] = {
    "GTVnx": 1, "GTVp": 1, "GTV-T": 1, "GTV_P": 1,
    "GTVnd": 2, "GTVn": 2, "GTV-N": 2, "GTV_N": 2,
}


def _norm(name: str) -> str:
    return str(name).strip().lower()


def roi_label(name: str, roi_map: Mapping[str, int]) -> int | None:
    """The label for an ROI name (case-insensitive exact match), or None."""
    lookup = {_norm(k): int(v) for k, v in roi_map.items()}
    return lookup.get(_norm(name))


def load_roi_map(value: Mapping[str, int] | str | os.PathLike | None) -> dict[str, int]:
    """An ROI map from a dict, a YAML file (``{label: [names]}`` or ``{name: label}``) or None."""
    if value is None:
        return dict(DEFAULT_ROI_MAP)
    if isinstance(value, Mapping):
        data: Any = dict(value)
        source = "ROI map"
    else:
        from npcai.fsutil import read_user_yaml

        path = Path(value)
        data = read_user_yaml(path, what="ROI map", example="'1: [GTVnx, GTVp]'")
        source = str(path)
    if not isinstance(data, dict) or not data:
        raise NpcaiError(f"{source}: expected a mapping like '1: [GTVnx, GTVp]' and '2: [GTVnd]'; fix it")
    out: dict[str, int] = {}
    for k, v in data.items():
        if isinstance(v, (list, tuple)):          # label: [names]
            label, names = k, v
        else:                                     # name: label
            label, names = v, [k]
        try:
            label = int(label)
        except (TypeError, ValueError):
            raise NpcaiError(f"{source}: label {label!r} is not 1 (tumour) or 2 (nodes); fix the map") from None
        if label not in (1, 2):
            raise NpcaiError(f"{source}: label {label} is not 1 (tumour) or 2 (nodes); fix the map")
        for n in names:
            out[str(n)] = label
    return out


def _read(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), force=True)
    except Exception as exc:  # noqa: BLE001
        raise NpcaiError(f"{path}: cannot read the RTSTRUCT ({exc}); re-export it") from exc
    if str(ds.get("Modality", "")) != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise NpcaiError(f"{path}: not a DICOM RTSTRUCT (no StructureSetROISequence); re-export the structures")
    return ds


def roi_names(path: str | os.PathLike) -> dict[int, str]:
    """``{ROI number: ROI name}`` of an RTSTRUCT file."""
    ds = _read(Path(path))
    return {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.StructureSetROISequence}


def rasterise_rtstruct(path: str | os.PathLike, image, roi_map: Mapping[str, int] | None = None,
                       name: str | None = None):
    """Rasterise an RTSTRUCT's mapped ROIs onto ``image``'s grid; returns a uint8 label map.

    Nodes (2) are drawn first and tumour (1) on top. Polygons off the image's slices (more
    than half a slice away) are ignored with a warning count.

    Raises:
        NpcaiError: no ROI matches the map (the message lists the ROI names found), or the
            mapped ROIs draw nothing on the image (wrong series).
    """
    import SimpleITK as sitk
    from skimage.draw import polygon, polygon_perimeter

    path = Path(path)
    label_name = name or str(path)
    roi_map = DEFAULT_ROI_MAP if roi_map is None else roi_map
    ds = _read(path)
    names = {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.StructureSetROISequence}
    labels = {num: roi_label(n, roi_map) for num, n in names.items()}
    if not any(labels.values()):
        raise NpcaiError(f"{label_name}: no ROI matches the ROI map (ROIs: {', '.join(map(repr, names.values()))}); "
                         "pass --roi-map with e.g. '1: [<tumour ROI>]' and '2: [<node ROI>]'")
    size = image.GetSize()                       # (x, y, z)
    arr = np.zeros((size[2], size[1], size[0]), dtype=np.uint8)
    off = 0
    contours = {int(c.ReferencedROINumber): c for c in ds.get("ROIContourSequence", [])}
    for label in (2, 1):
        for num, lab in labels.items():
            if lab != label or num not in contours:
                continue
            for c in contours[num].get("ContourSequence", []) or []:
                if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) not in ("CLOSED_PLANAR", "OPEN_PLANAR"):
                    continue
                pts = np.asarray([float(v) for v in c.ContourData], dtype=float).reshape(-1, 3)
                idx = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in pts])
                z = np.round(idx[:, 2])
                if np.abs(idx[:, 2] - z).max() > 0.5 or not (0 <= z[0] < size[2]) or np.ptp(z) > 0:
                    off += 1
                    continue
                k = int(z[0])
                rr, cc = polygon(idx[:, 1], idx[:, 0], shape=arr.shape[1:])
                pr, pc = polygon_perimeter(np.round(idx[:, 1]), np.round(idx[:, 0]), shape=arr.shape[1:], clip=False)
                keep = (pr >= 0) & (pr < arr.shape[1]) & (pc >= 0) & (pc < arr.shape[2])
                arr[k, rr, cc] = label
                arr[k, pr[keep], pc[keep]] = label
    if off:
        log.warning("%s: %d contour polygon(s) lie off the image's slices and were ignored", label_name, off)
    if not arr.any():
        raise NpcaiError(f"{label_name}: the mapped ROIs draw nothing on the referenced series; "
                         "check that the RTSTRUCT belongs to this scan")
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out
