"""Progress reporting that keeps the library free of printing.

Library code wraps long loops in :func:`track`; by default nothing is shown. The CLI turns
on a rich progress bar with :func:`show_progress`, so the same functions run silently in
tests and in notebooks, and with bars on the command line.

Examples:
    >>> from npcai.progress import track
    >>> total = sum(x for x in track(range(3), "Adding"))
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["track", "show_progress", "progress_enabled"]

T = TypeVar("T")
_progress: contextvars.ContextVar = contextvars.ContextVar("npcai_progress", default=None)


def progress_enabled() -> bool:
    """True when the caller (the CLI) asked for progress bars, e.g. to turn on Lightning's bar."""
    return _progress.get() is not None


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield from ``iterable``, advancing a progress bar when progress is shown."""
    progress = _progress.get()
    if progress is None:
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    task = progress.add_task(description, total=total)
    try:
        for item in iterable:
            yield item
            progress.advance(task)
    finally:
        progress.update(task, visible=True)


@contextlib.contextmanager
def show_progress() -> Iterator[None]:
    """Show rich progress bars (on stderr) for every :func:`track` inside the block."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False)
    token = _progress.set(progress)
    try:
        with progress:
            yield
    finally:
        _progress.reset(token)
