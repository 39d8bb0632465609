"""Fixtures for the web tool: a tiny trained run (built once) and one phantom patient's upload."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from .helpers import contour_bytes, identifiers, patient_zip


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="session")
def serve_run(train_cohort, tmp_path_factory) -> Path:
    """resnet18 from scratch, 1 epoch on the shared training cohort's 32-px ``pre`` ROI."""
    from npcai.models.train import TrainConfig, train

    out = tmp_path_factory.mktemp("serve_run") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(cohort=str(train_cohort), roi="pre", endpoint="pfs-median", backbone="resnet18",
                          pretrained=False, epochs=1, batch_size=16), out)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="session")
def served(serve_run):
    from npcai.serve.model import open_model

    return open_model(serve_run)


@pytest.fixture(scope="session")
def phantom_patient(small_export, small_cohort, serve_run) -> dict:
    """A training-cohort patient of the run: its upload, identifiers and the run's own probability."""
    pseudonyms = pd.read_csv(small_cohort.parent / f"{small_cohort.name}.pseudonyms.csv", dtype=str)
    preds = pd.read_csv(serve_run / "predictions_patients.csv", dtype={"patient_id": str})
    pid = preds["patient_id"].iloc[0]
    hid = pseudonyms.set_index("patient_id").loc[pid, "hospital_id"]
    return {"hospital_id": hid, "patient_id": pid, "prob": float(preds["prob"].iloc[0]),
            "zip": patient_zip(small_export, hid), "contour": contour_bytes(small_export, hid),
            "identifiers": identifiers(small_export, hid), "export": small_export}


@pytest.fixture
def make_client(served, tmp_path):
    """A TestClient factory: ``make_client(**create_app_kwargs) -> (client, request_tmp_root)``."""
    from fastapi.testclient import TestClient

    from npcai.serve.app import create_app

    def make(**kwargs):
        root = tmp_path / "requests"
        root.mkdir(exist_ok=True)
        return TestClient(create_app(served, tmp_root=root, **kwargs)), root

    return make

