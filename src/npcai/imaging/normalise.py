"""Per-scan intensity normalisation, so slices from different scanners share one scale.

MR intensities have no absolute unit, so each scan is normalised on its own (study 004
normalises to a reference for the same reason). The default, ``robust``, is:

1. body voxels = voxels above the scan's Otsu threshold (separates air/background from
   tissue for MR and for CT in Hounsfield units alike);
2. clip the whole scan to the 0.5th-99.5th percentile of the body voxels (removes spikes,
   metal, and the -1024 HU padding of CT);
3. z-score with the mean and standard deviation of the clipped body voxels.

Forms of the ``normalise`` parameter (recorded in ``variant.json``):

* ``robust`` or ``robust:LOW-HIGH`` (percentiles, e.g. ``robust:1-99``), as above;
* ``window:CENTRE,WIDTH`` -- a fixed intensity window (e.g. ``window:40,400`` soft-tissue
  CT), clipped and then scaled to [-1, 1]; useful when intensities have a physical unit;
* ``none`` -- raw intensities (only sensible for data that is already normalised).
* ``histogram:PATH`` -- Nyúl–Udupa histogram standardisation onto the reference landmarks
  saved in ``PATH`` (:mod:`npcai.imaging.histogram`; learnt on training patients only, one
  reference per sequence; output on the reference's 0-100 scale). The recorded form is
  ``histogram:PATH#SHA`` so a changed landmarks file is a changed parameter.

Examples:
    >>> import numpy as np
    >>> v = np.random.default_rng(0).normal(100, 20, (4, 32, 32)).astype(np.float32)
    >>> z = normalise_volume(v, "robust")
    >>> bool(abs(float(z[v > 0].mean())) < 1.0)
    True
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from npcai.errors import NpcaiError

__all__ = ["Normalisation", "parse_normalisation", "normalise_volume", "body_mask"]

_ROBUST = re.compile(r"^robust(?::(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?))?$")
_WINDOW = re.compile(r"^window:(-?\d+(?:\.\d+)?),(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Normalisation:
    """A parsed normalisation: ``method`` is robust/window/none with its parameters."""

    method: str
    low: float = 0.5          # robust: percentiles of body voxels
    high: float = 99.5
    centre: float = 0.0       # window
    width: float = 0.0
    path: str = ""            # histogram: landmarks JSON and the first 16 hex of its SHA-256
    digest: str = ""

    def __str__(self) -> str:
        if self.method == "robust":
            return "robust" if (self.low, self.high) == (0.5, 99.5) else f"robust:{self.low:g}-{self.high:g}"
        if self.method == "window":
            return f"window:{self.centre:g},{self.width:g}"
        if self.method == "histogram":
            return f"histogram:{self.path}#{self.digest}"
        return "none"


def parse_normalisation(text: str | Normalisation) -> Normalisation:
    """Parse ``robust``, ``robust:LOW-HIGH``, ``window:CENTRE,WIDTH`` or ``none``."""
    if isinstance(text, Normalisation):
        return text
    if str(text).strip().lower().startswith("histogram"):
        return _parse_histogram(str(text).strip())
    s = str(text).strip().lower()
    if m := _ROBUST.match(s):
        low, high = (float(m.group(1)), float(m.group(2))) if m.group(1) else (0.5, 99.5)
        if not 0 <= low < high <= 100:
            raise NpcaiError(f"normalisation {text!r}: percentiles must satisfy 0 <= LOW < HIGH <= 100")
        return Normalisation("robust", low=low, high=high)
    if m := _WINDOW.match(s):
        width = float(m.group(2))
        if width <= 0:
            raise NpcaiError(f"normalisation {text!r}: the window width must be > 0")
        return Normalisation("window", centre=float(m.group(1)), width=width)
    if s == "none":
        return Normalisation("none")
    raise NpcaiError(f"normalisation {text!r} is not valid; use robust, robust:LOW-HIGH "
                     "(e.g. robust:1-99), window:CENTRE,WIDTH (e.g. window:40,400), histogram:LANDMARKS.json "
                     "or none")


def _parse_histogram(text: str) -> Normalisation:
    from pathlib import Path

    from npcai.fsutil import file_sha256
    from npcai.imaging.histogram import load_standardisers

    path = text.partition(":")[2].rsplit("#", 1)[0].strip()
    if not path:
        raise NpcaiError(f"normalisation {text!r}: histogram standardisation needs the landmarks learnt on "
                         "the training patients: histogram:LANDMARKS.json (npcai.imaging.histogram)")
    resolved = Path(path).expanduser().resolve()
    load_standardisers(resolved)  # validates the file (one-line error naming it)
    return Normalisation("histogram", path=str(resolved), digest=file_sha256(resolved)[:16])


_STANDARDISERS: dict[tuple[str, str], dict] = {}


def _standardiser(norm: Normalisation, channel: str | None):
    from npcai.imaging.histogram import load_standardisers

    from npcai.fsutil import file_sha256

    key = (norm.path, norm.digest)
    if key not in _STANDARDISERS:
        if file_sha256(norm.path)[:16] != norm.digest:
            raise NpcaiError(f"{norm.path}: the histogram landmarks file changed after it was chosen; "
                             "build again with the file you mean")
        _STANDARDISERS[key] = load_standardisers(norm.path)
    table = _STANDARDISERS[key]
    sequence = (channel or "").rsplit(":", 1)[-1]   # channels are "T1c" or "pre:T1c"
    if sequence not in table:
        raise NpcaiError(f"{norm.path}: no histogram landmarks for sequence {sequence or '(unknown)'!r} "
                         f"(it has {', '.join(sorted(table))}); learn them for every sequence of the ROI")
    return table[sequence]


def body_mask(volume: np.ndarray) -> np.ndarray:
    """Voxels above the Otsu threshold of the volume (all voxels if the volume is constant)."""
    from skimage.filters import threshold_otsu

    finite = volume[np.isfinite(volume)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.ones(volume.shape, bool)
    # Otsu on a subsample is enough and keeps big scans fast; fixed stride = deterministic.
    sample = finite[:: max(1, finite.size // 200_000)]
    return volume > threshold_otsu(sample)


def normalise_volume(volume: np.ndarray, normalisation: str | Normalisation = "robust", *,
                     channel: str | None = None) -> np.ndarray:
    """Return ``volume`` (any shape, one scan) normalised as described in the module docstring.

    ``channel`` (e.g. ``T1c`` or ``pre:T1c``) picks the sequence's landmarks for ``histogram``.
    """
    norm = parse_normalisation(normalisation)
    v = np.asarray(volume, dtype=np.float32)
    if norm.method == "none":
        return v.copy()
    if norm.method == "histogram":
        return _standardiser(norm, channel).transform(v)
    if norm.method == "window":
        lo, hi = norm.centre - norm.width / 2, norm.centre + norm.width / 2
        return ((np.clip(v, lo, hi) - lo) / (hi - lo) * 2 - 1).astype(np.float32)
    body = body_mask(v)
    values = v[body]
    lo, hi = np.percentile(values, [norm.low, norm.high])
    clipped = np.clip(v, lo, hi)
    body_vals = clipped[body]
    mean, std = float(body_vals.mean()), float(body_vals.std())
    if std < 1e-6:
        std = 1.0
    return ((clipped - mean) / std).astype(np.float32)
