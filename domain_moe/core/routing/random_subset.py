"""Random routing to a given number of distinct experts per token (the matched-K random baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["RandomSubsetRouter"]


class RandomSubsetRouter(Router):
    """Send each token to ``k_t`` distinct, uniformly random experts with equal weights ``1 / k_t``.

    The random-routing ablation of MoVA (Zong et al., NeurIPS 2024, Table 7) must use the same number of
    experts per sample as the learned router, or it measures K rather than routing. ``forward(x, num_selected)``
    takes that number per token (``0 <= k_t <= top_k``; default ``top_k`` for every token). Unused slots are
    ``-1`` with weight 0. Draws use torch's global RNG or ``generator``; no parameters, no auxiliary loss.

    Args:
        d_model: token width ``D``.
        num_experts: experts ``E``.
        top_k: most experts per token ``K``.
        generator: a ``torch.Generator`` for the draws (``None`` = global RNG).

    Shapes:
        - x: ``[T, D]``
        - num_selected: ``[T]`` (int)
        - decision.topk_idx, decision.topk_w: ``[T, K]``

    Example:
        >>> import torch
        >>> router = RandomSubsetRouter(d_model=4, num_experts=5, top_k=3)
        >>> decision = router(torch.randn(3, 4), torch.tensor([0, 1, 3]))
        >>> (decision.topk_idx >= 0).sum(-1).tolist()
        [0, 1, 3]
    """

    def __init__(
        self, d_model: int, num_experts: int, top_k: int = 1, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(d_model, num_experts)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be an int in [1, num_experts={num_experts}], got {top_k!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.top_k = top_k
        self.generator = generator

    def forward(self, x: Tensor, num_selected: Tensor | None = None) -> RoutingDecision:  # type: ignore[override]
        """Route ``x``; see the class docstring."""
        self.check_input(x)
        num_tokens = x.shape[0]
        if num_selected is None:
            num_selected = torch.full((num_tokens,), self.top_k, dtype=torch.long, device=x.device)
        if num_selected.shape != (num_tokens,) or num_selected.is_floating_point():
            raise ValueError(
                f"num_selected must be an int tensor of shape [{num_tokens}], got {num_selected.dtype} "
                f"{tuple(num_selected.shape)}"
            )
        if bool((num_selected < 0).any() | (num_selected > self.top_k).any()):
            raise ValueError(f"num_selected must lie in [0, top_k={self.top_k}], got {num_selected.tolist()}")
        device = self.generator.device if self.generator is not None else x.device
        noise = torch.rand(num_tokens, self.num_experts, generator=self.generator, device=device).to(x.device)
        topk_idx = noise.topk(self.top_k, dim=-1).indices
        slot = torch.arange(self.top_k, device=x.device).unsqueeze(0)
        keep = slot < num_selected.to(x.device).unsqueeze(1)
        topk_idx = torch.where(keep, topk_idx, torch.full_like(topk_idx, -1))
        topk_w = keep.float() / num_selected.to(x.device).clamp_min(1).unsqueeze(1).float()
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=count_assignments(topk_idx, self.num_experts),
            num_experts=self.num_experts,
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"{super().extra_repr()}, top_k={self.top_k}"
