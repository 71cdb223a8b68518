"""Plain message-passing GNNs built from PyG layers: the baselines and Mowst's strong expert."""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv

__all__ = ["GNN"]

ConvName = Literal["gcn", "sage", "gat", "gin"]


class GNN(nn.Module):
    """A stack of PyG convolutions (GCN, GraphSAGE, GAT or GIN) with BatchNorm, activation and dropout.

    Follows the Mowst backbones: conv → BatchNorm → ReLU (ELU for GAT) → dropout for every layer but the last.
    GAT hidden layers concatenate ``heads`` heads of ``hidden_channels // heads`` channels; the last GAT
    layer averages its heads. GIN's inner network is a 2-layer MLP.

    Args:
        num_features: input width ``F`` (linked from the DataModule by the CLI).
        num_classes: number of classes ``Q``.
        hidden_channels: hidden width ``H``.
        num_layers: number of message-passing layers (the receptive field in hops).
        conv: ``"gcn"``, ``"sage"`` (mean aggregation), ``"gat"`` or ``"gin"``.
        dropout: dropout probability between layers.
        norm: BatchNorm after each hidden layer.
        heads: attention heads of GAT (ignored otherwise); must divide ``hidden_channels``.

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

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Logits of every node."""
        if x.dim() != 2 or x.size(-1) != self.num_features:
            raise ValueError(f"GNN: x must be [N, {self.num_features}], got shape {tuple(x.shape)}")
        for i, conv in enumerate(self.convs):
            # Only GCN takes edge weights; the others would reject (or misread) the third argument.
            x = conv(x, edge_index, edge_weight) if self.conv == "gcn" else conv(x, edge_index)
            if i < self.num_layers - 1:
                x = self.dropout(self.act(self.norms[i](x)))
        return x
