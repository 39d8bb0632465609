"""The feature extractor: pyradiomics settings and one 2D slice's feature vector.

Features are computed per ROI slice in 2D (``force2D``: the ROI cache's slices are resized
crops, each with its own in-plane pixel size and no common 3D grid) on the slice's feature
region (:mod:`npcai.radiomics.regions`), with the slice's pixel size in mm, and averaged over
a patient's slices (IBSI's "2D, averaged over slices" aggregation). The intensities are the
ROI cache's normalised values (MR has arbitrary units), discretised to a fixed bin number
(IBSI's recommendation for arbitrary-unit images). Only the original image is used (no
wavelet or LoG filters): about 100 features per sequence.

Feature classes: first order, 2D shape, GLCM, GLRLM, GLSZM, GLDM and NGTDM. Feature names are
pyradiomics' (``original_glcm_Contrast``), prefixed with the ROI channel (``T1c__...``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from npcai.errors import NpcaiError

__all__ = ["FEATURE_CLASSES", "ExtractionSettings", "package_version", "SliceExtractor"]

log = logging.getLogger(__name__)

#: pyradiomics feature classes computed (``shape2D``: the 2D shape of the slice's region)
FEATURE_CLASSES = ("firstorder", "shape2D", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


@dataclass(frozen=True)
class ExtractionSettings:
    """What decides the feature values (recorded with the feature table; a change re-extracts).

    Attributes:
        bin_count: fixed number of grey-level bins (IBSI "fixed bin number").
        classes: the pyradiomics feature classes (:data:`FEATURE_CLASSES` by default).
        min_pixels: slices whose feature region has fewer pixels are skipped (texture
            matrices of a handful of pixels are noise).
    """

    bin_count: int = 32
    classes: tuple[str, ...] = FEATURE_CLASSES
    min_pixels: int = 16

    def __post_init__(self) -> None:
        if int(self.bin_count) < 2:
            raise NpcaiError(f"--bin-count {self.bin_count}: give at least 2 grey-level bins (32 is typical)")
        unknown = [c for c in self.classes if c not in FEATURE_CLASSES]
        if unknown or not self.classes:
            raise NpcaiError(f"feature classes {','.join(unknown) or '(none)'}: choose from "
                             f"{', '.join(FEATURE_CLASSES)}")
        if int(self.min_pixels) < 1:
            raise NpcaiError(f"min_pixels {self.min_pixels}: give at least 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d


def _radiomics():
    """Import pyradiomics quietly: its import adds a stderr handler (a library never prints)."""
    try:
        import radiomics
        from radiomics import featureextractor
    except ImportError as exc:       # pragma: no cover - a dependency of npcai
        raise NpcaiError("radiomics features need the pyradiomics-bhklab package; "
                         "install it with `pip install pyradiomics-bhklab`") from exc
    logger = logging.getLogger("radiomics")
    handler = getattr(radiomics, "handler", None)
    if handler is not None and handler in logger.handlers:
        logger.removeHandler(handler)
    logger.setLevel(logging.ERROR)
    return radiomics, featureextractor


def package_version() -> str:
    """The version of the installed feature package (recorded with every feature table)."""
    from importlib import metadata

    try:
        return metadata.version("pyradiomics-bhklab")
    except metadata.PackageNotFoundError:      # pragma: no cover
        radiomics, _ = _radiomics()
        return str(getattr(radiomics, "__version__", "unknown"))


@dataclass
class SliceExtractor:
    """One configured pyradiomics extractor; :meth:`features` of one slice and region.

    Examples:
        >>> ex = SliceExtractor(ExtractionSettings())                       # doctest: +SKIP
        >>> f = ex.features(image2d, region2d, pixel_mm=(0.9, 0.9))         # doctest: +SKIP
        >>> f["original_firstorder_Mean"]                                   # doctest: +SKIP
    """

    settings: ExtractionSettings
    _extractor: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _, featureextractor = _radiomics()
        ex = featureextractor.RadiomicsFeatureExtractor(
            binCount=int(self.settings.bin_count), force2D=True, force2Ddimension=0, label=1,
            additionalInfo=False, minimumROIDimensions=2)
        ex.disableAllFeatures()
        ex.disableAllImageTypes()
        ex.enableImageTypeByName("Original")
        for cls in self.settings.classes:
            ex.enableFeatureClassByName(cls)
        self._extractor = ex

    def features(self, image: np.ndarray, region: np.ndarray, *, pixel_mm: tuple[float, float]) -> dict[str, float]:
        """The features of one 2D slice on its region.

        Args:
            image: ``(S, S)`` intensities (one channel).
            region: ``(S, S)`` bool, the feature region.
            pixel_mm: ``(row_mm, col_mm)`` pixel size.

        Returns:
            feature name -> value (float).

        Raises:
            NpcaiError: the region has fewer than ``min_pixels`` pixels, or pyradiomics refuses it
                (e.g. a region one pixel wide).
        """
        import SimpleITK as sitk

        n = int(np.count_nonzero(region))
        if n < self.settings.min_pixels:
            raise NpcaiError(f"feature region has {n} pixels (fewer than {self.settings.min_pixels})")
        img = sitk.GetImageFromArray(np.asarray(image, np.float64)[None])
        msk = sitk.GetImageFromArray(np.asarray(region, np.uint8)[None])
        spacing = (float(pixel_mm[1]), float(pixel_mm[0]), 1.0)
        if not all(math.isfinite(s) and s > 0 for s in spacing):
            raise NpcaiError(f"pixel size {pixel_mm} mm is not positive")
        img.SetSpacing(spacing)
        msk.CopyInformation(img)
        try:
            result = self._extractor.execute(img, msk)
        except (ValueError, RuntimeError, IndexError, ZeroDivisionError) as exc:
            raise NpcaiError(f"pyradiomics: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
                from exc
        return {k: float(np.asarray(v)) for k, v in result.items() if k.startswith("original_")}
