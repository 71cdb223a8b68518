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

    supported_backends = ("torch_loop", "torch_grouped", "bmm", "dense_all", "triton")

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
        """Why a backend cannot run on ``x``.

        ``torch_grouped`` needs ``F.grouped_mm`` support for this dtype, device and widths; ``triton`` a
        float32/float16 (or, on CUDA, bfloat16) input.
        """
        reason = grouped_mm_supported(x, self.w1) or grouped_mm_supported(x, self.w2)
        reasons: dict[str, str | None] = {"torch_grouped": reason}
        # Only a dtype veto: without one the key stays absent, so the dispatcher still checks that the
        # kernels can run on this device (and never imports triton for it here).
        if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            reasons["triton"] = f"the triton kernels take float32, float16 or bfloat16, got {x.dtype}"
        elif x.dtype == torch.bfloat16 and x.device.type != "cuda":
            reasons["triton"] = "bfloat16 maths is wrong in the Triton interpreter; use float32/float16 on CPU"
        return reasons

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
        if backend == "triton":
            # Imported here so that ``import domain_moe`` never imports triton.
            from domain_moe.core.dispatch.triton.autograd import expert_mlp

            glu = self._hidden_mult == 2
            return expert_mlp(x, plan, self.w1, self.b1, self.w2, self.b2, activation=self.activation, glu=glu)
        if backend not in ("torch_loop", "torch_grouped"):
            raise ValueError(f"{type(self).__name__} cannot run on backend={backend!r}")
        rows = gather_rows(x, plan)
        h = self.hidden(grouped_linear(rows, self.w1, self.b1, plan, backend=backend))
        return grouped_linear(h, self.w2, self.b2, plan, backend=backend)

    def _forward_bmm(self, x: Tensor, plan: DispatchPlan, capacity: int) -> Tensor:
        capacity = _tight_capacity(plan, capacity)
        positions = expert_buffer_positions(plan, capacity)
        buf = to_expert_buffer(gather_rows(x, plan), positions, self.num_experts, capacity)
        pre = _batched_linear(buf, self.w1, self.b1)
        out = _batched_linear(self.hidden(pre), self.w2, self.b2)
        return from_expert_buffer(out, positions)

    def _forward_dense_all(self, x: Tensor, plan: DispatchPlan) -> Tensor:
        num_tokens = x.shape[0]
        # The first layer of all experts is one [T, D] x [D, E*H] GEMM: no [E, T, D] copy of x, and its
        # input gradient is a GEMM too (instead of a sum over E broadcast copies).
        w1 = self.w1.reshape(-1, self.d_model)
        b1 = None if self.b1 is None else self.b1.reshape(-1)
        pre = F.linear(x, w1, b1).view(num_tokens, self.num_experts, -1).transpose(0, 1)
        out = _batched_linear(self.hidden(pre), self.w2, self.b2)
        return rows_from_all_experts(out, plan)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"{super().extra_repr()}, d_hidden={self.d_hidden}, activation={self.activation!r}, "
            f"bias={self.b1 is not None}"
        )


def _batched_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x[e] @ weight[e]^T + bias[e]`` for every expert, the bias fused into the product.

    Shapes:
        - x: ``[E, C, D_in]``
        - weight: ``[E, D_out, D_in]``
        - bias: ``[E, D_out]``
        - output: ``[E, C, D_out]``
    """
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _tight_capacity(plan: DispatchPlan, capacity: int) -> int:
    """The ``bmm`` buffer's rows per expert: ``capacity``, lowered to the largest group where that is free.

    Reading the counts costs nothing on CPU (eager). Rows past the largest group would be padding only, so
    the result is the same; without this a dropless router (``capacity=None`` -> ``T``) pays for ``E * T``
    rows.
    """
    counts = plan.counts
    if counts.device.type != "cpu" or torch.compiler.is_compiling() or counts.numel() == 0:
        return capacity
    return max(1, min(capacity, int(counts.max())))
