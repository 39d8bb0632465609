"""Reading what evaluation needs from a run folder (docs/contracts.md, "Run folder").

Only files are read (config.yaml, split.csv, predictions_*.csv): evaluation never loads a
model. The run's options live in ``config.yaml["options"]`` (``npcai train``); ensemble runs
(``kind: ensemble``) have no single backbone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from npcai.errors import NpcaiError

__all__ = ["RunData", "read_run"]

_PATIENT_COLUMNS = ("patient_id", "split", "label", "prob")
_SLICE_COLUMNS = ("patient_id", "split", "label", "prob")


@dataclass
class RunData:
    """The predictions and identity of one run.

    Attributes:
        path: the run folder; ``name`` its folder name.
        config: config.yaml as a dict.
        patients: predictions_patients.csv (patient_id as str).
        slices: predictions_slices.csv, or None when the run has none.
        cohort: the cohort folder the run was trained on (None if not recorded).
        endpoint, roi, backbone: from the config (backbone "ensemble" for ensembles).
    """

    path: Path
    name: str
    config: dict[str, Any]
    patients: pd.DataFrame
    slices: pd.DataFrame | None
    cohort: Path | None
    endpoint: str | None
    roi: str | None
    backbone: str | None

    def split_patients(self, split: str) -> pd.DataFrame:
        """Patient predictions of one split (indexed by patient_id); fails when there are none."""
        d = self.patients[self.patients["split"] == split].set_index("patient_id")
        if d.empty:
            have = ", ".join(sorted(self.patients["split"].astype(str).unique()))
            raise NpcaiError(f"{self.path / 'predictions_patients.csv'}: no patients in split {split!r} "
                             f"(splits present: {have}); choose --split accordingly")
        return d


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"patient_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NpcaiError(f"{path}: cannot read ({exc}); re-run `npcai train`") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise NpcaiError(f"{path}: column {missing[0]!r} missing; re-run `npcai train` "
                         f"(expected {', '.join(required)})")
    return df


def _option(cfg: dict, key: str):
    """``config["options"][key]`` (npcai train), else the top-level key; a top-level
    ``cohort``/``roi`` block gives its ``path``/``name``."""
    opts = cfg.get("options")
    if isinstance(opts, dict) and opts.get(key) is not None:
        return opts[key]
    value = cfg.get(key)
    if isinstance(value, dict):
        value = value.get("path" if key == "cohort" else "name")
    return value


def read_run(run_dir: str | Path) -> RunData:
    """Open a run folder's config and predictions, with one-line errors for what is missing."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise NpcaiError(f"{run_dir}: not an npcai run (no config.yaml); create one with `npcai train`")
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise NpcaiError(f"{cfg_path}: not valid YAML ({exc}); re-run `npcai train`") from exc
    ppath = run_dir / "predictions_patients.csv"
    if not ppath.is_file():
        raise NpcaiError(f"{ppath}: missing; the run did not finish (re-run `npcai train`)")
    patients = _read_csv(ppath, _PATIENT_COLUMNS)
    dup = patients["patient_id"][patients["patient_id"].duplicated()]
    if len(dup):
        raise NpcaiError(f"{ppath}: patient {dup.iloc[0]} appears more than once; one row per patient expected")
    spath = run_dir / "predictions_slices.csv"
    slices = _read_csv(spath, _SLICE_COLUMNS) if spath.is_file() else None
    cohort, roi, backbone = _option(cfg, "cohort"), _option(cfg, "roi"), _option(cfg, "backbone")
    if cfg.get("kind") == "ensemble":
        cohort, roi, backbone = _ensemble_identity(cfg, run_dir, cohort, roi, backbone)
    if cohort is not None:
        cohort = Path(cohort)
        if not cohort.is_absolute() and not cohort.exists() and (run_dir / cohort).exists():
            cohort = run_dir / cohort
    return RunData(path=run_dir, name=run_dir.resolve().name, config=cfg, patients=patients,
                   slices=slices, cohort=cohort, endpoint=_option(cfg, "endpoint"),
                   roi=roi, backbone=backbone)


def _ensemble_identity(cfg: dict, run_dir: Path, cohort, roi, backbone):
    """An ensemble (``npcai ensemble``) takes its cohort from its members (they must agree),
    its dataset name from their ROI names joined by "+" and its model from their backbones."""
    members = []
    for m in cfg.get("members", []):
        path = Path(m["path"]) if isinstance(m, dict) else Path(m)
        try:
            members.append(yaml.safe_load((path / "config.yaml").read_text()) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise NpcaiError(f"{run_dir / 'config.yaml'}: member run {path} cannot be read ({exc}); "
                             "move the member runs back or re-run `npcai ensemble`") from exc
    if cohort is None and members:
        cohorts = {str(_option(c, "cohort")) for c in members}
        if len(cohorts) > 1:
            raise NpcaiError(f"{run_dir}: ensemble members come from different cohorts "
                             f"({', '.join(sorted(cohorts))}); evaluate them separately")
        cohort = cohorts.pop()
    def joined(key: str) -> str:
        return "+".join(dict.fromkeys(str(_option(c, key)) for c in members))
    roi = roi or (joined("roi") if members else None)
    backbone = backbone or (joined("backbone") if members else "ensemble")
    return cohort, roi, backbone
