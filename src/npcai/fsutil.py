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

from npcai.errors import NpcaiError, root_os_error

__all__ = ["atomic_output_dir", "remove_stale_partials", "atomic_write_text", "file_sha256", "paths_sha256", "save_figure", "read_user_yaml"]


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
    remove_stale_partials(out)
    with _naming_the_output(out):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    lock = _hold_partial_lock(tmp)
    try:
        try:
            with _naming_the_output(out):
                yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        _release_partial_lock(tmp, lock)


@contextlib.contextmanager
def _naming_the_output(out: Path) -> Iterator[None]:
    """Give a file-system error without a path (a full disk reported by ``write``), or with
    a temporary name (``.OUT.partial-*``, ``.NAME.*``), the path the user asked for."""
    try:
        yield
    except OSError as exc:
        root = root_os_error(exc)
        if root.errno is None or not (root.filename is None or f".{out.name}." in str(root.filename)):
            raise
        raise OSError(root.errno, root.strerror or str(root), str(out)) from exc


# ---------------------------------------------------------------- leftovers of killed processes
# While a process writes ``.OUT.partial-XXXX/`` it holds an exclusive lock on the file
# ``.OUT.partial-XXXX.lock`` beside it. A process killed with SIGKILL (or a power cut) cannot
# remove its folder, but the kernel releases its lock; the next command writing OUT finds the
# lock free and removes the leftover. A folder whose lock is held is another live process's.
def _hold_partial_lock(tmp: Path) -> int:
    import fcntl

    fd = os.open(f"{tmp}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _release_partial_lock(tmp: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{tmp}.lock")
    os.close(fd)


def remove_stale_partials(out: str | os.PathLike) -> list[Path]:
    """Remove the ``.OUT.partial-*`` folders that killed processes left beside ``out``.

    Only folders whose lock file nobody holds are removed, so a command writing the same
    output at the same time keeps its folder. Returns the folders removed.
    """
    import fcntl
    import glob
    import logging

    out = Path(out)
    removed = []
    for lock in sorted(out.parent.glob(f".{glob.escape(out.name)}.partial-*.lock")):
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:        # its owner just finished
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:      # a live process is writing it
                continue
            folder = lock.with_name(lock.name[: -len(".lock")])
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
                logging.getLogger(__name__).warning(
                    "%s: removed the unfinished output of an interrupted earlier run", folder)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming_the_output(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with _naming_the_output(path), os.fdopen(fd, "w", encoding="utf-8") as fh:
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
    try:
        with _naming_the_output(path):
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".png", dir=path.parent)
    except BaseException:
        plt.close(fig)
        raise
    os.close(fd)
    try:
        with _naming_the_output(path):
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
