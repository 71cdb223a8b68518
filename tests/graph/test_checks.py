import pytest
import torch

from domain_moe.graph.checks import check_graph


def test_valid_graph_passes():
    check_graph(torch.randn(4, 3), torch.tensor([[0, 1, 2], [1, 2, 3]]), torch.zeros(4, dtype=torch.long))


def test_edge_index_out_of_range():
    with pytest.raises(ValueError, match="refers to node 4 but x has 4 nodes"):
        check_graph(torch.randn(4, 3), torch.tensor([[0, 4], [1, 2]]))
    with pytest.raises(ValueError, match="negative"):
        check_graph(torch.randn(4, 3), torch.tensor([[0, -1], [1, 2]]))


def test_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        check_graph(torch.randn(4, 3), torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match="integer"):
        check_graph(torch.randn(4, 3), torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"\[num_nodes, num_features\]"):
        check_graph(torch.randn(4), None)


def test_label_feature_mismatch():
    with pytest.raises(ValueError, match="y has 5 rows, x has 4"):
        check_graph(torch.randn(4, 3), None, torch.zeros(5, dtype=torch.long))
