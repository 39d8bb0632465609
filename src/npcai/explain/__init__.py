"""Grad-CAM explanations of npcai classifiers and where their attention goes.

- :mod:`~npcai.explain.target_layers`: the deepest stage of any timm CNN backbone whose map is
  at least 7x7 at the run's input size (the last stage at 224 px);
- :mod:`~npcai.explain.cam`: CAMs for one-logit models through pytorch-grad-cam
  (gradcam, gradcam++, scorecam, layercam; targets ``high-risk`` / ``predicted``);
- :mod:`~npcai.explain.localisation`: shares of CAM energy in the tumour, the nodes, distance
  bands around them (native px and mm) and the far field, against uniform attention;
- :mod:`~npcai.explain.overlays`: overlays, montages and the share bar chart;
- :mod:`~npcai.explain.explain`: :func:`explain_run`, the library side of ``npcai explain``.

Examples:
    >>> from npcai.explain import explain_run
    >>> res = explain_run("runs/seg_b0", "explain/seg_b0", top=4)   # doctest: +SKIP
"""
from npcai._lazy import lazy_exports

_EXPORTS = {
    'METHODS': 'npcai.explain.cam',
    'TARGETS': 'npcai.explain.cam',
    'CamResult': 'npcai.explain.cam',
    'LogitTarget': 'npcai.explain.cam',
    'compute_cams': 'npcai.explain.cam',
    'create_cam': 'npcai.explain.cam',
    'ExplainResult': 'npcai.explain.explain',
    'explain_run': 'npcai.explain.explain',
    'select_patients': 'npcai.explain.explain',
    'summarise_localisation': 'npcai.explain.explain',
    'MM_EDGES': 'npcai.explain.localisation',
    'PX_EDGES': 'npcai.explain.localisation',
    'RoiGeometry': 'npcai.explain.localisation',
    'band_mask': 'npcai.explain.localisation',
    'band_share': 'npcai.explain.localisation',
    'energy_shares': 'npcai.explain.localisation',
    'excluded_share': 'npcai.explain.localisation',
    'informative_pixels': 'npcai.explain.localisation',
    'region_maps': 'npcai.explain.localisation',
    'region_names': 'npcai.explain.localisation',
    'roi_geometry': 'npcai.explain.localisation',
    'uniform_shares': 'npcai.explain.localisation',
    'Panel': 'npcai.explain.overlays',
    'plot_localisation': 'npcai.explain.overlays',
    'save_montage': 'npcai.explain.overlays',
    'save_overlay': 'npcai.explain.overlays',
    'TargetLayer': 'npcai.explain.target_layers',
    'backbone_name': 'npcai.explain.target_layers',
    'find_target_layer': 'npcai.explain.target_layers',
    'MIN_MAP_SIZE': 'npcai.explain.target_layers',
}

__all__ = [
    "METHODS", "TARGETS", "CamResult", "LogitTarget", "compute_cams", "create_cam",
    "ExplainResult", "explain_run", "select_patients", "summarise_localisation",
    "MM_EDGES", "PX_EDGES", "RoiGeometry", "band_mask", "band_share", "energy_shares", "excluded_share",
    "informative_pixels", "region_maps",
    "region_names", "roi_geometry", "uniform_shares",
    "Panel", "plot_localisation", "save_montage", "save_overlay",
    "TargetLayer", "backbone_name", "find_target_layer", "MIN_MAP_SIZE",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
