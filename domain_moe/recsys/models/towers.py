"""Task towers: one small MLP per task mapping its representation to one logit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["Towers", "mlp"]


def mlp(
    d_in: int,
    hidden: Sequence[int],
    d_out: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """``Linear -> ReLU`` per hidden width, then an optional linear output layer.

    Example:
        >>> mlp(4, [8, 8], 1)
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=8, bias=True)
          (3): ReLU()
          (4): Linear(in_features=8, out_features=1, bias=True)
        )
    """
    layers: list[nn.Module] = []
    width = d_in
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ValueError(f"hidden widths must be positive ints, got {list(hidden)}")
        layers += [nn.Linear(width, h, device=device, dtype=dtype), nn.ReLU()]
        width = h
    if d_out is not None:
        layers.append(nn.Linear(width, d_out, device=device, dtype=dtype))
    return nn.Sequential(*layers)


class Towers(nn.Module):
    """``T`` task towers ``logit_t = MLP_t(h_t)`` (the ``h_k`` of Ma et al., KDD 2018).

    Args:
        num_tasks: ``T``.
        d_model: width of each task's representation.
        tower_hidden: hidden widths of every tower (empty: a linear tower).
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - h: ``[T, B, d_model]`` (one representation per task) or ``[B, d_model]`` (shared by all tasks)
        - output: ``[B, T]`` logits

    Example:
        >>> towers = Towers(num_tasks=3, d_model=8, tower_hidden=[4])
        >>> towers(torch.randn(3, 5, 8)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        num_tasks: int,
        d_model: int,
        tower_hidden: Sequence[int] = (8,),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        self.num_tasks = num_tasks
        self.d_model = d_model
        self.towers = nn.ModuleList(
            mlp(d_model, list(tower_hidden), 1, device=device, dtype=dtype) for _ in range(num_tasks)
        )

    def reset_parameters(self) -> None:
        """Reset every linear layer."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, h: Tensor) -> Tensor:
        """One logit per task and row; see the class docstring."""
        if h.dim() == 2:
            h = h.unsqueeze(0).expand(self.num_tasks, -1, -1)
        if h.dim() != 3 or h.shape[0] != self.num_tasks or h.shape[-1] != self.d_model:
            raise ValueError(f"h must have shape [T={self.num_tasks}, B, {self.d_model}] or [B, {self.d_model}], "
                             f"got {tuple(h.shape)}")
        return torch.cat([tower(h[t]) for t, tower in enumerate(self.towers)], 1)
