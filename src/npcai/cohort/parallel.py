"""Ordered parallel map for ingest: the same results, in the same order, with 1 or N worker processes.

Ingest spends its time in work that holds Python's GIL (pydicom header parsing) or in
single-threaded C (gzip of NIfTI files), so threads do not help and processes do. Workers are
*spawned* (not forked): the calling process may hold torch's or ITK's thread pools, which a
fork would copy in an undefined state. Each worker limits ITK to one thread so that N workers
use N cores. Results come back in input order (``Executor.map``), so what ingest writes does
not depend on the number of workers. Within :func:`shared_workers` (ingest runs in one) every
map reuses the pool the first one started: ingest pays the start of its workers (about a
second) once.

Examples:
    >>> ordered_map(abs, [-2, 1, -3], workers=1)
    [2, 1, 3]
"""
from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from npcai.errors import NpcaiError

__all__ = ["check_workers", "ordered_map", "iter_ordered_map", "shared_workers", "ITEMS_PER_WORKER"]

#: ``workers=None`` starts one worker per this many items (at most one per free core): starting
#: a worker costs about a second, which only pays off on exports of some size.
ITEMS_PER_WORKER = 100

T = TypeVar("T")
R = TypeVar("R")


def check_workers(workers: int | None) -> int | None:
    """``workers`` as a positive int (or None: automatic), or a one-line :class:`NpcaiError`."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise NpcaiError(f"workers must be a whole number of at least 1, got {workers!r}")
    return workers


def _init_worker() -> None:
    try:
        import SimpleITK as sitk
    except ImportError:      # pragma: no cover - SimpleITK is a dependency
        return
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _worker_count(workers: int | None, n_items: int) -> int:
    if workers is None:
        from npcai.threads import available_cores

        workers = min(available_cores(), n_items // ITEMS_PER_WORKER)
    return max(1, min(workers, n_items))


class _Pool:
    """The pool of a :func:`shared_workers` block, started by the first map that needs one."""

    executor: ProcessPoolExecutor | None = None


_SHARED: ContextVar[_Pool | None] = ContextVar("npcai_shared_workers", default=None)   # per thread


@contextmanager
def shared_workers() -> Iterator[None]:
    """Within this block, :func:`iter_ordered_map` calls (of this thread) share one pool of
    worker processes.

    The first call that needs more than one worker starts the pool with its worker count;
    later calls reuse it (with that many workers) instead of spawning their own, which costs
    about a second each. The pool is shut down when the block ends (pending work cancelled
    when it ends by an exception). Results are the same as without the block.
    """
    pool = _Pool()
    token = _SHARED.set(pool)
    try:
        yield
    finally:
        _SHARED.reset(token)
        if pool.executor is not None:
            pool.executor.shutdown(wait=True, cancel_futures=True)


def with_shared_workers(fn: Callable[..., R]) -> Callable[..., R]:
    """Decorator: run ``fn`` inside :func:`shared_workers`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with shared_workers():
            return fn(*args, **kwargs)

    return wrapper


def _start_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)


def iter_ordered_map(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = 1,
                     chunksize: int = 1) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in order; ``workers > 1`` runs them in spawned processes.

    ``workers=None`` chooses: one worker per :data:`ITEMS_PER_WORKER` items, at most one per
    free core (:func:`npcai.threads.available_cores`).

    ``fn`` and the items must be picklable when ``workers > 1`` (module-level functions,
    dataclasses, paths). An exception raised by ``fn`` is raised here, as with ``map``.
    """
    workers = _worker_count(check_workers(workers), len(items))
    if workers == 1:
        yield from map(fn, items)
        return
    shared = _SHARED.get()
    if shared is not None:
        if shared.executor is None:
            shared.executor = _start_pool(workers)
        yield from shared.executor.map(fn, items, chunksize=chunksize)
        return
    with _start_pool(workers) as pool:
        yield from pool.map(fn, items, chunksize=chunksize)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = 1,
                chunksize: int = 1) -> list[R]:
    """``list(iter_ordered_map(...))``."""
    return list(iter_ordered_map(fn, list(items), workers=workers, chunksize=chunksize))
