"""How many CPU threads torch may use, chosen from the cores this process can actually run on.

torch's default intra-op thread count is the machine's core count, whatever share of it the
process is allowed (``taskset``, a SLURM allocation, a container's CPU quota). Asking for more
threads than free cores makes every matrix product wait on a busy core (a 96 s run took 632 s
with 2 threads while another process held one of 2 cores), and the thread count changes the
order of floating-point reductions, so results differ between thread counts. npcai's
determinism guarantee is therefore: **same seed, same thread count, same hardware -> same
numbers**; the thread count used is recorded in each run.

:func:`available_cores` is the number of cores free to this process: its CPU affinity
(``os.sched_getaffinity``), capped by a cgroup CPU quota (``/sys/fs/cgroup/cpu.max``) when one
is set, and never more than the machine's cores. :func:`configure_threads` sets torch's
intra-op threads to a requested number (default: :func:`available_cores`) and returns it.

Examples:
    >>> n = configure_threads(1)
    >>> n
    1
    >>> import torch; torch.get_num_threads()
    1
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from npcai.errors import NpcaiError

__all__ = ["available_cores", "configure_threads"]

log = logging.getLogger(__name__)

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _machine_cores() -> int:
    return max(1, os.cpu_count() or 1)


def _affinity_cores() -> int | None:
    getter = getattr(os, "sched_getaffinity", None)      # Linux only
    if getter is None:
        return None
    try:
        return len(getter(0)) or None
    except OSError:
        return None


def _cgroup_quota_cores(path: Path = _CGROUP_CPU_MAX) -> int | None:
    """Cores granted by a cgroup v2 CPU quota (``"<quota> <period>"``, ``"max"`` = none)."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def available_cores() -> int:
    """The cores free to this process: its CPU affinity, capped by a cgroup CPU quota, at
    most the machine's core count, at least 1."""
    n = _machine_cores()
    for limit in (_affinity_cores(), _cgroup_quota_cores()):
        if limit is not None:
            n = min(n, limit)
    return max(1, n)


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count and return the number used.

    Args:
        n: threads to use; ``None`` uses :func:`available_cores`. More than the free cores is
            allowed (it is the user's call) but logged as a warning: it is slower, not faster.

    Returns:
        The thread count now in effect (``torch.get_num_threads()``).

    Raises:
        NpcaiError: ``n`` is not a positive integer.
    """
    free = available_cores()
    if n is None:
        n = free
    elif isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise NpcaiError(f"threads {n!r}: must be a whole number of at least 1 "
                         f"({free} core(s) are free to this process)")
    elif n > free:
        log.warning("threads %d: more than the %d core(s) free to this process; threads will wait on busy "
                    "cores and training will be slower, not faster; use %d or fewer", n, free, free)
    import torch

    torch.set_num_threads(n)
    return int(torch.get_num_threads())
