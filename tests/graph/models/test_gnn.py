import pytest
import torch

from domain_moe.graph.models.gnn import GNN


@pytest.mark.parametrize("conv", ["gcn", "sage", "gat", "gin"])
def test_each_conv_trains(conv, karate):
    model = GNN(34, 4, hidden_channels=8, conv=conv, heads=2 if conv == "gat" else 1)
    out = model(karate.x, karate.edge_index)
    assert out.shape == (34, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_uses_edges(karate):
    model = GNN(34, 4, hidden_channels=8).eval()
    empty = torch.empty(2, 0, dtype=torch.long)
    assert not torch.allclose(model(karate.x, karate.edge_index), model(karate.x, empty))


def test_bad_arguments():
    with pytest.raises(ValueError, match="conv must be one of"):
        GNN(4, 2, conv="gine")
    with pytest.raises(ValueError, match="heads=3 must divide"):
        GNN(4, 2, hidden_channels=8, conv="gat", heads=3)
