"""2D slice datasets for segmentation: labelled axial slices of a cohort, on the model's grid.

Studies 000 and 002 train their segmentation networks on the axial slices that contain
tumour or suspicious nodes. :func:`load_slices` reads those slices from a cohort once
(normalised per scan with :mod:`npcai.imaging.normalise`, padded to a square and resized
to ``size`` px) and keeps them in memory with an index table; :func:`split_by_patient` puts
whole patients into train / val / test (4:1 test split, a validation part carved from the
training patients for early stopping), so a patient's slices never straddle two splits.

The mapping between the network's classes and the cohort's mask labels is a
:class:`LabelSet`: class 0 is background, class ``k`` is the ``k``-th requested label
(``tumour`` -> mask value 1, ``nodes`` -> mask value 2); labels not requested become
background.

Geometry: :func:`to_model_grid` pads a ``(rows, cols)`` slice to a centred square and
resizes it to ``size``; :func:`from_model_grid` undoes exactly that for network outputs, so
predictions land back on each scan's own grid.

Examples:
    >>> labels = LabelSet.parse("tumour,nodes")
    >>> labels.names, labels.values, labels.n_classes
    (('tumour', 'nodes'), (1, 2), 3)
    >>> import numpy as np
    >>> img = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> from_model_grid(to_model_grid(img, 8)[None], (3, 4))[0].shape
    (3, 4)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from npcai.cohort.model import LABELS, Cohort, Scan
from npcai.errors import NpcaiError
from npcai.imaging.normalise import normalise_volume, parse_normalisation
from npcai.progress import track

__all__ = ["LabelSet", "SegmentationSlices", "SliceDataset", "load_slices", "split_by_patient",
           "default_normalisation", "default_sequence", "to_model_grid", "from_model_grid",
           "labels_to_classes", "classes_to_labels", "pad_square_box", "neighbour_slices", "SliceSampler",
           "crop_box", "crop_stack", "paste_crop", "random_affine"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ labels
@dataclass(frozen=True)
class LabelSet:
    """Which mask labels the network segments, in class order (class 0 = background)."""

    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str | list[str] | tuple[str, ...] | "LabelSet") -> "LabelSet":
        """Parse ``"tumour,nodes"`` (or a list); unknown or repeated names fail with one line."""
        if isinstance(text, LabelSet):
            return text
        names = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text)]
        names = ["tumour" if n == "tumor" else n for n in names if n]
        bad = [n for n in names if n not in LABELS]
        if not names or bad or len(set(names)) != len(names):
            raise NpcaiError(f"--labels {text!r} is not valid; use a comma-separated subset of "
                             f"{', '.join(LABELS)} (e.g. tumour,nodes), each once")
        return cls(tuple(names))

    @property
    def values(self) -> tuple[int, ...]:
        """Mask values (1 tumour, 2 nodes) of classes 1..K."""
        return tuple(LABELS[n] for n in self.names)

    @property
    def n_classes(self) -> int:
        return len(self.names) + 1

    def __str__(self) -> str:
        return ",".join(self.names)


def labels_to_classes(mask: np.ndarray, labels: LabelSet) -> np.ndarray:
    """Map a cohort label map (0/1/2) to class indices 0..K (unrequested labels -> 0)."""
    out = np.zeros(mask.shape, np.uint8)
    for k, v in enumerate(labels.values, start=1):
        out[mask == v] = k
    return out


def classes_to_labels(classes: np.ndarray, labels: LabelSet) -> np.ndarray:
    """Map class indices 0..K back to the cohort's mask values (1 tumour, 2 nodes)."""
    lut = np.array((0,) + labels.values, np.uint8)
    return lut[np.asarray(classes, np.intp)]


# ------------------------------------------------------------------ geometry
def pad_square_box(rows: int, cols: int) -> tuple[int, int, int]:
    """``(pad_top, pad_left, side)`` of the centred square that holds a ``rows x cols`` slice."""
    side = max(rows, cols)
    return (side - rows) // 2, (side - cols) // 2, side


