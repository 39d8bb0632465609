"""npcai.imaging: from cohort volumes to the ROI datasets networks train on.

Modules (one concept each): ``volume_io`` (channels on one grid), ``normalise`` (per-scan
intensity), ``masks`` (regions, small components, expansion, boxes), ``variants`` (variant
strings and applying them to a slice), ``slices`` (slice selection), ``roi_cache``
(``build_roi`` and ``RoiDataset``), ``preview`` (the labelled montage).
"""
from npcai.imaging.roi_cache import RoiDataset, build_roi, list_rois
from npcai.imaging.variants import Variant, parse_variant

__all__ = ["build_roi", "RoiDataset", "list_rois", "Variant", "parse_variant"]
