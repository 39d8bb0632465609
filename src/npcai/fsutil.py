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

__all__ = ["OUTPUT_MARKER", "atomic_output_dir", "atomic_write_text", "check_output_path", "check_replaceable",
           "mark_output", "remove_stale_partials", "replace_output_dir", "file_sha256", "paths_sha256",
           "save_figure", "read_user_yaml"]

#: file npcai writes into every output folder it creates; only such folders are ever replaced
OUTPUT_MARKER = ".npcai-output"


def check_output_path(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> Path:
    """Refuse an output folder that is, contains or lies inside one of the command's inputs.

    Call it first thing in a command's library function, before anything is read or written.

    Args:
        out: the output folder.
        inputs: the command's inputs (export, clinical file, cohort, run, ROI cache ...);
            ``None`` entries are skipped.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        NpcaiError: one line naming the output and the input it would touch.

    Examples:
        >>> check_output_path("runs/r1", ["cohort"])
        PosixPath('runs/r1')
        >>> check_output_path("cohort", ["cohort"])
        Traceback (most recent call last):
        npcai.errors.NpcaiError: cohort: the output folder is the input cohort; choose an output folder outside every input
    """
    out = Path(out)
    target = out.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source:
            how = "is"
        elif target in source.parents:
            how = "contains"
        elif source in target.parents:
            how = "lies inside"
        else:
            continue
        raise NpcaiError(f"{out}: the output folder {how} the input {given}; "
                         "choose an output folder outside every input")
    return out


def _listing(folder: Path, limit: int = 5) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_replaceable(out: str | os.PathLike, overwrite: bool) -> bool:
    """Check that ``out`` may become an output folder; True when an existing one will be replaced.

    ``out`` may be absent or an empty folder. A non-empty folder is replaced only with
    ``overwrite`` *and* when it carries :data:`OUTPUT_MARKER` (npcai wrote it); otherwise the
    error says what is there, so a user's data is never deleted.

    Raises:
        NpcaiError: ``out`` is a file, or a non-empty folder that may not be replaced.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NpcaiError(f"{out}: is a file, not a folder; choose a folder path for the output")
    if not out.exists() or not any(out.iterdir()):
        return False
    if not (out / OUTPUT_MARKER).is_file():
        raise NpcaiError(f"{out}: folder exists, holds {_listing(out)} and is not an output npcai wrote "
                         f"(no {OUTPUT_MARKER} marker), so it is never replaced; choose another path")
    if not overwrite:
        raise NpcaiError(f"{out}: folder exists and is not empty; pass --overwrite or choose another path")
    return True


def mark_output(folder: str | os.PathLike) -> None:
    """Write :data:`OUTPUT_MARKER` into an output folder npcai is creating."""
    Path(folder, OUTPUT_MARKER).write_text("written by npcai; `--overwrite` may replace this folder\n")


def replace_output_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Move a finished temporary folder to ``out``, replacing an earlier npcai output there.

    The marker check is repeated here, just before anything is removed.
    """
    tmp, out = Path(tmp), Path(out)
    mark_output(tmp)
    if check_replaceable(out, overwrite=True) or out.is_dir():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; rename it to ``out`` when the block succeeds.

    The folder gets :data:`OUTPUT_MARKER`; ``overwrite`` replaces only a folder carrying it
    (see :func:`check_replaceable`).

    Args:
        out: the final folder.
        overwrite: replace a non-empty ``out`` that npcai wrote; otherwise a non-empty ``out`` is an error.
    """
    out = Path(out)
    check_replaceable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    with _naming_the_output(out):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    lock = _hold_partial_lock(tmp)
    try:
        try:
            mark_output(tmp)
            with _naming_the_output(out):
                yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        replace_output_dir(tmp, out)
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