def to_model_grid(image: np.ndarray, size: int, *, nearest: bool = False,
                  fill: float = 0.0) -> np.ndarray:
    """Pad a ``(rows, cols)`` slice (or ``(n, rows, cols)`` stack) to a centred square, resize to ``size``.

    Images use bilinear interpolation (antialiased when shrinking); label maps
    (``nearest=True``) use nearest neighbour so labels stay labels.
    """
    a = np.asarray(image)
    stack = a if a.ndim == 3 else a[None]
    n, rows, cols = stack.shape
    top, left, side = pad_square_box(rows, cols)
    if side != rows or side != cols:
        sq = np.full((n, side, side), fill, dtype=stack.dtype)
        sq[:, top:top + rows, left:left + cols] = stack
    else:
        sq = stack
    if side != size:
        t = torch.from_numpy(np.ascontiguousarray(sq, dtype=np.float32))[:, None]
        if nearest:
            t = F.interpolate(t, size=(size, size), mode="nearest-exact")
        else:
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=side > size)
        sq = t[:, 0].numpy().astype(stack.dtype if nearest else np.float32)
    return sq if a.ndim == 3 else sq[0]


def from_model_grid(outputs: np.ndarray | torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Bring ``(n, C, size, size)`` network outputs (logits/probabilities) back to a ``(rows, cols)`` grid.

    The inverse of :func:`to_model_grid`: bilinear resize to the padded square, then crop the
    padding. Take the argmax *after* this step, so boundaries are placed at native resolution.
    """
    t = torch.as_tensor(outputs, dtype=torch.float32)
    squeeze = t.ndim == 3
    if squeeze:
        t = t[:, None]
    rows, cols = shape
    top, left, side = pad_square_box(rows, cols)
    if t.shape[-1] != side:
        t = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)
    t = t[..., top:top + rows, left:left + cols]
    out = t.numpy()
    return out[:, 0] if squeeze else out


def crop_box(rows: int, cols: int, spacing_xy, crop_mm: float | None) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the centred ``crop_mm`` x ``crop_mm`` square of a slice, in px.

    The box may reach beyond the slice (then :func:`crop_stack` pads). ``crop_mm`` None is the
    whole slice. ``spacing_xy`` is the scan's ``(x, y, ...)`` spacing in mm.

    Examples:
        >>> crop_box(128, 128, (3.9, 3.9, 2.5), 250)
        (32, 32, 64, 64)
    """
    if crop_mm is None:
        return 0, 0, rows, cols
    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    if not (crop_mm > 0 and sx > 0 and sy > 0):
        raise NpcaiError(f"--crop-mm {crop_mm}: needs a positive size and a scan with a pixel spacing "
                         f"(the scan has {sx} x {sy} mm)")
    h, w = max(1, int(round(crop_mm / sy))), max(1, int(round(crop_mm / sx)))
    return (rows - h) // 2, (cols - w) // 2, h, w


def crop_stack(stack: np.ndarray, box: tuple[int, int, int, int], fill: float = 0) -> np.ndarray:
    """The ``box`` of every slice of a ``(n, rows, cols)`` stack; outside the slice is ``fill``."""
    top, left, h, w = box
    n, rows, cols = stack.shape
    if (top, left, h, w) == (0, 0, rows, cols):
        return stack
    out = np.full((n, h, w), fill, dtype=stack.dtype)
    r0, r1, c0, c1 = max(top, 0), min(top + h, rows), max(left, 0), min(left + w, cols)
    if r0 < r1 and c0 < c1:
        out[:, r0 - top:r1 - top, c0 - left:c1 - left] = stack[:, r0:r1, c0:c1]
    return out


def paste_crop(cropped: np.ndarray, box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Put a ``(n, h, w)`` label stack of ``box`` back on the ``(rows, cols)`` grid (0 outside the box)."""
    top, left, h, w = box
    rows, cols = shape
    if (top, left, h, w) == (0, 0, rows, cols):
        return cropped
    out = np.zeros((len(cropped), rows, cols), dtype=cropped.dtype)
    r0, r1, c0, c1 = max(top, 0), min(top + h, rows), max(left, 0), min(left + w, cols)
    if r0 < r1 and c0 < c1:
        out[:, r0:r1, c0:c1] = cropped[:, r0 - top:r1 - top, c0 - left:c1 - left]
    return out


def neighbour_slices(n_slices: int, context: int) -> np.ndarray:
    """``(n_slices, 2*context+1)`` slice indices of each slice's 2.5D input, edges repeated.

    Row ``k`` is ``k-context, ..., k, ..., k+context`` clipped to ``0..n_slices-1``: the first
    slice of a volume sees itself in place of the missing slices above it, the last one below.

    Examples:
        >>> neighbour_slices(3, 1).tolist()
        [[0, 0, 1], [0, 1, 2], [1, 2, 2]]
    """
    if context < 0:
        raise NpcaiError(f"--context-slices {context}: use 0 (2D) or more neighbour slices each side")
    offsets = np.arange(-context, context + 1)
    return np.clip(np.arange(n_slices)[:, None] + offsets[None], 0, max(n_slices - 1, 0))


# ------------------------------------------------------------------ defaults per modality
def default_sequence(cohort: Cohort) -> str:
    """The sequence to segment: T1c (the studies' sequence) for MR, CT for CT cohorts."""
    available = {s.sequence for s in cohort.scans() if s.mask}
    for seq in ("T1c", "CT", "T1", "T2"):
        if seq in available:
            return seq
    raise NpcaiError(f"{cohort.root}: no scan has a manual mask; add contours and re-run `npcai ingest`")


def default_normalisation(cohort: Cohort, sequence: str) -> str:
    """``robust`` per-scan z-score for MR; a soft-tissue window ``window:40,400`` for CT (HU)."""
    if sequence == "CT" or cohort.modality.upper() == "CT":
        return "window:40,400"
    return "robust"


# ------------------------------------------------------------------ the slice set
@dataclass
class SegmentationSlices:
    """Labelled slices on the model grid.

    Attributes:
        images: float16 ``(N, 1, size, size)``, normalised per scan.
        classes: uint8 ``(N, size, size)``, class indices 0..K (see :class:`LabelSet`).
        index: one row per slice: ``patient_id, scan_id, slice_index, rows, cols,
            tumour_px, nodes_px`` (areas on the native slice) and ``positive`` (the slice
            contains a requested label).
        labels: the :class:`LabelSet`.
        size: model grid side in px.
        neighbours: ``(N, 2*context+1)`` rows of ``images`` that make each slice's 2.5D
            input (its neighbours in the same scan, edges repeated; see
            :func:`neighbour_slices`); None means 2D (each slice alone).
    """

    images: np.ndarray
    classes: np.ndarray
    index: pd.DataFrame
    labels: LabelSet
    size: int
    neighbours: np.ndarray | None = None

    @property
    def context(self) -> int:
        """Neighbour slices each side in the network input (0 = 2D)."""
        return 0 if self.neighbours is None else (self.neighbours.shape[1] - 1) // 2

    @property
    def positive(self) -> np.ndarray:
        """Boolean per row: the slice contains a requested label."""
        if "positive" not in self.index:
            return np.ones(len(self.index), bool)
        return self.index["positive"].to_numpy(bool)

    def input(self, i: int) -> np.ndarray:
        """Row ``i``'s network input, float32 ``(2*context+1, size, size)``."""
        if self.neighbours is None:
            return self.images[i].astype(np.float32)
        return self.images[self.neighbours[i], 0].astype(np.float32)

    def subset(self, patients) -> "SegmentationSlices":
        """The slices of the given patients (order kept; neighbour rows renumbered)."""
        keep = self.index["patient_id"].isin(list(patients)).to_numpy()
        neighbours = None
        if self.neighbours is not None:
            new_row = np.cumsum(keep) - 1
            neighbours = new_row[self.neighbours[keep]]
        return SegmentationSlices(self.images[keep], self.classes[keep],
                                  self.index[keep].reset_index(drop=True), self.labels, self.size, neighbours)

    def __len__(self) -> int:
        return len(self.index)


def select_scans(cohort: Cohort, *, sequence: str, timepoint: str | None) -> list[Scan]:
    """Scans of ``sequence`` (and ``timepoint`` when given) that have a manual mask."""
    scans = [s for s in cohort.scans(timepoint=timepoint, sequence=sequence) if s.mask]
    if not scans:
        have = sorted({f"{s.timepoint} {s.sequence}" for s in cohort.scans() if s.mask})
        raise NpcaiError(f"{cohort.root}: no {timepoint or 'any-timepoint'} {sequence} scan with a manual "
                         f"mask; choose --sequence/--timepoint among: {', '.join(have) or 'none'}")
    return scans


def load_slices(cohort: Cohort | str | Path, *, labels: LabelSet | str = "tumour,nodes",
                size: int = 256, sequence: str | None = None, timepoint: str | None = "pre",
                normalise: str | None = None, context: int = 0, negatives: bool = False,
                crop_mm: float | None = None) -> SegmentationSlices:
    """Read every slice that contains a requested label, normalised and resized to ``size``.

    With ``context > 0`` or ``negatives`` every slice of each scan that has a requested label
    is read (``index.positive`` marks those with the label), so 2.5D inputs can be built from
    the neighbours and slices without the target can be sampled for training.

    Args:
        cohort: a :class:`Cohort` or its folder.
        labels: the labels to segment (``"tumour,nodes"``, ``"tumour"``, ...).
        size: side of the square model grid in px (>= 32).
        sequence: which scans (default: :func:`default_sequence`).
        timepoint: ``pre``, ``post`` or None for both.
        normalise: intensity normalisation (default: :func:`default_normalisation`).
        context: neighbour slices each side of the 2.5D input (0 = 2D).
        negatives: also read the slices without a requested label.
        crop_mm: keep the centred ``crop_mm`` square of each slice (:func:`crop_box`) before
            resizing to ``size`` (None: the whole slice).

    Raises:
        NpcaiError: when no slice contains the requested labels, or options are invalid.
    """
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    labels = LabelSet.parse(labels)
    if size < 32 or size % 32:
        raise NpcaiError(f"--size {size}: the model grid must be a multiple of 32 px (e.g. 128, 256)")
    sequence = sequence or default_sequence(cohort)
    norm = parse_normalisation(normalise or default_normalisation(cohort, sequence))
    scans = select_scans(cohort, sequence=sequence, timepoint=timepoint)
    whole = context > 0 or negatives
    neighbour_slices(1, context)                      # a negative context fails here, before reading
    images, classes, rows, neighbours = [], [], [], []
    n_read = 0
    for scan in track(scans, "Reading labelled slices"):
        mask = cohort.read_mask(scan, "manual")
        wanted = np.isin(mask, labels.values)
        has = wanted.reshape(mask.shape[0], -1).any(axis=1)
        if not has.any():
            continue
        ks = np.arange(mask.shape[0]) if whole else np.flatnonzero(has)
        volume = normalise_volume(cohort.read_array(scan), norm)
        if volume.shape != mask.shape:
            raise NpcaiError(f"scan {scan.scan_id}: mask shape {mask.shape} differs from the image "
                             f"{volume.shape}; re-run `npcai ingest`")
        fill = float(volume.min())
        box = crop_box(mask.shape[1], mask.shape[2], scan.spacing, crop_mm)
        images.append(to_model_grid(crop_stack(volume[ks], box, fill), size, fill=fill).astype(np.float16))
        classes.append(to_model_grid(crop_stack(labels_to_classes(mask[ks], labels), box), size, nearest=True))
        for k in ks:
            rows.append({"patient_id": scan.patient_id, "scan_id": scan.scan_id, "slice_index": int(k),
                         "rows": mask.shape[1], "cols": mask.shape[2],
                         "tumour_px": int((mask[k] == LABELS["tumour"]).sum()),
                         "nodes_px": int((mask[k] == LABELS["nodes"]).sum()), "positive": bool(has[k])})
        neighbours.append(n_read + neighbour_slices(len(ks), context) if whole else
                          n_read + np.arange(len(ks))[:, None])
        n_read += len(ks)
    if not rows:
        raise NpcaiError(f"{cohort.root}: no {sequence} slice contains {' or '.join(labels.names)} in the "
                         f"manual masks; check the contours or choose other --labels")
    return SegmentationSlices(images=np.concatenate(images)[:, None], classes=np.concatenate(classes),
                              index=pd.DataFrame(rows), labels=labels, size=size,
                              neighbours=np.concatenate(neighbours) if context > 0 else None)


def split_by_patient(index: pd.DataFrame, *, test_fraction: float = 0.2, val_fraction: float = 0.2,
                     seed: int = 0) -> pd.Series:
    """Patient -> ``train``/``val``/``test``: test first (4:1), then validation from training.

    Stratified by whether the patient has node slices (so every split sees nodes when some
    patients have them); largest-remainder allocation keeps the totals exact. Deterministic
    for a seed. Needs at least 3 patients.
    """
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1):
        raise NpcaiError(f"--test-fraction {test_fraction} / --val-fraction {val_fraction}: use values in (0, 1)")
    if "positive" in index:     # whole scans: patients are split on their labelled slices
        index = index[index["positive"]]
    has_nodes = index.groupby("patient_id")["nodes_px"].max().gt(0).astype(int).sort_index()
    if len(has_nodes) < 3:
        raise NpcaiError(f"only {len(has_nodes)} patient(s) have labelled slices; segmentation needs at "
                         f"least 3 (train, validation and test patients)")
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=has_nodes.index, name="split")

    def pick(ids: pd.Index, fraction: float) -> list[str]:
        n_pick = max(1, int(round(fraction * len(ids))))
        groups = {g: sorted(ids[has_nodes.loc[ids].to_numpy() == g]) for g in (0, 1)}
        quota = {g: fraction * len(m) for g, m in groups.items()}
        alloc = {g: int(np.floor(q)) for g, q in quota.items()}
        for g in sorted(quota, key=lambda g: -(quota[g] - alloc[g]))[:max(0, n_pick - sum(alloc.values()))]:
            alloc[g] += 1
        return [p for g, m in groups.items() for p in rng.permutation(np.array(m, dtype=object))[:alloc[g]]]

    split[pick(split.index, test_fraction)] = "test"
    split[pick(split.index[split == "train"], val_fraction)] = "val"
    for name in ("train", "val", "test"):
        if not (split == name).any():
            raise NpcaiError(f"{len(split)} patients give an empty {name} split; add patients or change "
                             f"--test-fraction/--val-fraction")
    return split


# ------------------------------------------------------------------ torch dataset
class SliceDataset(torch.utils.data.Dataset):
    """``(image float32 (C,S,S), classes int64 (1,S,S))`` pairs, with optional flips for training.

    ``C = 2*context+1``: the slice and its neighbours (:attr:`SegmentationSlices.neighbours`).
    Left-right flips are anatomically plausible for axial head-and-neck slices (the label
    stays the same structure); small intensity scaling mimics scanner differences. Items are
    the rows of the slice table; a sampler (:class:`SliceSampler`) picks which rows are seen.
    """

    def __init__(self, slices: SegmentationSlices, *, augment: bool = False, spatial: bool = False,
                 seed: int = 0):
        self.slices = slices
        self.classes = slices.classes
        self.augment = augment
        self.spatial = spatial
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, i: int):
        x = self.slices.input(i)
        y = self.classes[i][None].astype(np.int64)
        if self.augment:
            if self.rng.random() < 0.5:
                x, y = x[..., ::-1], y[..., ::-1]
            x = x * np.float32(self.rng.uniform(0.9, 1.1)) + np.float32(self.rng.normal(0, 0.05))
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
        if self.spatial:
            xt, yt = random_affine(xt, yt, self.rng)
        return xt, yt


