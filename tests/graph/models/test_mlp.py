import pytest
import torch

from domain_moe.graph.models.mlp import NodeMLP


def test_shapes_and_ignores_edges():
    model = NodeMLP(5, 3, hidden_channels=8, num_layers=3).eval()
    x = torch.randn(6, 5)
    out = model(x, torch.tensor([[0], [1]]))
    assert out.shape == (6, 3)
    assert torch.equal(out, model(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_layers"):
        NodeMLP(5, 3, num_layers=0)
    with pytest.raises(ValueError, match=r"x must be \[N, 5\]"):
        NodeMLP(5, 3)(torch.randn(2, 4))
