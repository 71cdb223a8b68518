"""Threshold routing: independent sigmoid scores, every expert above a threshold, at most ``top_k``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from domain_moe.core.routing.base import Router, check_logits, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["ThresholdRouter"]


class ThresholdRouter(Router):
    """Multi-label routing: expert ``e`` is used when ``sigmoid(s_e) > threshold``, keeping the ``top_k`` best.

    The coarse, context-aware stage of MoVA (Zong et al., "MoVA: Adapting Mixture of Vision Experts to
    Multimodal Context", NeurIPS 2024) chooses a variable set of up to three experts per sample, or none;
    this router is that rule with a learned scorer in place of the LLM. Each expert is scored
    independently, so the number of experts per token is dynamic (``0 <= k <= top_k``); unused slots are
    ``-1`` with weight 0, and a token with no expert passes through the caller's base path. With
    ``threshold=None`` every token gets exactly ``top_k`` experts (fixed-K routing).

    The scores come from ``gate`` (any module mapping ``[T, D]`` to ``[T, E]`` logits, e.g. a context
    router comparing a sample embedding with per-expert descriptors) or, without one, from a linear gate.
    The weights are the sigmoid probabilities of the kept experts (not renormalised: a routed expert's
    weight says how sure the router is). The training target of such a router is a multi-hot label
    (:meth:`bce_loss`).

    Args:
        d_model: token width ``D``.
        num_experts: experts ``E``.
        top_k: most experts per token ``K`` (``1 <= K <= E``).
        threshold: probability a kept expert must exceed, in ``(0, 1)``, or ``None`` for fixed-K routing.
        gate: scoring module ``[T, D] -> [T, E]`` or ``None`` for a linear gate with bias.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, K]``
        - decision.logits, decision.probs: ``[T, E]``

    Example:
        >>> import torch
        >>> router = ThresholdRouter(d_model=8, num_experts=4, top_k=2, threshold=0.5)
        >>> decision = router(torch.randn(6, 8))
        >>> decision.topk_idx.shape, bool((decision.topk_idx >= -1).all())
        (torch.Size([6, 2]), True)
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int = 2,
        threshold: float | None = 0.5,
        gate: nn.Module | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be an int in [1, num_experts={num_experts}], got {top_k!r}")
        if threshold is not None and not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1) or None, got {threshold!r}")
        if gate is not None and not isinstance(gate, nn.Module):
            raise TypeError(f"gate must be an nn.Module or None, got {type(gate).__name__}")
        self.top_k = top_k
        self.threshold = None if threshold is None else float(threshold)
        self.gate = gate if gate is not None else nn.Linear(d_model, num_experts)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset the gate."""
        reset = getattr(self.gate, "reset_parameters", None)
        if callable(reset):
            reset()

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        self.check_input(x)
        logits = self.gate(x).float()
        if logits.shape != (x.shape[0], self.num_experts):
            raise ValueError(
                f"ThresholdRouter: gate must map [T, D] to [T, E={self.num_experts}], got {tuple(logits.shape)}"
            )
        check_logits(logits)
        probs = logits.sigmoid()
        top_p, topk_idx = probs.detach().topk(self.top_k, dim=-1)
        if self.threshold is not None:
            keep = top_p > self.threshold
            topk_idx = torch.where(keep, topk_idx, torch.full_like(topk_idx, -1))
        topk_w = torch.where(topk_idx >= 0, probs.gather(1, topk_idx.clamp_min(0)), probs.new_zeros(()))
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=count_assignments(topk_idx, self.num_experts),
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
        )

    @staticmethod
    def bce_loss(decision: RoutingDecision, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Binary cross-entropy of the router's scores against multi-hot routing labels.

        Args:
            decision: a decision of this router (its ``logits`` are used).
            target: 1 where the expert should be used.
            weight: optional per-entry weight (e.g. 0 for experts dropped from the pool in this batch).

        Shapes:
            - target, weight: ``[T, E]``
        """
        if decision.logits is None:
            raise ValueError("bce_loss needs a decision with logits")
        if target.shape != decision.logits.shape:
            raise ValueError(f"target must have shape {tuple(decision.logits.shape)}, got {tuple(target.shape)}")
        return nn.functional.binary_cross_entropy_with_logits(decision.logits, target.float(), weight=weight)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"{super().extra_repr()}, top_k={self.top_k}, threshold={self.threshold}"
