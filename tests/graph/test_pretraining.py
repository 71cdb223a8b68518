"""Pre-training data: graph specs, ego-nets as valid induced subgraphs, views, the multi-graph DataModule."""

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import k_hop_subgraph, to_undirected

from domain_moe.graph.data import contextual_sbm
from domain_moe.graph.pretraining import EgoNetPretrainDataModule, augment, ego_nets, load_graph

SMALL = ["csbm:num_nodes=80,num_features=12,seed=1", "csbm:num_nodes=60,num_features=5,num_classes=3,seed=2"]


def test_load_graph_generated_and_errors():
    g = load_graph("csbm:num_nodes=50,num_features=6,seed=3")
    torch.testing.assert_close(g.x, contextual_sbm(num_nodes=50, num_features=6, seed=3).x)
    with pytest.raises(ValueError, match="unknown graph 'pubmed'"):
        load_graph("pubmed")
    with pytest.raises(ValueError, match="only accepted for 'csbm'"):
        load_graph("cora:split=1")
    with pytest.raises(FileNotFoundError, match="missing-root"):
        load_graph("texas", root="missing-root")


def _edge_set(edge_index):
    return {tuple(e) for e in edge_index.t().tolist()}


def test_ego_nets_are_valid_induced_subgraphs():
    g = contextual_sbm(num_nodes=120, num_features=4, avg_degree=4.0, seed=0)
    egos = ego_nets(g, 30, hops=2, max_nodes=20, generator=torch.Generator().manual_seed(0))
    assert len(egos) == 30
    all_edges = _edge_set(g.edge_index)
    centres = set()
    for ego in egos:
        nodes = ego.nodes
        centre = int(nodes[ego.center])
        centres.add(centre)
        assert ego.num_nodes == nodes.numel() <= 20
        assert torch.equal(ego.x, g.x[nodes]) and int(ego.y) == int(g.y[centre])
        within, _, _, _ = k_hop_subgraph(centre, 2, g.edge_index, num_nodes=g.num_nodes)
        assert set(nodes.tolist()) <= set(within.tolist())
        if within.numel() <= 20:
            assert set(nodes.tolist()) == set(within.tolist())
        # Exactly the original edges between kept nodes, relabelled.
        local = {(int(nodes[a]), int(nodes[b])) for a, b in ego.edge_index.t().tolist()}
        keep = set(nodes.tolist())
        assert local == {(a, b) for a, b in all_edges if a in keep and b in keep}
    assert len(centres) == 30  # drawn without replacement


def test_ego_nets_are_seeded():
    g = contextual_sbm(num_nodes=100, seed=0)
    a = ego_nets(g, 10, max_nodes=8, generator=torch.Generator().manual_seed(4))
    b = ego_nets(g, 10, max_nodes=8, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(x.nodes, y.nodes) and torch.equal(x.edge_index, y.edge_index) for x, y in zip(a, b))
    c = ego_nets(g, 10, max_nodes=8, generator=torch.Generator().manual_seed(5))
    assert any(not torch.equal(x.nodes, y.nodes) for x, y in zip(a, c))


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"num_egos": 0}, "num_egos"), ({"hops": 0}, "hops"), ({"max_nodes": 0}, "max_nodes")]
)
def test_ego_nets_bad_arguments(kwargs, match):
    g = contextual_sbm(num_nodes=20, seed=0)
    with pytest.raises(ValueError, match=match):
        ego_nets(g, **{"num_egos": 2, **kwargs})


def test_augment_keeps_a_valid_undirected_subgraph():
    gen = torch.Generator().manual_seed(0)
    ei = to_undirected(torch.randint(0, 30, (2, 80), generator=gen), num_nodes=30)
    ego = Data(x=torch.ones(30, 10), edge_index=ei, center=0)
    torch.manual_seed(0)
    view = augment(ego, edge_drop=0.5, feature_mask=0.5)
    assert _edge_set(view.edge_index) <= _edge_set(ei)
    assert 0 < view.edge_index.size(1) < ei.size(1)
    assert _edge_set(view.edge_index) == _edge_set(view.edge_index.flip(0))
    masked = view.x.eq(0).all(0)
    assert view.x[:, ~masked].eq(1).all() and 0 < int(masked.sum()) < 10  # whole columns masked
    same = augment(ego, 0.0, 0.0)
    assert torch.equal(same.edge_index, ei) and torch.equal(same.x, ego.x)
    with pytest.raises(ValueError, match="edge_drop"):
        augment(ego, 1.0, 0.0)


def test_datamodule_batches_pair_views_of_aligned_graphs():
    dm = EgoNetPretrainDataModule(SMALL, num_features=16, egos_per_graph=20, batch_size=8, val_fraction=0.25)
    assert dm.num_features == 16 and dm.num_classes == 1 and dm.metric == "accuracy"
    dm.setup()
    assert len(dm.train_egos) == 30 and len(dm.val_egos) == 10
    first, second = next(iter(dm.train_dataloader()))
    assert first.x.shape[1] == second.x.shape[1] == 16
    assert first.num_graphs == second.num_graphs == 8
    assert torch.equal(first.ptr, second.ptr)  # same ego-nets, different views
    v1 = next(iter(dm.val_dataloader()))
    v2 = next(iter(dm.val_dataloader()))
    assert torch.equal(v1[0].edge_index, v2[0].edge_index) and torch.equal(v1[1].x, v2[1].x)
    with pytest.raises(AttributeError, match="train_egos"):
        _ = dm.data


def test_datamodule_ego_draws_depend_only_on_seed():
    def nodes(seed):
        dm = EgoNetPretrainDataModule(SMALL, num_features=8, egos_per_graph=5, seed=seed)
        dm.setup()
        return [e.nodes for e in dm.train_egos + dm.val_egos]

    assert all(torch.equal(a, b) for a, b in zip(nodes(1), nodes(1)))
    assert any(not torch.equal(a, b) for a, b in zip(nodes(1), nodes(2)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"graphs": []}, "graphs"),
        ({"graphs": "cora"}, "graphs"),
        ({"num_features": 0}, "num_features"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"edge_drop": -0.1}, "edge_drop"),
    ],
)
def test_datamodule_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EgoNetPretrainDataModule(**{"graphs": SMALL, **kwargs})


def test_real_graphs_align_to_one_width(data_root):
    root = data_root / "graph"
    if not (root / "texas").is_dir() or not (root / "cornell").is_dir():
        pytest.skip(f"WebKB graphs not found under {root}")
    dm = EgoNetPretrainDataModule(["texas", "cornell"], root=str(root), num_features=32, egos_per_graph=10)
    dm.setup()
    assert {e.x.shape[1] for e in dm.train_egos} == {32}
