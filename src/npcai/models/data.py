"""Training data over the ROI cache: slice and patient-bag datasets, samplers, augmentation.

The training loop never decodes DICOM or PNG: every batch is one fancy-index read of the
memory-mapped ``images.npy`` (rows sorted, so the read is as contiguous as the batch
allows), converted to float32 once. Datasets hold *row numbers*; which rows they hold is
decided by the caller (:mod:`npcai.models.train`), which gives the fit/selection stage only
training and validation patients.

Augmentation (:class:`SliceAugment`) runs on tensors, on training batches only: left-right
flips, a small affine (rotation / scale / shift computed in millimetres, so anisotropic
pixels stay right) and intensity jitter; it is deterministic for a seed, epoch and batch.

Examples:
    >>> import numpy as np, torch
    >>> images = np.zeros((6, 1, 32, 32), np.float16)
    >>> ds = SliceDataset(images, rows=[0, 2, 4], labels=[0, 1, 1])
    >>> x, y, rows = ds.__getitems__([2, 0])
    >>> tuple(x.shape), y.tolist(), rows.tolist()
    ((2, 1, 32, 32), [1.0, 0.0], [4, 0])
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

__all__ = ["SliceDataset", "PatientBagDataset", "EpochShuffleSampler", "SliceAugment",
           "read_rows", "collate_batch", "resize_batch"]


def read_rows(images: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """Rows of the (memory-mapped) image array as a float32 tensor, in the order given.

    The read is done in sorted row order (one contiguous-as-possible gather), then put back
    in the requested order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    if len(sorted_rows) and sorted_rows[-1] - sorted_rows[0] + 1 == len(sorted_rows):
        block = np.asarray(images[sorted_rows[0]:sorted_rows[-1] + 1])  # one contiguous slice
    else:
        block = np.asarray(images[sorted_rows])
    out = np.empty(block.shape, dtype=np.float32)
    out[order] = block
    return torch.from_numpy(out)


