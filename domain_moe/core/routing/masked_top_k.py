"""Top-k routing restricted to an allowed set of experts per token."""

from __future__ import annotations

import torch
from torch import Tensor

from domain_moe.core.routing.base import count_assignments
from domain_moe.core.routing.top_k import TopKRouter
from domain_moe.core.types import RoutingDecision

__all__ = ["MaskedTopKRouter"]


class MaskedTopKRouter(TopKRouter):
    """:class:`TopKRouter` whose tokens may only pick experts of an allowed set.

    The fine-grained gate of MoVA's MoV-Adapter (Zong et al., NeurIPS 2024) is ``softmax(g + m)`` with
    ``m_e = -inf`` outside the set the coarse router chose, then top-k and renormalisation over what is kept.
    ``forward(x, allowed)`` does exactly that: disallowed experts get ``-inf`` logits, slots that would fall
    on a disallowed expert (a token with fewer than ``top_k`` allowed experts) become ``-1`` with weight 0, and
    the weights are renormalised over the kept slots. A token with no allowed expert gets ``-1`` everywhere,
    so it passes through the caller's base path (MoVA's ``b = 0`` case). Without ``allowed`` it is a plain
    :class:`TopKRouter`. Only the softmax score function is supported (the mask is a softmax mask).

    Args:
        d_model: token width ``D``.
        num_experts: experts ``E``.
        top_k: experts per token ``K``.
        balance_coef: weight of the Switch balance loss (0 = off).
        z_coef: weight of the router z-loss (0 = off).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - allowed: ``[T, E]`` (bool)
        - decision.topk_idx, decision.topk_w: ``[T, K]``

    Example:
        >>> import torch
        >>> router = MaskedTopKRouter(d_model=8, num_experts=4, top_k=2)
        >>> allowed = torch.tensor([[True, False, False, False], [False, False, False, False]])
        >>> router(torch.randn(2, 8), allowed).topk_idx.tolist()
        [[0, -1], [-1, -1]]
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int = 2,
        *,
        balance_coef: float = 0.0,
        z_coef: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            d_model, num_experts, top_k, balance_coef=balance_coef, z_coef=z_coef, device=device, dtype=dtype
        )

    def forward(self, x: Tensor, allowed: Tensor | None = None) -> RoutingDecision:  # type: ignore[override]
        """Route ``x`` among the ``allowed`` experts; see the class docstring."""
        if allowed is None:
            return super().forward(x)
        logits = self.gate_logits(x, self.weight)
        if allowed.dtype != torch.bool or allowed.shape != logits.shape:
            raise ValueError(
                f"allowed must be a bool tensor of shape {tuple(logits.shape)}, got {allowed.dtype} "
                f"{tuple(allowed.shape)}"
            )
        masked = logits.masked_fill(~allowed, float("-inf"))
        # A row with nothing allowed would be all -inf (NaN softmax): give it zeros, then drop its slots.
        any_allowed = allowed.any(-1, keepdim=True)
        probs = torch.where(any_allowed, masked, torch.zeros_like(masked)).softmax(-1)
        probs = torch.where(allowed, probs, torch.zeros_like(probs))
        topk_idx = probs.detach().topk(self.top_k, dim=-1).indices
        kept = allowed.gather(1, topk_idx)
        topk_idx = torch.where(kept, topk_idx, torch.full_like(topk_idx, -1))
        topk_w = torch.where(kept, probs.gather(1, topk_idx.clamp_min(0)), probs.new_zeros(()))
        topk_w = topk_w / topk_w.sum(-1, keepdim=True).clamp_min(1e-20)
        counts = count_assignments(topk_idx, self.num_experts)
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=counts,
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
            extras={"selected_counts": counts},
        )
