"""Top-k token-choice routing, with the options of Switch, GShard and DeepSeek-V3."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.routing.base import DROP_POLICIES, Router, apply_capacity, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["TopKRouter"]

SCORE_FNS = ("softmax", "sigmoid")


class TopKRouter(Router):
    """Each token picks its ``top_k`` highest-scoring experts.

    Scores are ``softmax(x W^T)`` (Shazeer et al., 2017; Switch; GShard) or ``sigmoid(x W^T)``
    (DeepSeek-V3). The combine weights are the scores of the chosen experts, renormalised to sum to 1
    when ``renorm`` and multiplied by ``route_scale``. Options:

    * ``jitter_eps``: multiplicative input jitter ``x * U(1 - eps, 1 + eps)`` in training (Switch).
    * ``capacity_factor``/``drop_policy``: at most ``C = ceil(cf * T * K / E)`` rows per expert; the
      others become ``-1`` (the token passes through the residual only).
    * ``bias_balancing``: auxiliary-loss-free balancing (Wang et al., 2024): experts are *selected* on
      ``score + b`` while the weights use the unbiased score; ``b`` is a non-gradient buffer that
      :class:`~domain_moe.core.balancing.BiasBalancer` moves after each optimizer step from the loads
      accumulated in ``load_accum``.
    * ``num_groups``/``topk_groups``: group-limited routing (DeepSeek-V2/V3): only experts in the
      ``topk_groups`` best groups (group score = sum of its two best scores) can be selected.

    Args:
        d_model: token width ``D``.
        num_experts: routed experts ``E``.
        top_k: experts per token ``K`` (``1 <= K <= E``).
        score_fn: ``"softmax"`` or ``"sigmoid"``.
        renorm: renormalise the chosen weights to sum to 1.
        route_scale: constant factor on the weights (DeepSeek-V3 uses 2.5 with fine-grained experts).
        jitter_eps: multiplicative input jitter in training (0 = off).
        capacity_factor: ``None`` for dropless routing, else the capacity factor ``cf``.
        drop_policy: ``"position"``, ``"score"`` or ``"random"`` (see :func:`apply_capacity`).
        bias_balancing: keep a selection bias for auxiliary-loss-free balancing.
        num_groups: expert groups for group-limited routing (``None`` = off).
        topk_groups: groups a token may use.
        balance_coef: weight of the Switch balance loss (0 = off).
        z_coef: weight of the router z-loss (0 = off).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, K]``
        - decision.logits, decision.probs: ``[T, E]``

    Example:
        >>> import torch
        >>> router = TopKRouter(d_model=16, num_experts=4, top_k=2)
        >>> decision = router(torch.randn(5, 16))
        >>> decision.topk_idx.shape, decision.counts.sum().item()
        (torch.Size([5, 2]), 10)
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int = 2,
        *,
        score_fn: str = "softmax",
        renorm: bool = True,
        route_scale: float = 1.0,
        jitter_eps: float = 0.0,
        capacity_factor: float | None = None,
        drop_policy: str = "position",
        bias_balancing: bool = False,
        num_groups: int | None = None,
        topk_groups: int | None = None,
        balance_coef: float = 1e-2,
        z_coef: float = 1e-3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if not isinstance(top_k, int) or not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be an int in [1, num_experts={num_experts}], got {top_k!r}")
        if score_fn not in SCORE_FNS:
            raise ValueError(f"score_fn must be one of {SCORE_FNS}, got {score_fn!r}")
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be > 0 or None, got {capacity_factor!r}")
        if drop_policy not in DROP_POLICIES:
            raise ValueError(f"drop_policy must be one of {DROP_POLICIES}, got {drop_policy!r}")
        if not 0.0 <= jitter_eps < 1.0:
            raise ValueError(f"jitter_eps must be in [0, 1), got {jitter_eps!r}")
        if (num_groups is None) != (topk_groups is None):
            raise ValueError("num_groups and topk_groups must be given together")
        if num_groups is not None and topk_groups is not None:
            if num_experts % num_groups:
                raise ValueError(f"num_experts={num_experts} is not divisible by num_groups={num_groups}")
            if not 1 <= topk_groups <= num_groups:
                raise ValueError(f"topk_groups must be in [1, num_groups={num_groups}], got {topk_groups}")
            if topk_groups * (num_experts // num_groups) < top_k:
                raise ValueError(f"topk_groups={topk_groups} groups hold fewer than top_k={top_k} experts")
        self.top_k = top_k
        self.score_fn = score_fn
        self.renorm = renorm
        self.route_scale = route_scale
        self.jitter_eps = jitter_eps
        self.capacity_factor = capacity_factor
        self.drop_policy = drop_policy
        self.num_groups = num_groups
        self.topk_groups = topk_groups
        self.balance_coef = balance_coef
        self.z_coef = z_coef
        self.weight = nn.Parameter(torch.empty(num_experts, d_model, device=device, dtype=torch.float32))
        self.bias_balancing = bias_balancing
        if bias_balancing:
            self.register_buffer("selection_bias", torch.zeros(num_experts, device=device))
            self.register_buffer("load_accum", torch.zeros(num_experts, dtype=torch.long, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the gate like ``nn.Linear`` and clear the balancing state."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        if self.bias_balancing:
            self.selection_bias.zero_()
            self.load_accum.zero_()

    def scores(self, logits: Tensor) -> Tensor:
        """Per-expert scores from logits (softmax or sigmoid), fp32.

        Shapes:
            - logits, output: ``[T, E]``
        """
        return logits.softmax(-1) if self.score_fn == "softmax" else logits.sigmoid()

    def _group_mask(self, select: Tensor) -> Tensor:
        assert self.num_groups is not None and self.topk_groups is not None
        num_tokens = select.shape[0]
        grouped = select.view(num_tokens, self.num_groups, -1)
        best = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
        keep_groups = best.topk(self.topk_groups, dim=-1).indices
        mask = torch.zeros_like(best, dtype=torch.bool).scatter_(1, keep_groups, True)
        mask = mask.unsqueeze(-1).expand_as(grouped).reshape(num_tokens, -1)
        return select.masked_fill(~mask, float("-inf"))

    def select(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Choose experts from logits.

        Returns:
            ``(topk_idx, topk_w, probs)`` before capacity.

        Shapes:
            - logits, probs: ``[T, E]``
            - topk_idx, topk_w: ``[T, K]``
        """
        probs = self.scores(logits)
        select = probs.detach()
        if self.bias_balancing:
            select = select + self.selection_bias
        if self.num_groups is not None:
            select = self._group_mask(select)
        topk_idx = select.topk(self.top_k, dim=-1).indices
        topk_w = probs.gather(1, topk_idx)
        if self.renorm and (self.top_k > 1 or self.score_fn == "sigmoid"):
            topk_w = topk_w / topk_w.sum(-1, keepdim=True).clamp_min(1e-20)
        return topk_idx, topk_w * self.route_scale, probs

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        self.check_input(x)  # before the jitter, which needs a floating-point input
        if self.training and self.jitter_eps > 0:
            noise = torch.empty_like(x).uniform_(1.0 - self.jitter_eps, 1.0 + self.jitter_eps)
            x = x * noise
        logits = self.gate_logits(x, self.weight)
        topk_idx, topk_w, probs = self.select(logits)
        selected_counts = count_assignments(topk_idx, self.num_experts)
        capacity = None
        if self.capacity_factor is not None:
            capacity = self.capacity_for(x.shape[0], self.top_k, self.capacity_factor)
            topk_idx, topk_w = apply_capacity(topk_idx, topk_w, capacity, self.num_experts, policy=self.drop_policy)
        counts = count_assignments(topk_idx, self.num_experts)
        if self.bias_balancing and self.training:
            with torch.no_grad():
                self.load_accum += selected_counts
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=counts,
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
            capacity=capacity,
            extras={"selected_counts": selected_counts},
        )

    def aux_losses(self, decision: RoutingDecision) -> dict[str, Tensor]:
        """Switch balance loss (on the loads before capacity) and z-loss, weighted."""
        out: dict[str, Tensor] = {}
        if self.balance_coef and decision.probs is not None:
            probs = decision.probs
            if self.score_fn == "sigmoid":
                probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-20)
            counts = decision.extras.get("selected_counts", decision.counts)
            out["balance"] = self.balance_coef * losses.switch_balance(probs, counts, self.top_k)
        if self.z_coef and decision.logits is not None:
            out["z"] = self.z_coef * losses.z_loss(decision.logits)
        return out

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        parts = [super().extra_repr(), f"top_k={self.top_k}", f"score_fn={self.score_fn!r}"]
        if self.capacity_factor is not None:
            parts.append(f"capacity_factor={self.capacity_factor}, drop_policy={self.drop_policy!r}")
        if self.bias_balancing:
            parts.append("bias_balancing=True")
        if self.num_groups is not None:
            parts.append(f"num_groups={self.num_groups}, topk_groups={self.topk_groups}")
        return ", ".join(parts)
