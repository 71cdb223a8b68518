"""RL tests: skipped without gymnasium; one thread (tiny models on shared CPUs)."""

import pytest
import torch

pytest.importorskip("gymnasium")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
