"""AdaMoE: top-k over true and null experts, so tokens can use fewer true experts."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["NullExpertRouter"]


class NullExpertRouter(Router):
    """Top-``K'`` routing over ``E`` true and ``m`` null (zero-FLOP, zero-output) experts.

    Zeng et al., "AdaMoE: Token-Adaptive Routing with Null Experts for Mixture-of-Experts Language
    Models" (EMNLP Findings 2024; reference code CengZihao/AdaMoE). A separate head scores the ``m``
    null experts (in the paper it is added to a pre-trained router); the softmax runs over all
    ``E + m`` logits and each token takes its top ``K'``. Null selections become ``-1`` (no row is
    dispatched), and the combine weights are renormalised over the selected **true** experts only; a
    token that selected only null experts gets no expert and weight 0 (the residual passes).

    The balance loss is Switch-style over all ``E + m`` outputs with the null experts pooled
    (:func:`~domain_moe.core.losses.null_aware_balance`, the paper's formula), so the null experts
    together receive their share on average, which sets the mean number of true experts per token.
    ``decision.probs``/``decision.logits`` cover all ``E + m`` outputs; ``decision.counts`` covers
    the ``E`` true experts; ``extras`` holds ``counts_with_null`` ``[E + m]`` and ``null_fraction``
    (the fraction of the ``T K'`` slots that went to a null expert).

    Args:
        d_model: token width ``D``.
        num_experts: true experts ``E``.
        top_k: slots per token ``K'`` over true and null experts (``1 <= K' <= E + m``).
        num_null: null experts ``m`` (``None`` = ``E``).
        balance_coef: weight of the null-aware balance loss (0 = off).
        z_coef: weight of the router z-loss over all ``E + m`` logits (0 = off).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, K']``
        - decision.logits, decision.probs: ``[T, E + m]``
        - decision.counts: ``[E]``

    Example:
        >>> import torch
        >>> router = NullExpertRouter(d_model=16, num_experts=4, top_k=3, num_null=2)
        >>> decision = router(torch.randn(6, 16))
        >>> decision.topk_idx.shape, decision.probs.shape
        (torch.Size([6, 3]), torch.Size([6, 6]))
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int = 2,
        *,
        num_null: int | None = None,
        balance_coef: float = 1e-2,
        z_coef: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        num_null = num_experts if num_null is None else num_null
        if isinstance(num_null, bool) or not isinstance(num_null, int) or num_null < 1:
            raise ValueError(f"num_null must be a positive int or None, got {num_null!r}")
        total = num_experts + num_null
        if not isinstance(top_k, int) or not 1 <= top_k <= total:
            raise ValueError(f"top_k must be an int in [1, num_experts + num_null={total}], got {top_k!r}")
        self.top_k = top_k
        self.num_null = num_null
        self.balance_coef = balance_coef
        self.z_coef = z_coef
        self.weight = nn.Parameter(torch.empty(num_experts, d_model, device=device, dtype=torch.float32))
        self.null_weight = nn.Parameter(torch.empty(num_null, d_model, device=device, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise both heads like ``nn.Linear``."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.kaiming_uniform_(self.null_weight, a=5**0.5)

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        logits = self.gate_logits(x, self.weight, self.null_weight)
        probs = logits.softmax(-1)
        selected = probs.detach().topk(self.top_k, dim=-1).indices
        is_true = selected < self.num_experts
        w = torch.where(is_true, probs.gather(1, selected), probs.new_zeros(()))
        # All-null tokens have a zero sum; the clamp keeps their weights at exactly 0 (no NaN).
        topk_w = w / w.sum(-1, keepdim=True).clamp_min(1e-20)
        topk_idx = torch.where(is_true, selected, torch.full_like(selected, -1))
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=count_assignments(topk_idx, self.num_experts),
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
            extras={
                "counts_with_null": count_assignments(selected, self.num_experts + self.num_null),
                "null_fraction": (~is_true).float().mean(),
            },
        )

    def aux_losses(self, decision: RoutingDecision) -> dict[str, Tensor]:
        """Null-aware balance loss and z-loss, weighted."""
        out: dict[str, Tensor] = {}
        if self.balance_coef and decision.probs is not None:
            counts = decision.extras["counts_with_null"]
            out["balance"] = self.balance_coef * losses.null_aware_balance(
                decision.probs, counts, self.num_null, self.top_k
            )
        if self.z_coef and decision.logits is not None:
            out["z"] = self.z_coef * losses.z_loss(decision.logits)
        return out

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"{super().extra_repr()}, top_k={self.top_k}, num_null={self.num_null}"
