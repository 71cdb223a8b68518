"""Random routing (THOR, Zuo et al., 2022): no router, a uniformly random expert."""

from __future__ import annotations

import torch
from torch import Tensor

from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["LEVELS", "RandomRouter"]

LEVELS = ("batch", "token")


class RandomRouter(Router):
    """Send tokens to uniformly random experts, with weight 1; no parameters.

    Zuo et al., "Taming Sparsely Activated Transformer with Stochastic Experts" (THOR, ICLR 2022;
    reference code microsoft/Stochastic-Mixture-of-Experts). In training, ``level="batch"`` draws
    one expert for all tokens of a forward (the reference code's choice: the layer then acts as one
    dense FFN) and ``level="token"`` draws one per token. In eval the reference code draws per token
    (its level 0); ``eval_level`` selects this (default ``"token"``) or ``"batch"``.

    Draws use torch's global RNG (reproducible under ``torch.manual_seed``) or ``generator`` when
    given. THOR's training objective, ``CE_1 + CE_2 + alpha * symKL(p_1, p_2)`` over two forwards
    through independently drawn experts, lives at model level: use
    :func:`~domain_moe.core.losses.symmetric_kl` on the two predictions. The router itself has no
    auxiliary loss.

    Args:
        d_model: token width ``D``.
        num_experts: experts ``E``.
        level: ``"batch"`` or ``"token"``, the draw granularity in training.
        eval_level: the draw granularity in eval.
        generator: a ``torch.Generator`` for the draws (``None`` = global RNG).

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, 1]``

    Example:
        >>> import torch
        >>> router = RandomRouter(d_model=16, num_experts=4, level="batch")
        >>> decision = router(torch.randn(5, 16))
        >>> decision.topk_idx.unique().numel(), decision.topk_w.sum().item()
        (1, 5.0)
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        *,
        level: str = "batch",
        eval_level: str = "token",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if eval_level not in LEVELS:
            raise ValueError(f"eval_level must be one of {LEVELS}, got {eval_level!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.level = level
        self.eval_level = eval_level
        self.generator = generator

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        self.check_input(x)
        num_tokens = x.shape[0]
        level = self.level if self.training else self.eval_level
        draws = 1 if level == "batch" else num_tokens
        device = self.generator.device if self.generator is not None else x.device
        # A device tensor, not .item() as in the reference code: no host sync on the hot path.
        choice = torch.randint(self.num_experts, (draws,), generator=self.generator, device=device)
        topk_idx = choice.to(x.device).expand(num_tokens).reshape(num_tokens, 1).contiguous()
        topk_w = torch.ones(num_tokens, 1, dtype=torch.float32, device=x.device)
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=count_assignments(topk_idx, self.num_experts),
            num_experts=self.num_experts,
        )

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"{super().extra_repr()}, level={self.level!r}, eval_level={self.eval_level!r}"
