"""Grad-CAM explanations of npcai classifiers and where their attention goes.

- :mod:`~npcai.explain.target_layers`: the last convolutional stage of any timm CNN backbone;
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
from npcai.explain.cam import METHODS, TARGETS, CamResult, LogitTarget, compute_cams, create_cam
from npcai.explain.explain import ExplainResult, explain_run, select_patients, summarise_localisation
from npcai.explain.localisation import (MM_EDGES, PX_EDGES, RoiGeometry, band_mask, band_share,
                                        energy_shares, region_maps, region_names, roi_geometry,
                                        uniform_shares)
from npcai.explain.overlays import Panel, plot_localisation, save_montage, save_overlay
from npcai.explain.target_layers import TargetLayer, backbone_name, find_target_layer

__all__ = [
    "METHODS", "TARGETS", "CamResult", "LogitTarget", "compute_cams", "create_cam",
    "ExplainResult", "explain_run", "select_patients", "summarise_localisation",
    "MM_EDGES", "PX_EDGES", "RoiGeometry", "band_mask", "band_share", "energy_shares", "region_maps",
    "region_names", "roi_geometry", "uniform_shares",
    "Panel", "plot_localisation", "save_montage", "save_overlay",
    "TargetLayer", "backbone_name", "find_target_layer",
]
