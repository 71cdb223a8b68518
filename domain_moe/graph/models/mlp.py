"""The feature-only node classifier: the MLP baseline and Mowst's weak expert."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn

__all__ = ["NodeMLP"]


class NodeMLP(nn.Module):
    """Per-node MLP on the node's own features (Linear → BatchNorm → ReLU → Dropout blocks, then a Linear).

    It accepts (and ignores) ``edge_index`` so that it can stand wherever a GNN is called as
    ``model(x, edge_index)``: the baseline task trains MLPs and GNNs alike.

    Args:
        num_features: input width ``F`` (linked from the DataModule by the CLI).
        num_classes: number of classes ``Q``.
        hidden_channels: hidden width ``H``.
        num_layers: number of Linear layers (``>= 1``; 1 is logistic regression).
        dropout: dropout probability after each hidden block.
        norm: BatchNorm after each hidden Linear, as in the Mowst backbones.
        device: factory kwarg for the parameters.
        dtype: factory kwarg for the parameters.

    Shapes:
        x: ``[N, F]`` → logits ``[N, Q]``.

    Example:
        >>> import torch
        >>> NodeMLP(num_features=5, num_classes=3, hidden_channels=8)(torch.randn(4, 5)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.5,
        norm: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_features", num_features),
            ("num_classes", num_classes),
            ("hidden_channels", hidden_channels),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"NodeMLP: {name} must be an int >= 1, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"NodeMLP: dropout must be in [0, 1), got {dropout!r}")
        dd = {"device": device, "dtype": dtype}
        widths = [num_features] + [hidden_channels] * (num_layers - 1) + [num_classes]
        self.lins = nn.ModuleList(nn.Linear(a, b, **dd) for a, b in pairwise(widths))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(hidden_channels, **dd) if norm else nn.Identity() for _ in range(num_layers - 1)
        )
        self.dropout = nn.Dropout(dropout)
        self.num_features = num_features
        self.num_classes = num_classes
        self.num_layers = num_layers

    def reset_parameters(self) -> None:
        """Re-initialise every layer."""
        for module in [*self.lins, *self.norms]:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor | None = None, edge_weight: Tensor | None = None) -> Tensor:
        """Logits from the node features alone (``edge_index``/``edge_weight`` are accepted and ignored)."""
        if x.dim() != 2 or x.size(-1) != self.num_features:
            raise ValueError(f"NodeMLP: x must be [N, {self.num_features}], got shape {tuple(x.shape)}")
        for lin, norm in zip(self.lins[:-1], self.norms):
            x = self.dropout(torch.relu(norm(lin(x))))
        return self.lins[-1](x)
