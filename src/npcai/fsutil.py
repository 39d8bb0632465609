"""Small file-system helpers: atomic outputs and content hashes.

Every command writes its output folder under a temporary name and renames it only when
complete, so a crash never leaves a half-written folder that looks finished.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from npcai.errors import NpcaiError

__all__ = ["atomic_output_dir", "atomic_write_text", "file_sha256", "paths_sha256", "save_figure", "read_user_yaml"]


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; rename it to ``out`` when the block succeeds.

    Args:
        out: the final folder.
        overwrite: replace a non-empty ``out``; otherwise a non-empty ``out`` is an error.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise NpcaiError(f"{out}: folder exists and is not empty; pass --overwrite or choose another path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def paths_sha256(paths: Iterable[str | os.PathLike]) -> str:
    """One SHA-256 over several files' hashes (order-sensitive), e.g. the inputs of a cache."""
    h = hashlib.sha256()
    for p in paths:
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Save a matplotlib figure atomically (temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, **savefig_kwargs)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_user_yaml(path: str | os.PathLike, *, what: str, example: str):
    """Parse a YAML file the user gave (a sequence map, ROI map, study); one-line errors.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. "sequence map").
        example: a line of valid content shown when the file is missing.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise NpcaiError(f"{path}: {what} not found; give a YAML file like {example}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NpcaiError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from exc
