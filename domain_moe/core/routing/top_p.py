"""Top-p (dynamic) routing: as many experts as it takes to cover probability ``p``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["TopPRouter"]


class TopPRouter(Router):
    """Each token takes experts by decreasing probability until their cumulative mass exceeds ``p``.

    Huang et al., "Harder Tasks Need More Experts: Dynamic Routing in MoE Models" (ACL 2024;
    reference code ZhenweiAn/Dynamic_MoE). With ``P = softmax(x W^T)`` sorted in decreasing order, a
    token keeps every expert up to and including the first one at which the cumulative probability
    exceeds ``top_p`` (so at least one expert, and "harder", flatter tokens get more). The combine
    weights are the **raw** probabilities of the kept experts, not renormalised, as in the reference
    code.

    The decision has ``E`` slots per token in decreasing probability, unused slots ``-1`` with
    weight 0; ``max_k`` caps the slots (and the experts per token) at ``max_k``. Auxiliary losses:
    the Switch balance loss over the assignments actually made, and the "dynamic" loss, the mean
    router entropy, *minimised* so the router does not drift to the uniform distribution (which
    would activate every expert).

    Args:
        d_model: token width ``D``.
        num_experts: routed experts ``E``.
        top_p: the probability threshold ``p`` in ``(0, 1]`` (0.4 in the reference configuration).
        max_k: most experts per token (``None`` = ``E``).
        balance_coef: weight of the balance loss (0 = off).
        entropy_coef: weight of the dynamic (entropy) loss (0 = off; 1e-4 in the paper).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, K]`` with ``K = max_k or E``
        - decision.logits, decision.probs: ``[T, E]``

    Example:
        >>> import torch
        >>> router = TopPRouter(d_model=16, num_experts=4, top_p=0.5)
        >>> decision = router(torch.randn(5, 16))
        >>> decision.topk_idx.shape, bool(((decision.topk_idx >= 0).sum(-1) >= 1).all())
        (torch.Size([5, 4]), True)
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_p: float = 0.4,
        *,
        max_k: int | None = None,
        balance_coef: float = 1e-2,
        entropy_coef: float = 1e-4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be a float in (0, 1], got {top_p!r}")
        if max_k is not None and (not isinstance(max_k, int) or not 1 <= max_k <= num_experts):
            raise ValueError(f"max_k must be None or an int in [1, num_experts={num_experts}], got {max_k!r}")
        self.top_p = float(top_p)
        self.max_k = max_k
        self.balance_coef = balance_coef
        self.entropy_coef = entropy_coef
        self.weight = nn.Parameter(torch.empty(num_experts, d_model, device=device, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the gate like ``nn.Linear``."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        logits = self.gate_logits(x, self.weight)
        probs = logits.softmax(-1)
        sorted_p, order = probs.detach().sort(dim=-1, descending=True, stable=True)
        # Keep slot j while the mass *before* it is still <= p: that keeps the crossing expert and
        # guarantees slot 0. An exclusive prefix sum avoids the rounding of cumsum(p) - p.
        before = torch.cumsum(sorted_p, dim=-1)
        before = torch.cat([before.new_zeros(before.shape[0], 1), before[:, :-1]], dim=-1)
        keep = before <= self.top_p
        if self.max_k is not None:
            keep, order = keep[:, : self.max_k], order[:, : self.max_k]
        topk_idx = torch.where(keep, order, torch.full_like(order, -1))
        topk_w = torch.where(keep, probs.gather(1, order), probs.new_zeros(()))
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=count_assignments(topk_idx, self.num_experts),
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
        )

    def aux_losses(self, decision: RoutingDecision) -> dict[str, Tensor]:
        """Balance loss over the real assignments and the dynamic (entropy) loss, weighted."""
        out: dict[str, Tensor] = {}
        if decision.probs is None:
            return out
        if self.balance_coef:
            # Variable k: normalise by the assignments made, so uniform routing still scores 1.
            out["balance"] = self.balance_coef * losses.switch_balance(decision.probs, decision.counts, None)
        if self.entropy_coef:
            out["entropy"] = self.entropy_coef * losses.entropy(decision.probs)
        return out

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        parts = [super().extra_repr(), f"top_p={self.top_p}"]
        if self.max_k is not None:
            parts.append(f"max_k={self.max_k}")
        return ", ".join(parts)
