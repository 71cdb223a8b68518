"""Graph tests: skipped without torch-geometric; one thread (tiny graphs on shared CPUs); small fixture graphs."""

import pytest
import torch

pytest.importorskip("torch_geometric")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def karate():
    """Zachary's karate club from PyG (34 nodes, 4 classes, identity features; shipped, no download)."""
    from torch_geometric.datasets import KarateClub

    return KarateClub()[0]
