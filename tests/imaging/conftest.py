"""Fixtures of the imaging tests: a tiny hand-made cohort (independent of the phantom)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .tiny import write_tiny_cohort


@pytest.fixture
def tiny_cohort(tmp_path) -> Path:
    """A fresh, writable 4-patient cohort (48 x 40 px, 5 slices, anisotropic 0.8 x 0.5 mm)."""
    return write_tiny_cohort(tmp_path / "cohort")
