"""Fixtures of the security tests: a cohort with one small ROI cache, built once per session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXPLOIT = '@pd.io.common.os.system("touch pwned") == 0'


@pytest.fixture(scope="session")
def roi_cohort(small_cohort, tmp_path_factory) -> Path:
    """A copy of the shared small cohort with a 32-px ROI cache ``box`` (read-only: copy to modify)."""
    from npcai.imaging.roi_cache import build_roi

    root = tmp_path_factory.mktemp("sec_cohort")
    out = root / "cohort"
    shutil.copytree(small_cohort, out)
    shutil.copy(small_cohort.parent / f"{small_cohort.name}.pseudonyms.csv", root / "cohort.pseudonyms.csv")
    build_roi(out, "box", "bbox:2px", size=32, min_component=(1, 1))
    return out


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size: to show that nothing was deleted or changed."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
