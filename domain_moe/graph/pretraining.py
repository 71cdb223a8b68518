"""Contrastive pre-training data over several graphs: SVD-aligned ego-nets and their augmented views.

GMoPE (Wang et al., arXiv 2511.03251) pre-trains its prompt-expert mixture on many graphs at once. Following the
reconstruction of ``specs/graph.md`` §4.3, each source graph is SVD-aligned to a common width
(:func:`~domain_moe.graph.alignment.svd_align`), cut into random ``hops``-hop ego-nets (``k_hop_subgraph``; capped
at ``max_nodes`` nodes so dense graphs stay cheap, which avoids METIS partitioning), and every training batch
pairs two GraphCL-style views of the same ego-nets (``dropout_edge`` + ``mask_feature``). The task maximises the
agreement of the two views' pooled embeddings with InfoNCE (core :func:`~domain_moe.core.losses.info_nce`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Batch, Data
from torch_geometric.utils import dropout_edge, k_hop_subgraph, mask_feature, subgraph

from domain_moe.graph.alignment import svd_align
from domain_moe.graph.data import (
    DATASETS,
    GraphDataModule,
    NodeClassificationDataModule,
    contextual_sbm,
    parse_graph_spec,
)

__all__ = ["EgoNetPretrainDataModule", "augment", "ego_nets", "load_graph"]


def load_graph(spec: str, root: str | Path | None = None, normalize_features: bool = True) -> Data:
    """One graph by name: a registered dataset, ``npz:<path>``, or ``csbm[:options]`` (generated, no files).

    Args:
        spec: ``cora``, ``citeseer``, ..., ``npz:<file>``, or ``csbm:num_nodes=300,seed=1`` (any
            :func:`~domain_moe.graph.data.contextual_sbm` argument).
        root: folder holding the dataset folders (default ``$DOMAIN_MOE_DATA/graph``).
        normalize_features: row-normalise real datasets' features (bag-of-words convention).

    Returns:
        ``Data(x, edge_index, y, ...)`` with the dataset's own masks.
    """
    name, options = parse_graph_spec(spec)
    if name == "csbm":
        return contextual_sbm(**options)
    if options:
        raise ValueError(f"load_graph: options are only accepted for 'csbm', got {spec!r}")
    if not name.startswith("npz:") and name not in DATASETS:
        raise ValueError(
            f"load_graph: unknown graph {spec!r}; expected one of {sorted(DATASETS)}, 'csbm' or 'npz:<path>'"
        )
    dm = NodeClassificationDataModule(
        spec, root=None if root is None else str(root), normalize_features=normalize_features
    )
    return dm.load()


def ego_nets(
    data: Data, num_egos: int, hops: int = 2, max_nodes: int = 64, generator: torch.Generator | None = None
) -> list[Data]:
    """Random ego-nets of ``data``: for each sampled centre, its ``hops``-hop induced subgraph.

    Centres are drawn without replacement (all nodes when ``num_egos >= N``). An ego-net larger than
    ``max_nodes`` keeps its centre and a random subset of the other nodes. Each result holds ``x``, the
    relabelled ``edge_index``, ``center`` (local index of the centre), ``nodes`` (global ids) and ``y`` when the
    graph has labels.

    Args:
        data: the graph (``x``, ``edge_index``).
        num_egos: ego-nets to draw.
        hops: radius.
        max_nodes: node cap per ego-net (``>= 1``).
        generator: RNG of the draws.

    Returns:
        The ego-nets.

    Example:
        >>> g = Data(x=torch.randn(4, 2), edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
        >>> [int(e.num_nodes) for e in ego_nets(g, 4, hops=1, generator=torch.Generator().manual_seed(0))]
        [2, 3, 1, 2]
    """
    if isinstance(num_egos, bool) or not isinstance(num_egos, int) or num_egos < 1:
        raise ValueError(f"ego_nets: num_egos must be an int >= 1, got {num_egos!r}")
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        raise ValueError(f"ego_nets: hops must be an int >= 1, got {hops!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"ego_nets: max_nodes must be an int >= 1, got {max_nodes!r}")
    num_nodes = int(data.num_nodes)
    centres = torch.randperm(num_nodes, generator=generator)[: min(num_egos, num_nodes)]
    out = []
    for c in centres.tolist():
        nodes, _, _, _ = k_hop_subgraph(c, hops, data.edge_index, num_nodes=num_nodes)
        if nodes.numel() > max_nodes:
            others = nodes[nodes != c]
            keep = others[torch.randperm(others.numel(), generator=generator)[: max_nodes - 1]]
            nodes = torch.cat([torch.tensor([c]), keep]).sort().values
        edge_index, _ = subgraph(nodes, data.edge_index, relabel_nodes=True, num_nodes=num_nodes)
        ego = Data(x=data.x[nodes], edge_index=edge_index, nodes=nodes)
        ego.center = int((nodes == c).nonzero()[0, 0])
        if getattr(data, "y", None) is not None:
            ego.y = data.y[c].view(1)
        out.append(ego)
    return out


def augment(ego: Data, edge_drop: float, feature_mask: float) -> Data:
    """A GraphCL-style view: drop undirected edges with probability ``edge_drop``, mask feature columns.

    Uses torch's global RNG (seed it, or wrap in ``torch.random.fork_rng``, for fixed views).

    Example:
        >>> g = Data(x=torch.ones(3, 4), edge_index=torch.tensor([[0, 1], [1, 0]]), center=0)
        >>> augment(g, 0.0, 0.0).edge_index.tolist()
        [[0, 1], [1, 0]]
    """
    for name, value in (("edge_drop", edge_drop), ("feature_mask", feature_mask)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"augment: {name} must be in [0, 1), got {value!r}")
    edge_index = ego.edge_index
    if edge_drop > 0 and edge_index.numel():
        edge_index, _ = dropout_edge(edge_index, p=edge_drop, force_undirected=True)
    x = ego.x
    if feature_mask > 0:
        x, _ = mask_feature(x, p=feature_mask, mode="col")
    return Data(x=x, edge_index=edge_index, center=ego.center, num_nodes=ego.num_nodes)


class _ViewPairs:
    """Collate: two augmented views of a list of ego-nets, as two ``Batch``es."""

    def __init__(self, edge_drop: float, feature_mask: float, seed: int | None = None) -> None:
        self.edge_drop = edge_drop
        self.feature_mask = feature_mask
        self.seed = seed

    def _views(self, egos: Sequence[Data]) -> tuple[Batch, Batch]:
        first = Batch.from_data_list([augment(e, self.edge_drop, self.feature_mask) for e in egos])
        second = Batch.from_data_list([augment(e, self.edge_drop, self.feature_mask) for e in egos])
        return first, second

    def __call__(self, egos: Sequence[Data]) -> tuple[Batch, Batch]:
        if self.seed is None:
            return self._views(egos)
        # Validation views are fixed: the same batch always gets the same augmentations.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + int(egos[0].nodes[0]))
            return self._views(egos)


class EgoNetPretrainDataModule(GraphDataModule):
    """Ego-net view pairs from several SVD-aligned graphs, for GMoPE's contrastive pre-training.

    ``setup()`` loads each graph of ``graphs`` (:func:`load_graph` names: registered datasets, ``npz:<path>``,
    ``csbm[:options]``), aligns its features to ``num_features`` channels with :func:`svd_align`, and draws
    ``egos_per_graph`` ego-nets (a ``val_fraction`` of them held out). Each training batch is a pair of
    ``Batch``es, two augmented views of the same ``batch_size`` ego-nets; validation views are fixed. The ego-nets
    depend only on ``seed``; the training views follow torch's global RNG (``seed_everything``).

    Args:
        graphs: source graphs (at least one).
        root: folder holding the dataset folders (default ``$DOMAIN_MOE_DATA/graph``).
        num_features: aligned width ``F`` shared by every graph.
        egos_per_graph: ego-nets drawn per graph.
        hops: ego-net radius.
        max_nodes: node cap per ego-net.
        edge_drop: edge-dropping probability of a view.
        feature_mask: feature-column masking probability of a view.
        batch_size: ego-nets per batch.
        val_fraction: share of the ego-nets held out for validation.
        seed: seed of the ego-net draws and of the validation views.
        normalize_features: row-normalise real datasets' features before alignment.

    Example:
        >>> dm = EgoNetPretrainDataModule(["csbm:num_nodes=60,seed=1", "csbm:num_nodes=50,num_features=7"],
        ...                               num_features=16, egos_per_graph=10, batch_size=4)
        >>> dm.setup()
        >>> first, second = next(iter(dm.train_dataloader()))
        >>> first.x.shape[1], first.num_graphs, second.num_graphs
        (16, 4, 4)
    """

    def __init__(
        self,
        graphs: Sequence[str] = ("csbm:seed=1", "csbm:seed=2,num_features=24,homophily=0.3"),
        root: str | None = None,
        num_features: int = 64,
        egos_per_graph: int = 200,
        hops: int = 2,
        max_nodes: int = 64,
        edge_drop: float = 0.2,
        feature_mask: float = 0.2,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        seed: int = 0,
        normalize_features: bool = True,
    ) -> None:
        super().__init__(split=0, metric="accuracy")
        if isinstance(graphs, str) or not isinstance(graphs, Sequence) or len(graphs) == 0:
            raise ValueError(f"EgoNetPretrainDataModule: graphs must be a non-empty list of names, got {graphs!r}")
        for name, value in (
            ("num_features", num_features),
            ("egos_per_graph", egos_per_graph),
            ("batch_size", batch_size),
            ("max_nodes", max_nodes),
            ("hops", hops),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EgoNetPretrainDataModule: {name} must be an int >= 1, got {value!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"EgoNetPretrainDataModule: val_fraction must be in [0, 1), got {val_fraction!r}")
        for name, value in (("edge_drop", edge_drop), ("feature_mask", feature_mask)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"EgoNetPretrainDataModule: {name} must be in [0, 1), got {value!r}")
        self.graphs = list(graphs)
        self.root = root
        self._num_features = num_features
        self.egos_per_graph = egos_per_graph
        self.hops = hops
        self.max_nodes = max_nodes
        self.edge_drop = edge_drop
        self.feature_mask = feature_mask
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.normalize_features = normalize_features
        self.train_egos: list[Data] = []
        self.val_egos: list[Data] = []

    @property
    def num_features(self) -> int:
        """Aligned width ``F``."""
        return self._num_features

    @property
    def num_classes(self) -> int:
        """Placeholder head width for the model (pre-training has no labels): 1."""
        return 1

    @property
    def metric(self) -> str:
        """``"accuracy"``: the validation metric is the views' matching accuracy."""
        return "accuracy"

    @property
    def data(self) -> Data:  # type: ignore[override]
        """Not a single graph: raise a clear error (use :attr:`train_egos`)."""
        raise AttributeError("EgoNetPretrainDataModule holds ego-nets of several graphs, not one graph: use train_egos")

    def setup(self, stage: str | None = None) -> None:
        """Load, align and cut every graph into ego-nets (once)."""
        if self.train_egos:
            return
        gen = torch.Generator().manual_seed(self.seed)
        for spec in self.graphs:
            graph = load_graph(spec, self.root, self.normalize_features)
            graph = Data(x=svd_align(graph.x, self._num_features), edge_index=graph.edge_index, y=graph.y)
            egos = ego_nets(graph, self.egos_per_graph, self.hops, self.max_nodes, generator=gen)
            n_val = math.floor(self.val_fraction * len(egos))
            if self.val_fraction > 0 and len(egos) > 1:
                n_val = max(n_val, 1)
            self.val_egos.extend(egos[:n_val])
            self.train_egos.extend(egos[n_val:])

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of view pairs."""
        if not self.train_egos:
            self.setup()
        return DataLoader(
            self.train_egos,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            shuffle=True,
            collate_fn=_ViewPairs(self.edge_drop, self.feature_mask),
        )

    def val_dataloader(self) -> DataLoader:
        """Fixed batches of fixed view pairs (empty with ``val_fraction=0``)."""
        if not self.train_egos:
            self.setup()
        return DataLoader(
            self.val_egos,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=_ViewPairs(self.edge_drop, self.feature_mask, seed=self.seed),
        )

    def test_dataloader(self) -> DataLoader:
        """The validation pairs."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """The validation pairs."""
        return self.val_dataloader()