def random_affine(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, degrees: float = 15.0,
                  scale: tuple[float, float] = (0.85, 1.15), shift: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    """One random in-plane rotation, isotropic scaling and shift of ``x (C,S,S)`` and its label map ``y (1,S,S)``.

    The image is resampled bilinearly (edges extended), the labels by nearest neighbour (outside: 0),
    with the same transform, so they stay aligned (nnU-Net/MONAI-style spatial augmentation).
    """
    a = np.deg2rad(rng.uniform(-degrees, degrees))
    z = rng.uniform(*scale)
    tx, ty = rng.uniform(-shift, shift, 2) * 2
    theta = torch.tensor([[np.cos(a) / z, -np.sin(a) / z, tx], [np.sin(a) / z, np.cos(a) / z, ty]],
                         dtype=torch.float32)[None]
    grid = F.affine_grid(theta, [1, 1, *x.shape[-2:]], align_corners=False)
    xa = F.grid_sample(x[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    ya = F.grid_sample(y[None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return xa, ya.round().to(y.dtype)


class SliceSampler(torch.utils.data.Sampler[int]):
    """Each epoch: every slice with the target plus a fresh draw of slices without it, shuffled.

    ``negative_fraction`` is the share of each epoch's slices that have no target: with
    ``P`` positive rows the epoch holds ``round(P * f / (1 - f))`` negatives (at most all of
    them), drawn without replacement. ``f = 0`` gives the positive slices only (the papers'
    2D recipe). Seeded by ``seed`` and the epoch (:meth:`set_epoch`; without it each pass
    over the sampler counts as the next epoch).
    """

    def __init__(self, positive: np.ndarray, *, negative_fraction: float = 0.0, seed: int = 0):
        if not 0 <= negative_fraction < 1:
            raise NpcaiError(f"--negative-fraction {negative_fraction}: use a value in [0, 1)")
        positive = np.asarray(positive, bool)
        self.pos = np.flatnonzero(positive)
        self.neg = np.flatnonzero(~positive)
        want = int(round(len(self.pos) * negative_fraction / (1 - negative_fraction)))
        self.n_neg = min(want, len(self.neg))
        self.seed = int(seed)
        self.epoch = 0
        self._explicit = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit = int(epoch), True

    def __len__(self) -> int:
        return len(self.pos) + self.n_neg

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        if not self._explicit:
            self.epoch += 1
        neg = rng.choice(self.neg, size=self.n_neg, replace=False) if self.n_neg else self.neg[:0]
        order = rng.permutation(np.concatenate([self.pos, neg]))
        return iter(order.tolist())
