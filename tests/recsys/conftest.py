"""Recsys tests run with one thread: these models are tiny, and threads only add contention on shared CPUs."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
