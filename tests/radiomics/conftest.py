"""A writable copy of the shared training cohort for the radiomics tests (features are cached
inside the cohort, so the session fixtures are never written to)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def rad_cohort(train_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rad_cohort") / "cohort"
    shutil.copytree(train_cohort, out)
    return out
