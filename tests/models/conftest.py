"""Fixtures for the training tests: small cohorts with ROI caches built once per session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The CI machine has two shared cores: one intra-op thread per test keeps runs predictable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def train_cohort(small_cohort, tmp_path_factory) -> Path:
    """A copy of the shared small cohort with two 32-px ROI caches: ``pre`` and ``post`` (bbox)."""
    from npcai.imaging.roi_cache import build_roi

    out = tmp_path_factory.mktemp("train_cohort") / "cohort"
    shutil.copytree(small_cohort, out)
    build_roi(out, "pre", "bbox:5mm", size=32, min_component=(1, 1))
    build_roi(out, "post", "bbox:5mm", size=32, timepoint="post", slices="all", min_component=(1, 1))
    return out
