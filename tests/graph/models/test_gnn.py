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


def test_sage_applies_the_neighbour_weight_before_aggregating_exactly(karate):
    torch.manual_seed(0)
    model = GNN(34, 4, hidden_channels=8, conv="sage", num_layers=1).eval()
    edge_index = karate.edge_index[:, 5:]  # some nodes lose neighbours: the isolated case is covered
    edge_index = edge_index[:, edge_index[1] != 0]
    reference = model.convs[0](karate.x, edge_index)  # PyG's SAGEConv: aggregate, then weight
    assert torch.allclose(model(karate.x, edge_index), reference, atol=1e-5)


@pytest.mark.parametrize("conv", ["gcn", "sage", "gin"])
def test_sparse_message_passing_matches_edge_index(conv):
    torch.manual_seed(0)
    n = 50
    x = torch.randn(n, 6)
    edge_index = torch.randint(n, (2, 200))
    weight = torch.rand(200) if conv == "gcn" else None
    dense = GNN(6, 3, hidden_channels=8, conv=conv).eval()
    sparse = GNN(6, 3, hidden_channels=8, conv=conv, sparse=True).eval()
    sparse.load_state_dict(dense.state_dict())
    out_d, out_s = dense(x, edge_index, weight), sparse(x, edge_index, weight)
    assert torch.allclose(out_d, out_s, atol=1e-5)
    out_d.square().sum().backward()
    out_s.square().sum().backward()
    for a, b in zip(dense.parameters(), sparse.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-4)
    # The adjacency is reused for the same tensor and rebuilt when the tensor changes in place.
    adj = sparse.adjacency(edge_index, n, weight)
    assert sparse.adjacency(edge_index, n, weight) is adj
    edge_index[1, 0] = (edge_index[1, 0] + 1) % n
    assert sparse.adjacency(edge_index, n, weight) is not adj
    assert torch.allclose(dense(x, edge_index, weight), sparse(x, edge_index, weight), atol=1e-5)


def test_sparse_gat_is_refused():
    with pytest.raises(ValueError, match="not 'gat'"):
        GNN(4, 2, hidden_channels=8, conv="gat", sparse=True)


def test_sparse_model_deep_copies_without_its_cache(karate):
    import copy

    model = GNN(34, 4, hidden_channels=8, sparse=True).eval()
    out = model(karate.x, karate.edge_index)
    clone = copy.deepcopy(model)
    assert clone._adjacency is None and model._adjacency is not None
    assert torch.allclose(clone(karate.x, karate.edge_index), out)
