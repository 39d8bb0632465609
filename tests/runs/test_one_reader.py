"""Acceptance of issue 12: no run-folder file name is read outside the run module.

A string literal equal to a run-folder file name (``"predictions_patients.csv"``,
``"split.csv"``, ``"config.yaml"``, ``"variant.json"``, or ending in ``/name``) is how code
opens one; help texts and messages that mention a file in a sentence are not reads.
"""
from __future__ import annotations

import ast
from pathlib import Path

import npcai

NAMES = ("predictions_patients.csv", "predictions_slices.csv", "split.csv", "config.yaml", "variant.json")
SRC = Path(npcai.__file__).parent
ALLOWED = ("runs/", "imaging/roi_cache.py", "segmentation/")   # segmentation runs keep their own module


def _opens_file(value: str) -> bool:
    return any(value == n or value.endswith("/" + n) or value.startswith(f"{n[:-4]}{{") for n in NAMES) \
        and " " not in value


def offenders() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _opens_file(node.value):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    return found


def test_detector_finds_a_raw_read():
    assert _opens_file("predictions_patients.csv") and _opens_file("roi/x/variant.json")
    assert not _opens_file("Reuse this run's split.csv (same test patients)")


def test_no_run_folder_file_is_read_outside_the_run_module():
    assert offenders() == []
