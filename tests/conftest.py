"""Shared fixtures: a CLI runner and small phantom exports/cohorts built once per session.

The session fixtures are deliberately small (few patients, 64 px, 4 slices) so the suite
stays fast on two CPU cores. Tests that need more signal build their own export.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from npcai.cli import main


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:  # shown by pytest on failure
        return f"CliResult(code={self.code}, stdout={self.stdout[-2000:]!r}, stderr={self.stderr[-2000:]!r})"


@pytest.fixture
def cli():
    """Run ``npcai ARGS...`` in-process; returns a CliResult (code, stdout, stderr)."""

    def run(*args: str | Path) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="session")
def small_export(tmp_path_factory) -> Path:
    """A 16-patient phantom hospital export (64 px, 4 slices, T1c, pre and post)."""
    from npcai.cohort.phantom import generate_phantom

    out = tmp_path_factory.mktemp("export") / "export"
    generate_phantom(out, patients=16, size=64, slices=4, seed=1, centres=2,
                     sequences=("T1c",), post=True)
    return out


@pytest.fixture(scope="session")
def small_cohort(small_export, tmp_path_factory) -> Path:
    """The small export ingested into a cohort folder (read-only for tests: copy to modify)."""
    from npcai.cohort.ingest import ingest

    out = tmp_path_factory.mktemp("cohort") / "cohort"
    ingest(small_export / "dicom", clinical=small_export / "clinical.csv", out=out,
           contours=small_export / "contours")
    return out


# ---- training fixtures shared by tests/models and tests/runs ----------------------------
@pytest.fixture(scope="module")
def one_torch_thread():
    """The CI machine has two shared cores: one intra-op thread per test keeps runs predictable."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def train_cohort(small_cohort, tmp_path_factory) -> Path:
    """A copy of the shared small cohort with two 32-px ROI caches: ``pre`` and ``post`` (bbox)."""
    import shutil

    from npcai.imaging.roi_cache import build_roi

    out = tmp_path_factory.mktemp("train_cohort") / "cohort"
    shutil.copytree(small_cohort, out)
    build_roi(out, "pre", "bbox:5mm", size=32, min_component=(1, 1))
    build_roi(out, "post", "bbox:5mm", size=32, timepoint="post", slices="all", min_component=(1, 1))
    return out


@pytest.fixture(scope="session")
def survival_run(train_cohort, small_cohort, tmp_path_factory) -> Path:
    """A tiny deep-survival run (1 epoch, stacked resnet10t) on a copy of ``train_cohort`` that
    keeps its pseudonym map, so the phantom truth joins (shared by tests/survival and tests/explain)."""
    import shutil

    import torch

    from npcai.cohort.model import pseudonym_map_path
    from npcai.models.train import TrainConfig, train

    root = tmp_path_factory.mktemp("survival_run")
    cohort = root / "cohort"
    shutil.copytree(train_cohort, cohort)
    shutil.copy(pseudonym_map_path(small_cohort), pseudonym_map_path(cohort))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig(cohort=str(cohort), roi="pre", endpoint="dfs", task="survival", unit="patient",
                          backbone="resnet10t", stacked=True, pretrained=False, lr=1e-3, batch_size=8,
                          bag_size=2, epochs=1, seed=1)
        return train(cfg, root / "run").run_dir
    finally:
        torch.set_num_threads(before)
