"""Gated-linear-unit experts (SwiGLU/GeGLU) with stacked weights."""

from __future__ import annotations

import torch
from torch import Tensor

from domain_moe.core.experts.mlp import MLPExperts

__all__ = ["GLUExperts"]


class GLUExperts(MLPExperts):
    """``E`` gated MLPs ``y = (act(x Wg^T + bg) * (x Wu^T + bu)) W2^T + b2`` (Shazeer, 2020).

    The gate and up projections are stored *blocked* in one weight ``w13: [E, 2H, D]``: rows ``0..H-1``
    are the gate ``Wg``, rows ``H..2H-1`` the up projection ``Wu``. One GEMM computes both, then the
    hidden activation splits the result in half. ``activation="silu"`` gives SwiGLU, ``"gelu"`` GeGLU.

    Args:
        num_experts: ``E``.
        d_model: input width ``D``.
        d_hidden: hidden width ``H`` of each expert (after gating).
        d_out: output width (default ``d_model``).
        activation: activation of the gate (``"silu"`` by default).
        bias: learn biases.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[T, D]``
        - w13 (``w1``): ``[E, 2H, D]``, w2: ``[E, D_out, H]``
        - output: ``[A, D_out]`` in plan order

    Example:
        >>> experts = GLUExperts(num_experts=4, d_model=16, d_hidden=32)
        >>> experts.w13.shape
        torch.Size([4, 64, 16])
    """

    _hidden_mult = 2

    def __init__(
        self,
        num_experts: int,
        d_model: int,
        d_hidden: int,
        d_out: int | None = None,
        activation: str = "silu",
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_experts, d_model, d_hidden, d_out, activation, bias, device, dtype)

    @property
    def w13(self) -> Tensor:
        """The blocked gate/up weight (an alias of ``w1``)."""
        return self.w1

    def hidden(self, pre: Tensor) -> Tensor:
        """``act(gate) * up`` from the blocked pre-activation."""
        gate, up = pre.split(self.d_hidden, dim=-1)
        return self.act(gate) * up
