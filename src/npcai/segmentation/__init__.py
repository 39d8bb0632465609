"""Segmentation of primary tumour and cervical nodes (studies 000 and 002): U-Net and DeepLabV3.

``train_segmenter`` -> ``evaluate_segrun`` / ``compare_segruns`` -> ``predict_masks`` (writes
``masks/<scan>_auto.nii.gz`` for ``npcai roi build --mask auto``) -> ``overlay_contours``.
Submodules are imported lazily so ``import npcai.segmentation`` stays cheap.
"""
from __future__ import annotations

import importlib

__all__ = ["create_segmenter", "list_architectures", "train_segmenter", "load_segrun", "evaluate_segrun",
           "compare_segruns", "predict_masks", "predict_volume", "overlay_contours", "dice_score", "hd95"]

_WHERE = {"create_segmenter": "models", "list_architectures": "models", "train_segmenter": "train",
          "load_segrun": "train", "evaluate_segrun": "evaluate", "compare_segruns": "compare",
          "predict_masks": "predict", "predict_volume": "predict", "overlay_contours": "overlay",
          "dice_score": "metrics", "hd95": "metrics"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"npcai.segmentation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'npcai.segmentation' has no attribute {name!r}")
