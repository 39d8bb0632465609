"""Segmentation tests run torch on one thread: on a busy two-core machine two OpenMP threads
spin against each other and are several times slower than one. Module scope, so the
module fixtures that train a model run on one thread too."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
