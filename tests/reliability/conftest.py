"""Fixtures of the reliability suite: one small cohort with an ROI cache and two run folders.

The run folders are written from the cohort's labels without training (evaluation reads only
files), so every bad-input case stays fast; ``test_fixture_runs_are_valid`` proves that the
untouched fixtures pass, so a case fails because of its one bad input and nothing else.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml


@dataclass(frozen=True)
class Env:
    """Read-only inputs shared by the cases (copy before changing anything)."""

    export: Path        # the session's phantom export
    cohort: Path        # an ingested cohort with the ROI cache ``seg``
    run: Path           # a finished-looking run folder on ``seg`` (backbone resnet18)
    run_b: Path         # the same test patients, another backbone
    segrun: Path        # a segmentation run folder without checkpoints (fails before loading)


def write_fake_run(out: Path, cohort: Path, *, backbone: str, seed: int) -> Path:
    """A run folder as ``npcai train`` writes it, with random predictions (no training)."""
    from npcai.cohort.endpoints import endpoint_labels
    from npcai.cohort.model import Cohort
    from npcai.cohort.splits import split_patients
    from npcai.imaging.roi_cache import RoiDataset
    from npcai.runs import RoiSpec, cohort_id

    labels = endpoint_labels(Cohort.load(cohort).clinical(), "pfs-median").labels
    split = split_patients(labels, test_fraction=0.3, val_fraction=0.3, seed=0)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    cfg = {"format": "npcai-run/1", "kind": "train",
           "options": {"cohort": str(cohort), "roi": "seg", "endpoint": "pfs-median", "backbone": backbone,
                       "unit": "image", "seed": 0, "dropout": 0.5, "pooling": "mean"},
           "resolved": {"in_chans": 1, "input_size": 32, "roi_size": 32},
           "cohort": {"path": str(cohort), "id": cohort_id(cohort)},
           "roi": RoiSpec.of(RoiDataset.open(cohort, "seg")).to_dict()}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    df = pd.DataFrame({"patient_id": labels.index, "split": split.reindex(labels.index).to_numpy(),
                       "label": labels.to_numpy()})
    df.to_csv(out / "split.csv", index=False)
    df.assign(prob=np.round(rng.uniform(0.05, 0.95, len(df)), 4), n_slices=2).to_csv(
        out / "predictions_patients.csv", index=False)
    (out / "summary.json").write_text("{}\n")
    return out


@pytest.fixture(scope="session")
def env(small_export, small_cohort, tmp_path_factory) -> Env:
    from npcai.imaging.roi_cache import build_roi

    root = tmp_path_factory.mktemp("reliability")
    cohort = root / "cohort"
    shutil.copytree(small_cohort, cohort)
    build_roi(cohort, "seg", "bbox:5mm", size=32, min_component=(1, 1))
    run = write_fake_run(root / "runs" / "r18", cohort, backbone="resnet18", seed=1)
    run_b = write_fake_run(root / "runs" / "b0", cohort, backbone="efficientnet_b0", seed=2)
    segrun = root / "segrun"
    segrun.mkdir()
    (segrun / "config.yaml").write_text(yaml.safe_dump({"format": "npcai-segrun/1", "options": {}}))
    return Env(export=small_export, cohort=cohort, run=run, run_b=run_b, segrun=segrun)
