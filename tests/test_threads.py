"""``npcai.threads``: torch threads follow the cores free to the process; asking for more warns."""
from __future__ import annotations

import logging

import pytest
import torch

from npcai import threads
from npcai.errors import NpcaiError


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cores(monkeypatch):
    """Pretend the machine has 8 cores, the process may run on ``affinity`` of them and the
    cgroup grants ``quota`` (None: no quota)."""
    state = {"affinity": {0, 1, 2, 3, 4, 5, 6, 7}, "quota": None}
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: state["affinity"], raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota_cores", lambda: state["quota"])
    return state


def test_default_is_the_cores_free_to_the_process(cores):
    cores["affinity"] = {2, 5}                      # e.g. taskset -c 2,5 or a SLURM allocation
    assert threads.available_cores() == 2
    assert threads.configure_threads() == 2
    assert torch.get_num_threads() == 2
    cores["affinity"] = set(range(8))
    cores["quota"] = 3                              # a container limited to 3 CPUs
    assert threads.available_cores() == 3
    assert threads.configure_threads(None) == 3


def test_never_more_than_the_machine(cores, monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    cores["affinity"] = set(range(16))
    assert threads.available_cores() == 4


def test_explicit_count_is_used_and_too_many_warns(cores, caplog):
    cores["affinity"] = {0, 1}
    with caplog.at_level(logging.WARNING, logger="npcai.threads"):
        assert threads.configure_threads(1) == 1
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="npcai.threads"):
        assert threads.configure_threads(3) == 3
    assert torch.get_num_threads() == 3
    (rec,) = caplog.records
    assert "threads 3: more than the 2 core(s) free" in rec.getMessage() and "use 2 or fewer" in rec.getMessage()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_counts_are_refused(cores, bad):
    before = torch.get_num_threads()
    with pytest.raises(NpcaiError, match=r"must be a whole number of at least 1"):
        threads.configure_threads(bad)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("text, expected", [("max 100000\n", None), ("200000 100000\n", 2),
                                            ("150000 100000", 2), ("50000 100000", 1), ("garbage", None)])
def test_cgroup_quota_parsing(tmp_path, text, expected):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert threads._cgroup_quota_cores(path) == expected
    assert threads._cgroup_quota_cores(tmp_path / "absent") is None
