"""Homogeneous two-layer MLP experts with stacked ``[E, out, in]`` weights."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core.dispatch.reference import (
    expert_buffer_positions,
    from_expert_buffer,
    gather_rows,
    grouped_linear,
    grouped_mm_supported,
    rows_from_all_experts,
    to_expert_buffer,
)
from domain_moe.core.experts.activation import get_activation
from domain_moe.core.experts.base import Experts
from domain_moe.core.types import DispatchPlan

__all__ = ["MLPExperts"]


class MLPExperts(Experts):
    """``E`` MLPs ``y = act(x W1^T + b1) W2^T + b2`` computed together on grouped rows.

    Weights use the ``nn.Linear`` layout, stacked over experts (``w1: [E, H, D]``, ``w2: [E, D_out, H]``),
    and each expert is initialised exactly like a pair of ``nn.Linear`` layers, so a one-expert MoE
    starts where a dense FFN would. All backends compute the same function.

    Args:
        num_experts: ``E``.
        d_model: input width ``D``.
        d_hidden: hidden width ``H`` of each expert.
        d_out: output width (default ``d_model``).
        activation: ``"relu"``, ``"gelu"``, ``"gelu_tanh"``, ``"silu"`` or ``"identity"``.
        bias: learn ``b1`` and ``b2``.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[T, D]``
        - w1: ``[E, H, D]``, w2: ``[E, D_out, H]``
        - output: ``[A, D_out]`` in plan order

    Example:
        >>> experts = MLPExperts(num_experts=4, d_model=16, d_hidden=32)
        >>> experts.w1.shape, experts.w2.shape
        (torch.Size([4, 32, 16]), torch.Size([4, 16, 32]))
    """

    supported_backends = ("torch_loop", "torch_grouped", "bmm", "dense_all")

    #: Multiplier of ``d_hidden`` in the first weight (2 for gated units).
    _hidden_mult = 1

    def __init__(
        self,
        num_experts: int,
        d_model: int,
        d_hidden: int,
        d_out: int | None = None,
        activation: str = "gelu",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        d_out = d_model if d_out is None else d_out
        super().__init__(num_experts, d_model, d_out)
        if not isinstance(d_hidden, int) or d_hidden < 1:
            raise ValueError(f"d_hidden must be a positive int, got {d_hidden!r}")
        self.d_hidden = d_hidden
        self.activation = activation
        self.act = get_activation(activation)
        dd = {"device": device, "dtype": dtype}
        width = self._hidden_mult * d_hidden
        self.w1 = nn.Parameter(torch.empty(num_experts, width, d_model, **dd))
        self.w2 = nn.Parameter(torch.empty(num_experts, d_out, d_hidden, **dd))
        self.b1 = nn.Parameter(torch.empty(num_experts, width, **dd)) if bias else None
        self.b2 = nn.Parameter(torch.empty(num_experts, d_out, **dd)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Per expert, the ``nn.Linear`` initialisation (kaiming-uniform weights, uniform biases)."""
        for e in range(self.num_experts):
            for w, b in ((self.w1, self.b1), (self.w2, self.b2)):
                nn.init.kaiming_uniform_(w.data[e], a=math.sqrt(5))
                if b is not None:
                    bound = 1.0 / math.sqrt(w.shape[-1])
                    nn.init.uniform_(b.data[e], -bound, bound)

    def hidden(self, pre: Tensor) -> Tensor:
        """Hidden activation from the first layer's pre-activation."""
        return self.act(pre)

    def backend_reasons(self, x: Tensor) -> dict[str, str | None]:
        """``torch_grouped`` needs ``F.grouped_mm`` support for this dtype, device and widths."""
        reason = grouped_mm_supported(x, self.w1) or grouped_mm_supported(x, self.w2)
        return {"torch_grouped": reason}

    def forward_expert(self, expert: int, x: Tensor, **kwargs: Any) -> Tensor:
        """One expert on rows ``x``, written with ``F.linear`` (the oracle's definition)."""
        b1 = None if self.b1 is None else self.b1[expert]
        b2 = None if self.b2 is None else self.b2[expert]
        return F.linear(self.hidden(F.linear(x, self.w1[expert], b1)), self.w2[expert], b2)

    def forward(
        self,
        x: Tensor,
        plan: DispatchPlan,
        backend: str,
        capacity: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Expert outputs for the plan's rows; see :class:`Experts`."""
        if backend == "dense_all":
            return self._forward_dense_all(x, plan)
        if backend == "bmm":
            return self._forward_bmm(x, plan, plan.num_tokens if capacity is None else capacity)
        if backend not in ("torch_loop", "torch_grouped"):
            raise ValueError(f"{type(self).__name__} cannot run on backend={backend!r}")
        rows = gather_rows(x, plan)
        h = self.hidden(grouped_linear(rows, self.w1, self.b1, plan, backend=backend))
        return grouped_linear(h, self.w2, self.b2, plan, backend=backend)

    def _forward_bmm(self, x: Tensor, plan: DispatchPlan, capacity: int) -> Tensor:
        positions = expert_buffer_positions(plan, capacity)
        buf = to_expert_buffer(gather_rows(x, plan), positions, self.num_experts, capacity)
        pre = torch.bmm(buf, self.w1.transpose(1, 2))
        if self.b1 is not None:
            pre = pre + self.b1.unsqueeze(1)
        out = torch.bmm(self.hidden(pre), self.w2.transpose(1, 2))
        if self.b2 is not None:
            out = out + self.b2.unsqueeze(1)
        return from_expert_buffer(out, positions)

    def _forward_dense_all(self, x: Tensor, plan: DispatchPlan) -> Tensor:
        pre = torch.matmul(x.unsqueeze(0), self.w1.transpose(1, 2))
        if self.b1 is not None:
            pre = pre + self.b1.unsqueeze(1)
        out = torch.matmul(self.hidden(pre), self.w2.transpose(1, 2))
        if self.b2 is not None:
            out = out + self.b2.unsqueeze(1)
        return rows_from_all_experts(out, plan)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, d_hidden={self.d_hidden}, activation={self.activation!r}, "
            f"bias={self.b1 is not None}"
        )

