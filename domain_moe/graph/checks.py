"""Cheap input checks for node-level graph models: one clear error instead of an index error deep in a scatter."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_graph"]


def check_graph(x: Tensor, edge_index: Tensor | None = None, y: Tensor | None = None, *, where: str = "graph") -> None:
    """Validate node features, edges and labels of one graph.

    Args:
        x: node features.
        edge_index: COO edges (``None`` skips the edge checks).
        y: node labels (``None`` skips the label checks).
        where: name of the caller, used in the error messages.

    Shapes:
        x: ``[N, F]``; edge_index: ``[2, N_e]`` integer; y: ``[N]``.

    Raises:
        ValueError: wrong ranks, ``edge_index`` entries outside ``[0, N)``, or ``y`` not of length ``N``.
        TypeError: a floating-point ``edge_index``.

    Example:
        >>> import torch
        >>> check_graph(torch.randn(3, 2), torch.tensor([[0, 1], [1, 2]]))
        >>> check_graph(torch.randn(3, 2), torch.tensor([[0, 1], [1, 3]]))
        Traceback (most recent call last):
        ...
        ValueError: graph: edge_index refers to node 3 but x has 3 nodes (expected entries in [0, 3))
    """
    if x.dim() != 2:
        raise ValueError(f"{where}: x must be [num_nodes, num_features], got shape {tuple(x.shape)}")
    num_nodes = x.size(0)
    if edge_index is not None:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"{where}: edge_index must be [2, num_edges], got shape {tuple(edge_index.shape)}")
        if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
            raise TypeError(f"{where}: edge_index must be an integer tensor, got {edge_index.dtype}")
        if edge_index.numel():
            low, high = int(edge_index.min()), int(edge_index.max())
            if low < 0:
                raise ValueError(
                    f"{where}: edge_index has a negative entry {low} (expected entries in [0, {num_nodes}))"
                )
            if high >= num_nodes:
                raise ValueError(
                    f"{where}: edge_index refers to node {high} but x has {num_nodes} nodes "
                    f"(expected entries in [0, {num_nodes}))"
                )
    if y is not None and y.size(0) != num_nodes:
        raise ValueError(
            f"{where}: labels and features disagree on the number of nodes: y has {y.size(0)} rows, x has {num_nodes}"
        )
