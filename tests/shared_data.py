"""Where the shared data (seed papers, real scans) lives, and what a test does without it.

The data sit in ``../shared`` beside the clone (``/work/shared`` on the project machines).
Locally a test that needs them skips with the reason; under CI (``CI=true``) it fails
instead, so a CI machine without the data cannot pass by skipping the real-data tests.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():
    SHARED = Path("/work/shared")


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_shared(path: Path, what: str) -> Path:
    """Return ``path``; when it is missing, fail under CI and skip otherwise."""
    if not path.exists():
        msg = f"{what} not found at {path} (expected in ../shared beside the clone)"
        if under_ci():
            pytest.fail(f"{msg}; CI must provide it", pytrace=False)
        pytest.skip(msg)
    return path
