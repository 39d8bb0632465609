"""npcai.imaging: from cohort volumes to the ROI datasets networks train on.

Modules (one concept each): ``volume_io`` (channels on one grid), ``normalise`` (per-scan
intensity), ``masks`` (regions, small components, expansion, boxes), ``variants`` (variant
strings and applying them to a slice), ``slices`` (slice selection), ``roi_cache``
(``build_roi`` and ``RoiDataset``), ``preview`` (the labelled montage).
"""
from npcai._lazy import lazy_exports

_EXPORTS = {
    'RoiDataset': 'npcai.imaging.roi_cache',
    'build_roi': 'npcai.imaging.roi_cache',
    'list_rois': 'npcai.imaging.roi_cache',
    'Variant': 'npcai.imaging.variants',
    'parse_variant': 'npcai.imaging.variants',
}

__all__ = ["build_roi", "RoiDataset", "list_rois", "Variant", "parse_variant"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