def resize_batch(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of (..., C, S, S) to ``size`` (no-op when None or already that size)."""
    if size is None or x.shape[-1] == size:
        return x
    lead = x.shape[:-3]
    y = F.interpolate(x.reshape(-1, *x.shape[-3:]), size=(size, size), mode="bilinear",
                      align_corners=False, antialias=size < x.shape[-1])
    return y.reshape(*lead, *y.shape[-3:])


def collate_batch(batch):
    """Datasets here return whole batches from ``__getitems__``; nothing left to collate."""
    return batch


class SliceDataset(Dataset):
    """Image-as-unit data: one item per ROI row, labelled with its patient's label.

    Args:
        images: the ``(N, C, S, S)`` array (memmap) of the ROI cache.
        rows: the ROI rows this dataset may read (e.g. the training patients' slices).
        labels: one 0/1 label per row.
        size: resize to this side (None keeps the cache's size).
    """

    def __init__(self, images: np.ndarray, rows: Sequence[int], labels: Sequence[int],
                 size: int | None = None):
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.float32)
        if len(self.rows) != len(self.labels):
            raise ValueError("rows and labels differ in length")
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, idx: Sequence[int]):
        idx = np.asarray(idx, dtype=np.int64)
        rows = self.rows[idx]
        x = resize_batch(read_rows(self.images, rows), self.size)
        return x, torch.from_numpy(self.labels[idx]), torch.from_numpy(rows)

    def __getitem__(self, i: int):
        x, y, r = self.__getitems__([i])
        return x[0], y[0], r[0]


class PatientBagDataset(Dataset):
    """Patient-as-unit data: one item per patient, a bag of K of their slices.

    For training (``bag_size`` set) every draw samples K slices, with replacement when the
    patient has fewer than K; the draw is deterministic for (seed, epoch, patient). For
    evaluation (``bag_size=None``) the bag is all of the patient's slices (one patient per
    batch).

    Args:
        images: the ROI cache's ``(N, C, S, S)`` array.
        patient_rows: patient_id -> array of that patient's ROI rows.
        labels: patient_id -> 0/1.
        bag_size: K, or None for whole-patient bags.
        seed: base seed of the draws.
        size: resize to this side (None keeps the cache's size).
    """

    def __init__(self, images: np.ndarray, patient_rows: dict[str, np.ndarray],
                 labels: dict[str, int], bag_size: int | None = 8, seed: int = 0,
                 size: int | None = None):
        self.images = images
        self.patients = sorted(patient_rows)
        self.patient_rows = {p: np.asarray(patient_rows[p], dtype=np.int64) for p in self.patients}
        self.labels = np.array([labels[p] for p in self.patients], dtype=np.float32)
        self.bag_size = bag_size
        self.seed = seed
        self.size = size
        self.epoch = 0

    @property
    def rows(self) -> np.ndarray:
        """Every ROI row this dataset may read."""
        return np.concatenate([self.patient_rows[p] for p in self.patients]) if self.patients \
            else np.zeros(0, np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.patients)

    def bag_rows(self, i: int) -> np.ndarray:
        rows = self.patient_rows[self.patients[i]]
        if self.bag_size is None:
            return rows
        rng = np.random.default_rng((self.seed, self.epoch, i))
        return rng.choice(rows, size=self.bag_size, replace=len(rows) < self.bag_size)

    def __getitems__(self, idx: Sequence[int]):
        idx = np.asarray(idx, dtype=np.int64)
        bags = [self.bag_rows(int(i)) for i in idx]
        if self.bag_size is None and len(bags) != 1:
            raise ValueError("whole-patient bags have different sizes; use batch_size=1")
        flat = np.concatenate(bags)
        x = resize_batch(read_rows(self.images, flat), self.size)
        x = x.view(len(bags), len(bags[0]), *x.shape[1:])
        return x, torch.from_numpy(self.labels[idx]), torch.from_numpy(np.stack(bags))

    def __getitem__(self, i: int):
        x, y, r = self.__getitems__([i])
        return x[0], y[0], r[0]


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch, fixed by (seed, epoch) — reproducible across ``--resume``.

    Lightning calls :meth:`set_epoch` at the start of each training epoch; the dataset's
    ``set_epoch`` (bag draws) is called too.
    """

    def __init__(self, dataset: Dataset, seed: int = 0):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(len(self.dataset), generator=g).tolist())


class SliceAugment:
    """Augmentation of MR slice batches on tensors (training only).

    Per image: left-right flip with probability ``flip_p``; rotation by up to
    ``max_rotate_deg``, isotropic scaling by up to ``max_scale`` and a shift of up to
    ``max_shift`` of the field of view, all computed in physical (mm) space so that
    non-square pixels are rotated correctly; intensity ``x * (1 + a) + b`` with
    ``|a| <= contrast`` and ``|b| <= brightness`` (in the cache's normalised units).

    Args:
        seed: base seed; ``__call__(x, step=...)`` is deterministic for (seed, step).
        pixel_aspect: row-mm / column-mm of the ROI pixels (1.0 for square pixels).

    Examples:
        >>> aug = SliceAugment(seed=0)
        >>> x = torch.rand(4, 1, 32, 32)
        >>> torch.equal(aug(x, step=3), aug(x, step=3))
        True
    """

    def __init__(self, *, flip_p: float = 0.5, max_rotate_deg: float = 10.0, max_scale: float = 0.1,
                 max_shift: float = 0.05, contrast: float = 0.1, brightness: float = 0.1,
                 seed: int = 0, pixel_aspect: float = 1.0):
        if not 0 <= flip_p <= 1:
            raise ValueError("flip_p must be in [0, 1]")
        if pixel_aspect <= 0:
            raise ValueError("pixel_aspect must be positive")
        self.flip_p, self.max_rotate_deg, self.max_scale = flip_p, max_rotate_deg, max_scale
        self.max_shift, self.contrast, self.brightness = max_shift, contrast, brightness
        self.seed, self.pixel_aspect = seed, pixel_aspect

    def __repr__(self) -> str:
        return (f"SliceAugment(flip_p={self.flip_p}, max_rotate_deg={self.max_rotate_deg}, "
                f"max_scale={self.max_scale}, max_shift={self.max_shift}, contrast={self.contrast}, "
                f"brightness={self.brightness})")

    def __call__(self, x: torch.Tensor, step: int = 0) -> torch.Tensor:
        """Augment a batch (B, C, H, W) or a batch of bags (B, K, C, H, W)."""
        shape = x.shape
        x = x.reshape(-1, *shape[-3:])
        n = x.shape[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(step))
        u = lambda: torch.rand(n, generator=g) * 2 - 1  # noqa: E731  uniform in [-1, 1]
        flip = torch.rand(n, generator=g) < self.flip_p
        theta = u() * math.radians(self.max_rotate_deg)
        scale = 1 + u() * self.max_scale
        shift = torch.stack([u(), u()], dim=1) * self.max_shift * 2  # normalised coords span 2
        a, b = u() * self.contrast, u() * self.brightness
        # affine in physical space: p_norm = D^-1 R S D p_norm' with D = diag(col extent, row extent)
        h, w = x.shape[-2:]
        ext = torch.tensor([w * 1.0, h * self.pixel_aspect])
        cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
        rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (n,2,2)
        mat = rot * ext.view(1, 1, 2) / ext.view(1, 2, 1)
        mat[:, :, 0] = torch.where(flip.view(n, 1), -mat[:, :, 0], mat[:, :, 0])
        # the draws are made on the CPU (the same numbers on any device), applied where x is
        on = dict(device=x.device, dtype=x.dtype)
        affine = torch.cat([mat, shift.unsqueeze(-1)], dim=2).to(**on)
        grid = F.affine_grid(affine, list(x.shape), align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        y = y * (1 + a.view(n, 1, 1, 1).to(**on)) + b.view(n, 1, 1, 1).to(**on)
        return y.reshape(shape)
