"""The run folder: what ``npcai train`` writes and every later stage reads.

::

    RUN/
      config.yaml                 every resolved option, seed, versions, cohort + ROI hashes
      split.csv                   patient_id, split, label
      predictions_slices.csv      roi_row, patient_id, split, slice_index, label, prob
      predictions_patients.csv    patient_id, split, label, prob, n_slices
      checkpoints/best.ckpt       selected on validation AUC only (and last.ckpt for --resume)
      history.csv                 epoch, train_loss, val_loss, val_auc
      training_curve.png
      summary.json                counts per split/label, excluded patients, best epoch, val AUC

A run is built in ``.RUN.partial/`` beside ``RUN`` and renamed when complete, so an
interrupted run never looks finished; ``--resume`` continues from the partial folder (or
from a finished run's ``last.ckpt``).

Examples:
    >>> run = load_run("runs/r1")               # doctest: +SKIP
    >>> run.model(x).sigmoid()                  # doctest: +SKIP
"""
from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from npcai.errors import NpcaiError
from npcai.fsutil import atomic_write_text

__all__ = ["RUN_FORMAT", "LoadedRun", "load_run", "package_versions", "partial_dir",
           "write_yaml", "write_json", "write_csv", "read_config", "load_state_from_checkpoint"]

RUN_FORMAT = "npcai-run/1"


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers."""
    import numpy
    import timm
    import lightning

    import npcai

    return {"python": platform.python_version(), "npcai": npcai.__version__, "torch": torch.__version__,
            "timm": timm.__version__, "lightning": lightning.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__}


def partial_dir(out: str | Path) -> Path:
    """The folder a run is built in before it is renamed to ``out``."""
    out = Path(out).resolve()
    return out.parent / f".{out.name}.partial"


def write_yaml(path: Path, data: dict) -> None:
    plain = json.loads(json.dumps(data, default=str))  # numpy / version objects -> plain YAML types
    atomic_write_text(path, yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


def write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's config.yaml as a dict (fails with one line when it is not a run)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise NpcaiError(f"{run_dir}: not an npcai run (no config.yaml); create one with `npcai train`")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NpcaiError(f"{path}: not valid YAML ({exc}); re-run `npcai train`") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise NpcaiError(f"{path}: not an {RUN_FORMAT} config; re-run `npcai train`")
    return cfg


def load_state_from_checkpoint(model: torch.nn.Module, ckpt: Path) -> int:
    """Load a Lightning checkpoint's ``model.*`` weights into ``model``; returns its epoch."""
    if not ckpt.is_file():
        raise NpcaiError(f"{ckpt}: checkpoint missing; re-run `npcai train`")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights, strict=True)
    return int(state.get("epoch", -1))


@dataclass
class LoadedRun:
    """A finished run, ready for evaluation, explanation or serving.

    Attributes:
        path: the run folder.
        config: config.yaml as a dict (``config["options"]`` holds the training options).
        split: DataFrame indexed by patient_id with ``split`` and ``label``.
        model: eval-mode :class:`ImageClassifier` (per-slice; for patient-unit runs the MIL
            model's slice classifier, sharing its head). None for ensemble runs.
        patient_model: eval-mode :class:`PatientMILClassifier` for patient-unit runs, else None.
        roi: the run's :class:`npcai.imaging.roi_cache.RoiDataset` (None for ensembles).
        members: for ensemble runs, the member run folders.
    """

    path: Path
    config: dict[str, Any]
    split: pd.DataFrame
    model: torch.nn.Module | None = None
    patient_model: torch.nn.Module | None = None
    roi: Any = None
    members: list[Path] = field(default_factory=list)

    def predictions(self, level: str = "patients") -> pd.DataFrame:
        """``predictions_patients.csv`` (level="patients") or ``predictions_slices.csv``."""
        path = self.path / f"predictions_{level}.csv"
        if not path.is_file():
            raise NpcaiError(f"{path}: missing; re-run `npcai train`")
        return pd.read_csv(path, dtype={"patient_id": str})


def load_run(run_dir: str | Path, *, checkpoint: str = "best") -> LoadedRun:
    """Open a run folder written by ``npcai train`` (or ``npcai ensemble``).

    Args:
        run_dir: the run folder.
        checkpoint: ``best`` (selected on validation AUC) or ``last``.
    """
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.models.factory import create_classifier, create_patient_classifier

    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    split_path = run_dir / "split.csv"
    if not split_path.is_file():
        raise NpcaiError(f"{split_path}: missing; re-run `npcai train`")
    split = pd.read_csv(split_path, dtype={"patient_id": str}).set_index("patient_id")
    if cfg.get("kind") == "ensemble":
        return LoadedRun(run_dir, cfg, split, members=[Path(m["path"]) for m in cfg["members"]])
    opt, res = cfg["options"], cfg["resolved"]
    kwargs = dict(in_chans=int(res["in_chans"]), pretrained=False, weights=None, dropout=float(opt["dropout"]))
    if opt["unit"] == "patient":
        patient_model = create_patient_classifier(opt["backbone"], pooling=opt["pooling"], **kwargs)
        load_state_from_checkpoint(patient_model, run_dir / "checkpoints" / f"{checkpoint}.ckpt")
        patient_model.eval()
        model = patient_model.slice_model
    else:
        patient_model = None
        model = create_classifier(opt["backbone"], **kwargs)
        load_state_from_checkpoint(model, run_dir / "checkpoints" / f"{checkpoint}.ckpt")
    model.eval()
    roi = RoiDataset.open(opt["cohort"], opt["roi"])
    if roi.input_hash != cfg["roi"]["input_hash"]:
        import logging

        logging.getLogger(__name__).warning(
            "%s: ROI cache %s changed since the run was trained (input hash differs)", run_dir, opt["roi"])
    return LoadedRun(run_dir, cfg, split, model, patient_model, roi)


def copy_for_resume(src: Path, dst: Path) -> None:
    """Copy a finished run to its partial folder so ``--resume`` can continue it."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
