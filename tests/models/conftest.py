"""Training tests run with one torch thread (fixtures ``one_torch_thread``, ``train_cohort``: tests/conftest.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield
