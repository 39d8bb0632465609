"""Tiny trained runs (32 px, resnet18, 1 epoch) and a second phantom cohort, built once per module."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def runs_cohort(train_cohort) -> Path:
    """The shared training cohort (ROI cache ``pre``); read-only here."""
    return train_cohort


def train_tiny(cohort: Path, out: Path, **options):
    from npcai.models.train import TrainConfig, train

    base = dict(cohort=str(cohort), roi="pre", endpoint="pfs-median", backbone="resnet18", pretrained=False,
                lr=1e-3, batch_size=16, epochs=1, seed=0, augment=False)
    cfg = TrainConfig(**{**base, **options})
    return train(cfg, out).run_dir


@pytest.fixture(scope="module")
def image_run(runs_cohort, tmp_path_factory) -> Path:
    return train_tiny(runs_cohort, tmp_path_factory.mktemp("runs") / "image")


@pytest.fixture(scope="module")
def patient_run(runs_cohort, image_run, tmp_path_factory) -> Path:
    return train_tiny(runs_cohort, tmp_path_factory.mktemp("runs") / "patient", unit="patient",
                      pooling="attention", bag_size=3, batch_size=4, split_from=str(image_run))


@pytest.fixture(scope="module")
def second_cohort(tmp_path_factory) -> Path:
    """Another centre: a 10-patient phantom with another seed, ingested (no ROI cache yet)."""
    from npcai.cohort.ingest import ingest
    from npcai.cohort.phantom import generate_phantom

    root = tmp_path_factory.mktemp("second")
    generate_phantom(root / "export", patients=10, size=64, slices=4, seed=7, centres=1, sequences=("T1c",))
    ingest(root / "export" / "dicom", clinical=root / "export" / "clinical.csv", out=root / "cohort",
           contours=root / "export" / "contours")
    return root / "cohort"


@pytest.fixture(scope="module")
def cv_run(runs_cohort, tmp_path_factory) -> Path:
    """A 2-fold, 1-epoch cross-validated run (``npcai train --folds 2``) on the training cohort."""
    from npcai.models.folds import train_folds
    from npcai.models.train import TrainConfig

    cfg = TrainConfig(cohort=str(runs_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                      pretrained=False, lr=1e-3, batch_size=16, epochs=1, seed=0, augment=False, folds=2,
                      fold_seed=1, val_fraction=0.25)
    return train_folds(cfg, tmp_path_factory.mktemp("runs") / "cv2").run_dir
