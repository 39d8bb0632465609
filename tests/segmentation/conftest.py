"""Segmentation tests run torch on one thread: on a busy two-core machine two OpenMP threads
spin against each other and are several times slower than one."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():  # noqa: PT004
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
