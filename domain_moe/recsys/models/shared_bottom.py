"""Shared-bottom multi-task model (hard parameter sharing)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from domain_moe.recsys.models.base import MultiTaskModel
from domain_moe.recsys.models.towers import mlp

__all__ = ["SharedBottom"]


class SharedBottom(MultiTaskModel):
    """``y_k = h_k(f(x))``: one shared ReLU MLP under per-task towers (Caruana, 1997; MMoE's baseline).

    Args:
        task_names: the tasks, in output column order.
        cardinalities: vocabulary size of each categorical field.
        num_dense: number of dense features.
        embed_dim: embedding width of each categorical field.
        d_hidden: widths of the shared bottom's layers (an int for one layer; MMoE's synthetic
            experiment uses one layer of 113 units to match the MoE models' parameter count).
        tower_hidden: hidden widths of every task tower.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - dense: ``[B, num_dense]``, sparse: ``[B, F]``
        - output: ``[B, T]`` logits

    Example:
        >>> model = SharedBottom(["a", "b"], num_dense=10, d_hidden=16)
        >>> model(torch.randn(4, 10)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        task_names: Sequence[str],
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        d_hidden: int | Sequence[int] = 113,
        tower_hidden: Sequence[int] = (8,),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(task_names, cardinalities, num_dense, embed_dim, tower_hidden, device, dtype)
        widths = [d_hidden] if isinstance(d_hidden, int) else list(d_hidden)
        if not widths:
            raise ValueError("d_hidden must name at least one layer width")
        self.bottom = mlp(self.embedding.d_out, widths, device=device, dtype=dtype)
        self._build_towers(widths[-1])

    def represent(self, x: Tensor) -> Tensor:
        """The shared representation ``[B, H]``."""
        return self.bottom(x)
