"""A finished run with its network, ready for explanation, prediction or serving.

Examples:
    >>> run = load_run("runs/r1")                 # doctest: +SKIP
    >>> run.model(x).sigmoid()                    # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from npcai.errors import NpcaiError
from npcai.runs.folder import (PATIENTS, SLICES, Predictions, RunConfig, check_cohort, check_roi,
                               read_config, read_predictions, read_split)

__all__ = ["LoadedRun", "load_run", "load_network"]


@dataclass
class LoadedRun:
    """A finished run, ready for evaluation, explanation or serving.

    Attributes:
        path: the run folder.
        config: the :class:`~npcai.runs.folder.RunConfig` (``config.options``: training options).
        split: DataFrame indexed by patient_id with ``split`` and ``label``.
        model: eval-mode :class:`ImageClassifier` (per-slice; for patient-unit runs the MIL
            model's slice classifier, sharing its head). None for ensemble runs.
        patient_model: eval-mode :class:`PatientMILClassifier` for patient-unit runs, else None.
        roi: the run's :class:`npcai.imaging.roi_cache.RoiDataset` (None for ensembles).
        members: for ensemble runs, the member run folders.
    """

    path: Path
    config: RunConfig
    split: pd.DataFrame
    model: torch.nn.Module | None = None
    patient_model: torch.nn.Module | None = None
    roi: Any = None
    members: list[Path] = field(default_factory=list)

    def predictions(self, level: str = "patients") -> pd.DataFrame:
        """Patient (``level="patients"``) or slice predictions saved at training."""
        preds: Predictions = read_predictions(self.path)
        if level == "patients":
            return preds.patients
        if preds.slices is None:
            raise NpcaiError(f"{self.path / SLICES}: missing; this run has only {PATIENTS}")
        return preds.slices


def load_network(config: RunConfig, checkpoint: str = "best") -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(slice model, patient model or None) of a training run, weights from its checkpoint
    (loaded with ``weights_only=True``), eval mode."""
    from npcai.models.train import build_network
    from npcai.runs.checkpoint import load_model_weights

    if config.kind != "train":
        raise NpcaiError(f"{config.path}: a {config.kind} folder has no network of its own")
    if config.method == "radiomics":
        raise NpcaiError(f"{config.path}: a radiomics run (elastic net on handcrafted features) has no network; "
                         "explain, predict and serve need a deep run from `npcai train`")
    if checkpoint not in ("best", "last"):
        raise NpcaiError(f"checkpoint {checkpoint!r}: choose best or last")
    resolved = config.raw.get("resolved") or {}
    if "in_chans" not in resolved:
        raise NpcaiError(f"{config.path / 'config.yaml'}: no resolved input channels; train the run again")
    net = build_network(config.options, int(resolved["in_chans"]), pretrained=False, weights=None)
    load_model_weights(net, config.path / "checkpoints" / f"{checkpoint}.ckpt")
    net.eval()
    if config.options.get("unit") == "patient":   # a survival network has no slice model of its own
        return getattr(net, "slice_model", net).eval(), net
    return net, None


def load_run(run_dir: str | Path, *, checkpoint: str = "best") -> LoadedRun:
    """Open a run folder written by ``npcai train`` (or ``npcai ensemble``) with its network and
    ROI dataset; refuses, naming both, a cohort or ROI cache that changed since training.

    Args:
        run_dir: the run folder.
        checkpoint: ``best`` (selected on the validation patients) or ``last``.
    """
    from npcai.imaging.roi_cache import RoiDataset

    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    split = read_split(run_dir)
    if cfg.kind == "ensemble":
        return LoadedRun(run_dir, cfg, split, members=list(cfg.members))
    if cfg.kind != "train":
        raise NpcaiError(f"{run_dir}: a {cfg.kind} folder, not a trained run")
    if cfg.cohort_path is None or cfg.roi_name is None:
        raise NpcaiError(f"{run_dir / 'config.yaml'}: names no cohort or ROI dataset; train the run again")
    check_cohort(cfg, cfg.cohort_path, f"run {run_dir.name}")
    # the ROI the run recorded: a run that learnt histogram landmarks trained on a rebuilt cache
    roi = RoiDataset.open(cfg.cohort_path, cfg.roi.name if cfg.roi is not None else cfg.roi_name)
    check_roi(cfg, roi, f"run {run_dir.name}")
    model, patient_model = load_network(cfg, checkpoint)
    return LoadedRun(run_dir, cfg, split, model, patient_model, roi)
