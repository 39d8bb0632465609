"""Ordered parallel map for ingest: the same results, in the same order, with 1 or N worker processes.

Ingest spends its time in work that holds Python's GIL (pydicom header parsing) or in
single-threaded C (gzip of NIfTI files), so threads do not help and processes do. Workers are
*spawned* (not forked): the calling process may hold torch's or ITK's thread pools, which a
fork would copy in an undefined state. Each worker limits ITK to one thread so that N workers
use N cores. Results come back in input order (``Executor.map``), so what ingest writes does
not depend on the number of workers. Within :func:`shared_workers` (ingest runs in one) every
map reuses the pool the first one started: ingest pays the start of its workers (about a
second) once.

``workers=N`` means N processes computing: the calling process and N - 1 spawned ones. The
caller takes the next item whenever the pool already has enough queued, so it works while the
workers are still starting (on a 2-core machine, one spawned worker instead of two idle-
waiting ones kept the second core busy from the first second and cut a small ingest by a
fifth).

Examples:
    >>> ordered_map(abs, [-2, 1, -3], workers=1)
    [2, 1, 3]
"""
from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
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
    spawned: int = 0


_SHARED: ContextVar[_Pool | None] = ContextVar("npcai_shared_workers", default=None)   # per thread


@contextmanager
def shared_workers() -> Iterator[None]:
    """Within this block, :func:`iter_ordered_map` calls (of this thread) share one pool of
    worker processes.

    The first call that needs more than one worker starts the pool with its worker count
    (less one: the calling process computes too); later calls reuse it (with that many
    workers) instead of spawning their own, which costs about a second each. The pool is
    shut down when the block ends (pending work cancelled when it ends by an exception).
    Results are the same as without the block.
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


def _apply(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(item) for item in chunk]


class _Local:
    """A chunk the calling process computed: its results, or the exception to raise in turn."""

    def __init__(self, fn: Callable[[T], R], chunk: Sequence[T]) -> None:
        self.results: list[R] = []
        self.error: BaseException | None = None
        try:
            self.results = _apply(fn, chunk)
        except Exception as exc:  # noqa: BLE001 - raised when this chunk's turn comes, as map would
            self.error = exc

    def result(self) -> list[R]:
        if self.error is not None:
            raise self.error
        return self.results


def _shared_map(fn: Callable[[T], R], items: Sequence[T], pool: ProcessPoolExecutor, spawned: int,
                chunksize: int) -> Iterator[R]:
    """``map(fn, items)`` in order, computed by ``pool`` and by the calling process.

    Chunks are handed out in order; the pool keeps up to two chunks per worker queued, and the
    caller computes the next unassigned chunk whenever the one it must yield next is not back
    yet. An exception is raised at its item's place in the order, as with ``map``.
    """
    chunks = [items[i:i + chunksize] for i in range(0, len(items), chunksize)]
    depth = 2 * spawned
    assigned: dict[int, Future | _Local] = {}
    queued: set[Future] = set()
    nxt = 0
    try:
        for i in range(len(chunks)):
            while True:
                queued = {f for f in queued if not f.done()}
                while nxt < len(chunks) and len(queued) < depth:
                    assigned[nxt] = future = pool.submit(_apply, fn, chunks[nxt])
                    queued.add(future)
                    nxt += 1
                done = assigned.get(i)
                if done is not None and (isinstance(done, _Local) or done.done() or nxt == len(chunks)):
                    break
                assigned[nxt] = _Local(fn, chunks[nxt])          # the caller works meanwhile
                nxt += 1
            yield from assigned.pop(i).result()
    finally:
        for future in queued:
            future.cancel()


def iter_ordered_map(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = 1,
                     chunksize: int = 1) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in order; ``workers > 1`` computes them in the calling
    process and ``workers - 1`` spawned ones.

    ``workers=None`` chooses: one worker per :data:`ITEMS_PER_WORKER` items, at most one per
    free core (:func:`npcai.threads.available_cores`).

    ``fn`` and the items must be picklable when ``workers > 1`` (module-level functions,
    dataclasses, paths). An exception raised by ``fn`` is raised here, as with ``map``.
    """
    items = list(items)
    workers = _worker_count(check_workers(workers), len(items))
    if workers == 1:
        yield from map(fn, items)
        return
    shared = _SHARED.get()
    if shared is not None:
        if shared.executor is None:
            shared.executor = _start_pool(workers - 1)
            shared.spawned = workers - 1
        yield from _shared_map(fn, items, shared.executor, shared.spawned, chunksize)
        return
    with _start_pool(workers - 1) as pool:
        yield from _shared_map(fn, items, pool, workers - 1, chunksize)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = 1,
                chunksize: int = 1) -> list[R]:
    """``list(iter_ordered_map(...))``."""
    return list(iter_ordered_map(fn, list(items), workers=workers, chunksize=chunksize))
