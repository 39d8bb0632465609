"""Nyúl–Udupa histogram standardisation: map every scan's intensity landmarks onto a reference.

MR intensities have no unit and differ between scanners and centres (gain, field strength,
coil). Study 004 "normalised [the images] to match the reference template" for that reason.
The Nyúl–Udupa method (Nyúl, Udupa & Zhang, IEEE TMI 2000; TorchIO's
``HistogramStandardization``) learns the reference from *training* scans and maps any scan
onto it:

Fit (one sequence, training patients only):
    1. for each training volume take the foreground voxels (a mask; by default the voxels
       above the scan's Otsu threshold, :func:`npcai.imaging.normalise.body_mask`);
    2. compute its landmarks: the percentiles ``[cut_low, 10, 20, ..., 90, cut_high]``
       (deciles between the 1st and 99th percentile by default);
    3. rescale them linearly so that the two cut-off percentiles land on ``output_range``
       (``(0, 100)``, as TorchIO);
    4. the reference landmarks are the mean of the rescaled landmarks over the volumes.

Transform (any scan, e.g. a test patient from another centre):
    compute the scan's own landmarks the same way and map intensities piecewise-linearly
    from them onto the reference; below the first / above the last landmark the first /
    last segment is extended. A scan's landmarks therefore land exactly on the reference
    whatever its scanner's scale, and a pure intensity scaling of a scan gives the same
    output.

One :class:`HistogramStandardiser` holds one sequence's reference; a cohort with several
sequences has one per sequence (:func:`fit_cohort_standardisers`), saved together as JSON
with :func:`save_standardisers` (stored with a run, so that prediction applies exactly the
landmarks learnt at training).

Implemented here rather than by depending on TorchIO: the algorithm is twenty lines of
numpy, TorchIO would pull in a second image stack (its own readers, SimpleITK/nibabel
wrappers, a Subject/Image data model) for it, and its landmarks are saved with
``torch.save``/``np.save`` whereas npcai stores run artefacts as reviewable JSON.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scans = [rng.gamma(4.0, 50.0 * s, (4, 32, 32)).astype(np.float32) for s in (1.0, 1.3, 0.8)]
    >>> std = HistogramStandardiser().fit(scans)
    >>> out_a = std.transform(scans[0]); out_b = std.transform(3.0 * scans[0])
    >>> bool(np.allclose(out_a, out_b, atol=1e-3))
    True
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npcai.errors import NpcaiError
from npcai.imaging.normalise import body_mask

__all__ = ["HistogramStandardiser", "HISTOGRAM_FORMAT", "fit_cohort_standardisers", "save_standardisers",
           "load_standardisers", "read_split_patients", "standardisers_json", "RunHistogram",
           "fit_run_histogram", "LANDMARKS_DIR"]

HISTOGRAM_FORMAT = "npcai-histogram/1"
#: where a run's landmarks live inside the cohort (beside the ROI caches built with them)
LANDMARKS_DIR = ".landmarks"
DECILES = tuple(range(10, 100, 10))


class HistogramStandardiser:
    """Nyúl–Udupa standardisation of one sequence (see the module docstring).

    Parameters
    ----------
    landmarks : sequence of float
        Inner landmark percentiles (strictly increasing, inside ``cutoff``); deciles by default.
    cutoff : (float, float)
        The lower and upper percentiles (in %) that map onto ``output_range``.
    output_range : (float, float)
        Where the cut-off percentiles of every scan land (Nyúl's s1, s2).

    Attributes
    ----------
    percentiles_ : ndarray
        All landmark percentiles ``[cutoff[0], *landmarks, cutoff[1]]``.
    reference_ : ndarray
        The reference intensities of those landmarks (mean over the training volumes).
    n_volumes_ : int
        Number of volumes the reference was learnt from.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.linspace(1, 100, 4000, dtype=np.float32).reshape(4, 10, 100)
    >>> std = HistogramStandardiser().fit([v, 2 * v], masks=[v > 0, v > 0])
    >>> np.round(std.reference_[[0, -1]], 3).tolist()
    [0.0, 100.0]
    """

    def __init__(self, landmarks: Sequence[float] = DECILES, cutoff: tuple[float, float] = (1.0, 99.0),
                 output_range: tuple[float, float] = (0.0, 100.0)):
        lm = [float(x) for x in landmarks]
        lo, hi = (float(cutoff[0]), float(cutoff[1]))
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"cutoff must satisfy 0 <= low < high <= 100, got {cutoff}")
        if any(b <= a for a, b in zip(lm, lm[1:])) or (lm and (lm[0] <= lo or lm[-1] >= hi)):
            raise ValueError(f"landmarks must increase strictly inside the cutoff {cutoff}, got {lm}")
        if not float(output_range[0]) < float(output_range[1]):
            raise ValueError(f"output_range must be (low, high) with low < high, got {output_range}")
        self.landmarks = tuple(lm)
        self.cutoff = (lo, hi)
        self.output_range = (float(output_range[0]), float(output_range[1]))

    # ------------------------------------------------------------------ helpers
    def _all_percentiles(self) -> np.ndarray:
        return np.array([self.cutoff[0], *self.landmarks, self.cutoff[1]], dtype=np.float64)

    def landmarks_of(self, volume: np.ndarray, mask: np.ndarray | None = None, *, name: str = "volume") -> np.ndarray:
        """The volume's own intensities at the landmark percentiles (within its foreground)."""
        v = np.asarray(volume, dtype=np.float32)
        m = body_mask(v) if mask is None else np.asarray(mask, dtype=bool)
        if m.shape != v.shape:
            raise NpcaiError(f"{name}: mask shape {m.shape} differs from the image shape {v.shape}")
        values = v[m & np.isfinite(v)]
        if values.size < 2:
            raise NpcaiError(f"{name}: fewer than 2 foreground voxels; histogram standardisation needs "
                             "an image with tissue in its mask")
        p = np.percentile(values, self._all_percentiles())
        if not p[-1] > p[0]:
            raise NpcaiError(f"{name}: the foreground has one intensity ({p[0]:g}) between the "
                             f"{self.cutoff[0]:g}th and {self.cutoff[1]:g}th percentiles; "
                             "histogram standardisation needs a non-constant image")
        return p

    def _check_fitted(self) -> None:
        if not hasattr(self, "reference_"):
            raise RuntimeError("HistogramStandardiser is not fitted; call fit() first (or load_standardisers)")

    # ------------------------------------------------------------------ API
    def fit(self, volumes: Iterable[np.ndarray], masks: Iterable[np.ndarray | None] | None = None,
            names: Sequence[str] | None = None) -> HistogramStandardiser:
        """Learn the reference landmarks from training volumes (one sequence).

        Args:
            volumes: the training patients' volumes (any shape; one scan each).
            masks: foreground masks (same shapes), or None for the Otsu body mask of each.
            names: labels for error messages (e.g. patient ids); default ``volume <i>``.

        Returns:
            self
        """
        vols = list(volumes)
        if not vols:
            raise NpcaiError("histogram standardisation: no training volume to learn landmarks from; "
                             "the training cohort needs at least one scan of this sequence")
        mlist = [None] * len(vols) if masks is None else list(masks)
        if len(mlist) != len(vols):
            raise ValueError(f"{len(vols)} volumes but {len(mlist)} masks")
        labels = list(names) if names is not None else [f"volume {i}" for i in range(len(vols))]
        if len(labels) != len(vols):
            raise ValueError(f"{len(vols)} volumes but {len(labels)} names")
        s1, s2 = self.output_range
        scaled = []
        for v, m, name in zip(vols, mlist, labels):
            p = self.landmarks_of(v, m, name=name)
            scaled.append(s1 + (p - p[0]) / (p[-1] - p[0]) * (s2 - s1))
        self.percentiles_ = self._all_percentiles()
        self.reference_ = np.mean(scaled, axis=0)
        self.n_volumes_ = len(vols)
        return self

    def transform(self, volume: np.ndarray, mask: np.ndarray | None = None, *, name: str = "volume") -> np.ndarray:
        """Map ``volume`` (float32, same shape) onto the reference (piecewise linear)."""
        self._check_fitted()
        v = np.asarray(volume, dtype=np.float32)
        src = self.landmarks_of(v, mask, name=name)
        ref = self.reference_
        # plateaus (several landmarks at one intensity) would make the map undefined: spread them
        eps = (src[-1] - src[0]) * 1e-9
        src = np.maximum.accumulate(src + eps * np.arange(src.size))
        out = np.interp(v, src, ref)
        lo_slope = (ref[1] - ref[0]) / (src[1] - src[0])
        hi_slope = (ref[-1] - ref[-2]) / (src[-1] - src[-2])
        below, above = v < src[0], v > src[-1]
        out[below] = ref[0] + (v[below] - src[0]) * lo_slope
        out[above] = ref[-1] + (v[above] - src[-1]) * hi_slope
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-serialisable parameters and fitted reference."""
        self._check_fitted()
        return {"landmarks": list(self.landmarks), "cutoff": list(self.cutoff),
                "output_range": list(self.output_range), "percentiles": self.percentiles_.tolist(),
                "reference": self.reference_.tolist(), "n_volumes": int(self.n_volumes_)}

    @classmethod
    def from_dict(cls, d: Mapping, *, source: str = "landmarks") -> HistogramStandardiser:
        """Inverse of :meth:`to_dict` (validates the fields)."""
        try:
            std = cls(d["landmarks"], tuple(d["cutoff"]), tuple(d["output_range"]))
            ref = np.asarray(d["reference"], dtype=np.float64)
            n = int(d["n_volumes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NpcaiError(f"{source}: not a valid histogram standardisation ({type(exc).__name__}: {exc}); "
                             "fit the landmarks again") from exc
        if ref.shape != (len(std.landmarks) + 2,) or not np.all(np.isfinite(ref)) or np.any(np.diff(ref) < 0):
            raise NpcaiError(f"{source}: the reference must hold {len(std.landmarks) + 2} non-decreasing "
                             "numbers; fit the landmarks again")
        std.percentiles_ = std._all_percentiles()
        std.reference_ = ref
        std.n_volumes_ = n
        return std

    def __repr__(self) -> str:
        fitted = f", fitted on {self.n_volumes_} volumes" if hasattr(self, "reference_") else ""
        return f"HistogramStandardiser(cutoff={self.cutoff}, output_range={self.output_range}{fitted})"


def fit_cohort_standardisers(cohort_dir: str | Path, patients: Iterable[str], sequences: Sequence[str], *,
                             timepoint: str = "pre", **params) -> dict[str, HistogramStandardiser]:
    """One standardiser per sequence, learnt on the scans of ``patients`` (the training patients).

    Foregrounds are the Otsu body masks. A patient lacking a sequence is skipped for that
    sequence; a sequence that no listed patient has is an error. ``timepoint`` is ``pre``,
    ``post`` or ``both`` (one reference per sequence from the scans of both timepoints, as
    the ROI normalisation looks the reference up by sequence).
    """
    from npcai.cohort.model import Cohort

    cohort = Cohort.load(cohort_dir)
    wanted = list(dict.fromkeys(patients))
    timepoints = ("pre", "post") if timepoint == "both" else (timepoint,)
    out = {}
    for seq in sequences:
        scans = [s for pid in wanted for s in cohort.patient(pid).scans
                 if s.sequence == seq and s.timepoint in timepoints]
        if not scans:
            raise NpcaiError(f"{cohort.root}: none of the {len(wanted)} training patients has a {timepoint} "
                             f"{seq} scan; histogram landmarks for {seq} cannot be learnt")
        out[seq] = HistogramStandardiser(**params).fit(
            (cohort.read_array(s) for s in scans), names=[s.scan_id for s in scans])
    return out


def read_split_patients(path: str | Path, split: str = "train") -> list[str]:
    """Patients of one split in a ``split.csv`` (columns patient_id, split), e.g. a run's."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: split file not found; give a run's split.csv")
    table = pd.read_csv(path, dtype=str)
    missing = [c for c in ("patient_id", "split") if c not in table.columns]
    if missing:
        raise NpcaiError(f"{path}: no {missing[0]!r} column; a split file has columns patient_id and split")
    patients = table.loc[table["split"] == split, "patient_id"].dropna().tolist()
    if not patients:
        found = ", ".join(sorted(table["split"].dropna().unique())) or "none"
        raise NpcaiError(f"{path}: no patient in split {split!r} (splits: {found})")
    return patients


def standardisers_json(standardisers: Mapping[str, HistogramStandardiser]) -> str:
    """The JSON text of ``{sequence: standardiser}`` (format :data:`HISTOGRAM_FORMAT`)."""
    doc = {"format": HISTOGRAM_FORMAT, "method": "nyul-udupa",
           "sequences": {seq: std.to_dict() for seq, std in standardisers.items()}}
    return json.dumps(doc, indent=2) + "\n"


def save_standardisers(path: str | Path, standardisers: Mapping[str, HistogramStandardiser]) -> Path:
    """Write ``{sequence: standardiser}`` as JSON (atomically); returns the path."""
    from npcai.fsutil import atomic_write_text

    path = Path(path)
    atomic_write_text(path, standardisers_json(standardisers))
    return path


def load_standardisers(path: str | Path) -> dict[str, HistogramStandardiser]:
    """Read the JSON written by :func:`save_standardisers`."""
    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: histogram landmarks file not found; fit them on the training patients first")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NpcaiError(f"{path}: not a JSON file ({exc}); fit the histogram landmarks again") from exc
    if not isinstance(doc, dict) or doc.get("format") != HISTOGRAM_FORMAT or not isinstance(doc.get("sequences"), dict):
        raise NpcaiError(f"{path}: not an npcai histogram landmarks file (format {HISTOGRAM_FORMAT}); "
                         "fit the histogram landmarks again")
    return {str(seq): HistogramStandardiser.from_dict(d, source=f"{path} [{seq}]")
            for seq, d in doc["sequences"].items()}


# ---------------------------------------------------------------------------- inside a training run
@dataclass
class RunHistogram:
    """Histogram standardisation learnt inside one training run (:func:`fit_run_histogram`).

    Attributes:
        roi: the run's input: the base ROI cache rebuilt with these landmarks
            (``COHORT/roi/<base>-hist-<sha>``).
        standardisers: ``{sequence: HistogramStandardiser}`` learnt on the training patients.
        path: the landmarks JSON the ROI was built from (``COHORT/roi/.landmarks/<base>-<sha>.json``);
            the run keeps its own byte-identical copy (:data:`npcai.runs.LANDMARKS`).
        sha256: SHA-256 of that JSON (its first 16 hex digits are recorded in the ROI's
            normalisation ``histogram:PATH#SHA16``).
        patients: the training patients the landmarks were learnt on.
        base_roi: the name of the ROI cache whose parameters (but not normalisation) are kept.
    """

    roi: Any
    standardisers: dict[str, HistogramStandardiser]
    path: Path
    sha256: str
    patients: list[str]
    base_roi: str

    def record(self) -> dict[str, Any]:
        """What a run's config records about it (no patient identifier)."""
        return {"method": "nyul-udupa", "fitted_on": "train split", "n_patients": len(self.patients),
                "n_volumes": {seq: int(std.n_volumes_) for seq, std in self.standardisers.items()},
                "sha256": self.sha256, "base_roi": self.base_roi, "roi": self.roi.root.name}


def fit_run_histogram(cohort_dir: str | Path, roi, train_patients: Iterable[str]) -> RunHistogram:
    """Learn Nyúl–Udupa landmarks on a run's training patients and rebuild its ROI with them.

    The landmarks of every sequence of ``roi`` are learnt from the training patients' scans
    only (validation and test patients never contribute), written content-addressed to
    ``COHORT/roi/.landmarks/`` and the ROI cache is rebuilt with the same parameters and
    ``normalise = histogram:LANDMARKS`` (reused when it exists with the same inputs).

    Args:
        cohort_dir: the run's cohort.
        roi: the run's :class:`~npcai.imaging.roi_cache.RoiDataset` (its normalisation is replaced).
        train_patients: the patients of the run's training split.

    Raises:
        NpcaiError: the ROI was already built with histogram landmarks, or no training patient
            has a sequence.
    """
    import hashlib

    from npcai.fsutil import atomic_write_text
    from npcai.imaging.roi_cache import RoiDataset, build_roi, roi_dir
    from npcai.runs.folder import RoiSpec

    patients = sorted(dict.fromkeys(train_patients))
    spec = RoiSpec.of(roi)
    if str(spec.params.get("normalisation", "")).startswith("histogram"):
        raise NpcaiError(f"ROI dataset {roi.root.name}: already built with histogram landmarks "
                         f"({spec.params['normalisation']}); a run learning its own landmarks needs a ROI "
                         "built with robust normalisation")
    stds = fit_cohort_standardisers(cohort_dir, patients, list(spec.params.get("sequences", ["T1c"])),
                                    timepoint=spec.params.get("timepoint", "pre"))
    text = standardisers_json(stds)
    sha = hashlib.sha256(text.encode()).hexdigest()
    path = roi_dir(cohort_dir, LANDMARKS_DIR) / f"{roi.root.name}-{sha[:16]}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    name = f"{roi.root.name}-hist-{sha[:10]}"
    kwargs = spec.build_kwargs()
    kwargs["normalise"] = f"histogram:{path.resolve()}"
    build_roi(cohort_dir, name, **kwargs)
    return RunHistogram(RoiDataset.open(cohort_dir, name), stds, path.resolve(), sha, patients, roi.root.name)
