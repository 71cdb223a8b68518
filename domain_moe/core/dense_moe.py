"""An MoE layer that runs every expert on every token and also returns the per-expert outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from domain_moe.core.experts.base import Experts
from domain_moe.core.moe import MoE
from domain_moe.core.multi_gate import all_expert_outputs
from domain_moe.core.routing.base import Router

__all__ = ["DenseMoE", "DenseMoEOutput"]


@dataclass(frozen=True)
class DenseMoEOutput:
    """The mixture together with what it is mixed from.

    Attributes:
        y: the combined output ``sum_e gate[..., e] * expert_y[e]`` (plus shared experts).
        expert_y: every expert's own output on every token.
        gate: the combine weight of every expert for every token (0 where the router did not pick it).

    Shapes:
        - y: ``[..., D_out]``
        - expert_y: ``[E, ..., D_out]``
        - gate: ``[..., E]``
    """

    y: Tensor
    expert_y: Tensor
    gate: Tensor


class DenseMoE(MoE):
    """MoE that evaluates all experts densely and exposes their outputs and the gate weights.

    Objectives that score each expert on its own prediction need ``expert_y``: the expert-specific loss
    of El Mahtout & Ziel ("Fast Training of MoE for Time Series Forecasting via Expert Loss
    Integration", 2026), the competitive MoE loss of Jacobs et al. (1991), or diversity penalties.
    ``forward`` returns the mixture like :class:`MoE` (so the layer drops into any model and is found by
    ``collect_aux`` and the training callbacks); :meth:`forward_experts` returns a
    :class:`DenseMoEOutput`. With a dropless router the mixture equals :class:`MoE`'s output for the same
    router and experts; with a sparse router the unselected experts are still computed (their gate is
    0), which costs ``E / K`` times the FLOPs and is meant for small expert counts. Expert outputs come
    from :func:`~domain_moe.core.multi_gate.all_expert_outputs` (one batched call on the ``dense_all``
    path), so any container works, including heterogeneous :class:`~domain_moe.core.ModuleListExperts`.

    Args:
        router: a token router (Soft MoE routers, which mix tokens into slots, are rejected).
        experts: an :class:`Experts` container with the router's ``num_experts`` and ``d_model``.
        shared: optional always-on experts added to the mixture.

    Shapes:
        - x: ``[..., D]``
        - output: ``[..., D_out]``

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from domain_moe.core import DenseRouter, ModuleListExperts
        >>> mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> experts = ModuleListExperts([nn.Linear(6, 3), mlp], d_model=6, d_out=3)
        >>> layer = DenseMoE(DenseRouter(6, num_experts=2), experts)
        >>> out = layer.forward_experts(torch.randn(5, 6))
        >>> out.y.shape, out.expert_y.shape, out.gate.shape
        (torch.Size([5, 3]), torch.Size([2, 5, 3]), torch.Size([5, 2]))
    """

    def __init__(self, router: Router, experts: Experts, shared: nn.Module | None = None) -> None:
        super().__init__(router, experts, shared=shared, backend="dense_all")
        if router.needs_sequences:
            raise ValueError(
                f"DenseMoE needs a token router; {type(router).__name__} mixes tokens into slots (Soft MoE)"
            )

    def forward_experts(self, x: Tensor, **expert_kwargs: Any) -> DenseMoEOutput:
        """Route, run every expert on every token and combine.

        Args:
            x: tokens, any leading shape.
            **expert_kwargs: passed to every expert.
        """
        self._check_input(x)
        lead = x.shape[:-1]
        tokens = x.reshape(-1, self.d_model)
        decision = self.router(tokens)
        idx = decision.topk_idx
        weight = decision.topk_w.to(tokens.dtype)
        # Slots without an expert (-1) are sent to a spare column that is cut off afterwards.
        column = torch.where(idx < 0, torch.full_like(idx, self.num_experts), idx)
        gate = weight.new_zeros(tokens.shape[0], self.num_experts + 1).scatter_add(1, column, weight)
        gate = gate[:, : self.num_experts]
        expert_y = all_expert_outputs(self.experts, tokens, **expert_kwargs)
        y = torch.einsum("te,etd->td", gate, expert_y)
        if self.shared is not None:
            y = y + self.shared(tokens)
        self.last_aux = self._aux(decision)
        return DenseMoEOutput(
            y=y.reshape(*lead, self.d_out),
            expert_y=expert_y.reshape(self.num_experts, *lead, self.d_out),
            gate=gate.reshape(*lead, self.num_experts),
        )

    def forward(self, x: Tensor, **expert_kwargs: Any) -> Tensor:
        """The mixture only; see :meth:`forward_experts`."""
        return self.forward_experts(x, **expert_kwargs).y
