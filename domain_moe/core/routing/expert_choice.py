"""Expert-choice routing (Zhou et al., 2022): experts pick their tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["ExpertChoiceRouter"]


class ExpertChoiceRouter(Router):
    """Each expert takes the ``C`` tokens with the highest affinity to it.

    Zhou et al., "Mixture-of-Experts with Expert Choice Routing" (NeurIPS 2022). Scores are ``S =
    softmax(x W^T)`` over experts; expert ``e`` takes the top-``C`` tokens of column ``S[:, e]``,
    with ``C = ceil(T * capacity_factor / E)`` clamped to ``[1, T]``. Every expert gets exactly
    ``C`` tokens (perfect balance, no auxiliary loss); a token gets between 0 and ``E`` experts.

    The decision uses the uniform token-choice form so one plan builder serves all routers: slot
    ``e`` of a token holds ``e`` when expert ``e`` chose it (weight ``S[t, e]``), else ``-1``
    (weight 0). The expert-major choice ``[E, C]`` is also kept in ``extras["expert_tokens"]``.
    Groups are uniform (``C`` rows each), so the router prefers the ``bmm`` backend. The choice
    depends on the whole batch: it is non-causal and changes with the batch size.

    Args:
        d_model: token width ``D``.
        num_experts: routed experts ``E``.
        capacity_factor: average experts per token ``cf`` (2 in the paper's EC-CF2).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, E]``
        - decision.logits, decision.probs: ``[T, E]``
        - decision.extras["expert_tokens"]: ``[E, C]``

    Example:
        >>> import torch
        >>> router = ExpertChoiceRouter(d_model=16, num_experts=4)
        >>> decision = router(torch.randn(8, 16))
        >>> decision.capacity, decision.counts.tolist()
        (4, [4, 4, 4, 4])
    """

    preferred_backend = "bmm"

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        capacity_factor: float = 2.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if isinstance(capacity_factor, bool) or not isinstance(capacity_factor, (int, float)) or capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be a number > 0, got {capacity_factor!r}")
        self.capacity_factor = float(capacity_factor)
        self.weight = nn.Parameter(torch.empty(num_experts, d_model, device=device, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the gate like ``nn.Linear``."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        logits = self.gate_logits(x, self.weight)
        probs = logits.softmax(-1)
        num_tokens = x.shape[0]
        capacity = self.capacity_for(num_tokens, 1, self.capacity_factor)
        expert_tokens = probs.detach().T.topk(capacity, dim=-1).indices
        chosen = torch.zeros(self.num_experts, num_tokens, dtype=torch.bool, device=probs.device)
        chosen = chosen.scatter_(1, expert_tokens, True).T
        experts = torch.arange(self.num_experts, device=probs.device).expand(num_tokens, -1)
        topk_idx = torch.where(chosen, experts, torch.full_like(experts, -1))
        topk_w = torch.where(chosen, probs, probs.new_zeros(()))
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=count_assignments(topk_idx, self.num_experts),
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
            capacity=capacity,
            extras={"expert_tokens": expert_tokens},
        )

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"{super().extra_repr()}, capacity_factor={self.capacity_factor}"
