"""Plain message-passing GNNs built from PyG layers: the baselines and Mowst's strong expert."""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

__all__ = ["GNN"]

ConvName = Literal["gcn", "sage", "gat", "gin"]


class GNN(nn.Module):
    """A stack of PyG convolutions (GCN, GraphSAGE, GAT or GIN) with BatchNorm, activation and dropout.

    Follows the Mowst backbones: conv → BatchNorm → ReLU (ELU for GAT) → dropout for every layer but the last.
    GAT hidden layers concatenate ``heads`` heads of ``hidden_channels // heads`` channels; the last GAT
    layer averages its heads. GIN's inner network is a 2-layer MLP.

    GraphSAGE layers apply their neighbour weight *before* the mean aggregation (``mean_j(x_j) W = mean_j(x_j
    W)``, exact): aggregating ``H`` channels instead of ``F`` makes wide-feature graphs (squirrel, ``F = 2089``)
    an order of magnitude cheaper. With ``sparse=True`` message passing runs as a sparse-matrix product on a
    CSR adjacency built from ``edge_index`` (kept while the same, unmodified ``edge_index`` tensor comes back):
    several times faster on large graphs on a CPU (tolokers: 1M edges), same result up to float rounding.

    Args:
        num_features: input width ``F`` (linked from the DataModule by the CLI).
        num_classes: number of classes ``Q``.
        hidden_channels: hidden width ``H``.
        num_layers: number of message-passing layers (the receptive field in hops).
        conv: ``"gcn"``, ``"sage"`` (mean aggregation), ``"gat"`` or ``"gin"``.
        dropout: dropout probability between layers.
        norm: BatchNorm after each hidden layer.
        heads: attention heads of GAT (ignored otherwise); must divide ``hidden_channels``.
        sparse: aggregate through a CSR sparse adjacency (GCN, GraphSAGE, GIN; not GAT).

    Shapes:
        x: ``[N, F]``, edge_index: ``[2, N_e]``, edge_weight: ``[N_e]`` (GCN only) → logits ``[N, Q]``.

    Example:
        >>> import torch
        >>> gnn = GNN(num_features=5, num_classes=3, hidden_channels=8, conv="sage")
        >>> gnn(torch.randn(4, 5), torch.tensor([[0, 1, 2], [1, 2, 3]])).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        hidden_channels: int = 64,
        num_layers: int = 2,
        conv: ConvName = "gcn",
        dropout: float = 0.5,
        norm: bool = True,
        heads: int = 1,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_features", num_features),
            ("num_classes", num_classes),
            ("hidden_channels", hidden_channels),
            ("num_layers", num_layers),
            ("heads", heads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GNN: {name} must be an int >= 1, got {value!r}")
        if conv not in ("gcn", "sage", "gat", "gin"):
            raise ValueError(f"GNN: conv must be one of 'gcn', 'sage', 'gat', 'gin', got {conv!r}")
        if conv == "gat" and hidden_channels % heads:
            raise ValueError(f"GNN: heads={heads} must divide hidden_channels={hidden_channels} for GAT")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"GNN: dropout must be in [0, 1), got {dropout!r}")
        if sparse and conv == "gat":
            raise ValueError("GNN: sparse=True supports conv 'gcn', 'sage' and 'gin', not 'gat'")
        widths = [num_features] + [hidden_channels] * (num_layers - 1) + [num_classes]
        self.convs = nn.ModuleList(
            self._make_conv(conv, a, b, last=i == num_layers - 1, heads=heads)
            for i, (a, b) in enumerate(pairwise(widths))
        )
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(hidden_channels) if norm else nn.Identity() for _ in range(num_layers - 1)
        )
        self.act: nn.Module = nn.ELU() if conv == "gat" else nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.conv = conv
        self.num_features = num_features
        self.num_classes = num_classes
        self.num_layers = num_layers
        self.sparse = sparse
        self._adjacency: tuple[Tensor, Tensor | None, int, int, Tensor] | None = None

    @staticmethod
    def _make_conv(conv: str, in_channels: int, out_channels: int, *, last: bool, heads: int) -> nn.Module:
        if conv == "gcn":
            return GCNConv(in_channels, out_channels)
        if conv == "sage":
            return SAGEConv(in_channels, out_channels, aggr="mean")
        if conv == "gat":
            if last:
                return GATConv(in_channels, out_channels, heads=heads, concat=False)
            return GATConv(in_channels, out_channels // heads, heads=heads, concat=True)
        inner = nn.Sequential(nn.Linear(in_channels, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels))
        return GINConv(inner, train_eps=True)

    def reset_parameters(self) -> None:
        """Re-initialise every layer."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def __getstate__(self) -> dict[str, object]:
        # The cached sparse matrix is derived data; sparse CSR tensors cannot be deep-copied or pickled.
        state = self.__dict__.copy()
        state["_adjacency"] = None
        return state

    def adjacency(self, edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> Tensor:
        """The transposed CSR propagation matrix of ``edge_index`` (reused while the same tensors come back).

        Entry ``[dst, src]`` holds what the layer's aggregation gives edge ``src → dst``: GCN's symmetric
        normalisation with self-loops (``gcn_norm``, as the layer itself would compute), ``1/deg(dst)`` for the
        GraphSAGE mean, 1 for the GIN sum; duplicate edges add up, exactly as separate messages would.

        Shapes:
            edge_index: ``[2, N_e]``, edge_weight: ``[N_e]`` (GCN only) → sparse CSR ``[N, N]``.
        """
        cached = self._adjacency
        if (
            cached is not None
            and cached[0] is edge_index
            and cached[1] is edge_weight
            and cached[2] == num_nodes
            and cached[3] == edge_index._version
        ):
            return cached[4]
        if self.conv == "gcn":
            edges, values = gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=True)
        else:
            edges = edge_index
            values = torch.ones(edge_index.size(1), device=edge_index.device)
            if self.conv == "sage":
                deg = torch.zeros(num_nodes, device=edge_index.device).index_add_(0, edge_index[1], values)
                values = values / deg[edge_index[1]]
        adj = to_torch_csr_tensor(edges.flip(0), values, size=(num_nodes, num_nodes))
        self._adjacency = (edge_index, edge_weight, num_nodes, edge_index._version, adj)
        return adj

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Logits of every node."""
        if x.dim() != 2 or x.size(-1) != self.num_features:
            raise ValueError(f"GNN: x must be [N, {self.num_features}], got shape {tuple(x.shape)}")
        adj = (
            self.adjacency(edge_index, x.size(0), edge_weight if self.conv == "gcn" else None) if self.sparse else None
        )
        for i, conv in enumerate(self.convs):
            if self.conv == "sage":
                h = F.linear(x, conv.lin_l.weight)
                agg = adj @ h if adj is not None else conv.propagate(edge_index, x=(h, h), size=None)
                x = agg + conv.lin_l.bias + conv.lin_r(x)
            elif adj is not None and self.conv == "gcn":
                x = adj @ conv.lin(x) + conv.bias  # normalisation and self-loops are in the matrix
            elif adj is not None:
                x = conv.nn((1 + conv.eps) * x + adj @ x)
            elif self.conv == "gcn":
                x = conv(x, edge_index, edge_weight)
            else:
                # Only GCN takes edge weights; the others would reject (or misread) the third argument.
                x = conv(x, edge_index)
            if i < self.num_layers - 1:
                x = self.dropout(self.act(self.norms[i](x)))
        return x
