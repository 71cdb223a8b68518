"""HoME's LoRA-style feature gate: each expert sees its own re-weighting of the input, ``x * 2 sigmoid(x B A)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["FeatureGate"]


class FeatureGate(nn.Module):
    """Per-expert feature gates ``x_e = x * 2 * sigmoid(x B_e A_e)`` (HoME, Wang et al., 2024, arXiv 2408.05430).

    ``B_e [D, r]`` and ``A_e [r, D]`` are a LoRA-style low-rank pair (``r << D``). The factor 2 and
    ``A_e = 0`` at initialisation make every gate exactly 1 at the start (the PEPNet "Gate NU"
    convention), so a model with feature gates starts as the same model without them; ``B_e`` gets
    gradient as soon as ``A_e`` moves away from 0, as in LoRA.

    Args:
        num_experts: ``E`` (one gate per expert).
        d_model: input width ``D``.
        rank: low rank ``r``.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[B, D]`` (shared input) or ``[E, B, D]`` (one input per expert)
        - output: ``[E, B, D]``

    Example:
        >>> gate = FeatureGate(num_experts=3, d_model=8, rank=2)
        >>> x = torch.randn(5, 8)
        >>> bool(torch.equal(gate(x), x.expand(3, 5, 8)))  # the gate starts at exactly 1
        True
    """

    def __init__(
        self,
        num_experts: int,
        d_model: int,
        rank: int = 4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("num_experts", num_experts), ("d_model", d_model), ("rank", rank)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_experts = num_experts
        self.d_model = d_model
        self.rank = rank
        self.down = nn.Parameter(torch.empty(num_experts, d_model, rank, device=device, dtype=dtype))
        self.up = nn.Parameter(torch.empty(num_experts, rank, d_model, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``B`` like a linear layer's weight, ``A = 0`` (gate exactly 1)."""
        nn.init.uniform_(self.down, -1.0 / math.sqrt(self.d_model), 1.0 / math.sqrt(self.d_model))
        nn.init.zeros_(self.up)

    def gates(self, x: Tensor) -> Tensor:
        """The gate values ``2 sigmoid(x B_e A_e)`` in ``(0, 2)``, shape ``[E, B, D]``."""
        if x.shape[-1] != self.d_model or x.dim() not in (2, 3) or (x.dim() == 3 and x.shape[0] != self.num_experts):
            raise ValueError(
                f"x must have shape [B, D={self.d_model}] or [E={self.num_experts}, B, D], got {tuple(x.shape)}"
            )
        src = x.unsqueeze(0) if x.dim() == 2 else x
        return 2.0 * torch.sigmoid(torch.matmul(torch.matmul(src, self.down), self.up))

    def forward(self, x: Tensor) -> Tensor:
        """Gated inputs, one per expert."""
        return x * self.gates(x)

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"num_experts={self.num_experts}, d_model={self.d_model}, rank={self.rank}"
