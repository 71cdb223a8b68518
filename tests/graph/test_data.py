import re

import numpy as np
import pytest
import torch
from torch_geometric.utils import homophily

from domain_moe.graph.data import (
    ContextualSBMDataModule,
    NodeClassificationDataModule,
    contextual_sbm,
    load_npz_graph,
    parse_graph_spec,
)


def test_contextual_sbm_controls_homophily_and_is_seeded():
    a = contextual_sbm(num_nodes=400, num_classes=4, homophily=0.8, seed=3)
    b = contextual_sbm(num_nodes=400, num_classes=4, homophily=0.8, seed=3)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert abs(homophily(a.edge_index, a.y) - 0.8) < 0.06
    low = contextual_sbm(num_nodes=400, num_classes=4, homophily=0.1, seed=3)
    assert homophily(low.edge_index, low.y) < 0.2
    masks = a.train_mask.int() + a.val_mask.int() + a.test_mask.int()
    assert (masks == 1).all()  # each split partitions the nodes


def test_csbm_datamodule_split_and_loader():
    dm = ContextualSBMDataModule(num_nodes=80, num_classes=2, num_features=5, split=1)
    assert (dm.num_features, dm.num_classes, dm.metric) == (5, 2, "auroc")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.train_mask.shape == (80,) and batch.train_mask.dtype == torch.bool
    with pytest.raises(ValueError, match="split=5 but the graph has 3 splits"):
        _ = ContextualSBMDataModule(num_nodes=80, split=5).data


def _write_npz(path, num_nodes=6, labels=None):
    np.savez(
        path,
        node_features=np.random.default_rng(0).random((num_nodes, 3)).astype(np.float32),
        node_labels=np.array(labels if labels is not None else [0, 1, 0, 1, 0, 1]),
        edges=np.array([[0, 1], [1, 2], [3, 4]]),
        train_masks=np.ones((2, num_nodes), dtype=bool),
        val_masks=np.zeros((2, num_nodes), dtype=bool),
        test_masks=np.zeros((2, num_nodes), dtype=bool),
    )


def test_npz_loader_symmetrises_and_transposes(tmp_path):
    _write_npz(tmp_path / "g.npz")
    data = load_npz_graph(tmp_path / "g.npz")
    assert data.edge_index.size(1) == 6
    assert data.train_mask.shape == (6, 2)
    dm = NodeClassificationDataModule(f"npz:{tmp_path / 'g.npz'}", split=1)
    assert dm.num_classes == 2 and dm.data.train_mask.shape == (6,)


def test_npz_label_feature_mismatch(tmp_path):
    _write_npz(tmp_path / "bad.npz", labels=[0, 1, 0])
    with pytest.raises(ValueError, match="y has 3 rows, x has 6"):
        load_npz_graph(tmp_path / "bad.npz")


def test_missing_data_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "Cora"))):
        _ = NodeClassificationDataModule("cora", root=str(tmp_path)).num_features
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        load_npz_graph(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="unknown name"):
        NodeClassificationDataModule("pubmed")


@pytest.mark.parametrize(
    ("name", "split", "nodes", "features", "classes", "metric"),
    [
        ("cora", "public", 2708, 1433, 7, "accuracy"),
        ("texas", 2, 183, 1703, 5, "accuracy"),
        ("chameleon", 0, 2277, 2325, 5, "accuracy"),
    ],
)
def test_shared_graphs(data_root, tmp_path, name, split, nodes, features, classes, metric):
    root = data_root / "graph"
    if not root.is_dir():
        pytest.skip(f"shared graph data not found at {root}")
    dm = NodeClassificationDataModule(name, root=str(root), split=split)
    assert (dm.data.num_nodes, dm.num_features, dm.num_classes, dm.metric) == (nodes, features, classes, metric)
    assert not list(root.rglob("processed"))  # nothing written into shared/
    if split == "public":
        assert int(dm.data.train_mask.sum()) == 140


def test_normalize_features(tmp_path):
    _write_npz(tmp_path / "g.npz")
    dm = NodeClassificationDataModule(f"npz:{tmp_path / 'g.npz'}", normalize_features=True)
    assert torch.allclose(dm.data.x.sum(-1), torch.ones(6))


def test_parse_graph_spec():
    want = ("csbm", {"num_nodes": 10, "homophily": 0.2, "x": "a"})
    assert parse_graph_spec("CSBM:num_nodes=10,homophily=0.2,x=a") == want
    assert parse_graph_spec("npz:/a/b:c.npz") == ("npz:/a/b:c.npz", {})
    with pytest.raises(ValueError, match="key=value"):
        parse_graph_spec("csbm:oops")
    with pytest.raises(ValueError, match="non-empty"):
        parse_graph_spec("")
