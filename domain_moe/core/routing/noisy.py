"""Noisy top-k gating, the sparsely-gated MoE of Shazeer et al. (2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["NoisyTopKRouter"]


class NoisyTopKRouter(Router):
    """Top-k gating on logits perturbed by learned, input-dependent Gaussian noise.

    Shazeer et al., "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts
    Layer" (ICLR 2017). In training the logits are ``z~ = x W^T + eps * std`` with
    ``std = softplus(x W_noise^T) + noise_epsilon`` and ``eps ~ N(0, 1)``; in eval no noise is
    added. Each token keeps its ``top_k`` largest ``z~`` and the combine weights are the softmax
    over the kept logits only.

    Two auxiliary losses balance the experts: the importance loss ``CV^2(sum_t g_t)`` and the load
    loss ``CV^2(sum_t P(e in top-k))``, the smooth load estimated from the normal CDF of the
    distance of the clean logit to the top-k threshold (see
    :func:`~domain_moe.core.losses.importance_load_cv2`). The clean logits, noisy logits and noise
    std are kept in ``decision.extras`` for them.

    The gate ``weight`` is initialised like ``nn.Linear``; the noise weight starts at zero as in the
    paper, so training starts with a uniform noise std of ``softplus(0) + noise_epsilon``.

    Args:
        d_model: token width ``D``.
        num_experts: routed experts ``E``.
        top_k: experts per token ``K`` (``1 <= K <= E``).
        noise_epsilon: floor added to the noise std, which keeps the load loss's division finite.
        importance_coef: weight of the importance loss (0 = off).
        load_coef: weight of the load loss (0 = off).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, K]``
        - decision.logits, decision.probs: ``[T, E]`` (the routed, i.e. noisy in training, logits)
        - decision.extras: ``clean_logits`` ``[T, E]``; in training also ``noisy_logits`` and
          ``noise_std`` ``[T, E]``

    Example:
        >>> import torch
        >>> router = NoisyTopKRouter(d_model=16, num_experts=4, top_k=2)
        >>> decision = router(torch.randn(5, 16))
        >>> decision.topk_idx.shape, sorted(router.aux_losses(decision))
        (torch.Size([5, 2]), ['importance', 'load'])
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int = 2,
        *,
        noise_epsilon: float = 1e-2,
        importance_coef: float = 1e-2,
        load_coef: float = 1e-2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if not isinstance(top_k, int) or not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be an int in [1, num_experts={num_experts}], got {top_k!r}")
        if noise_epsilon < 0:
            raise ValueError(f"noise_epsilon must be >= 0, got {noise_epsilon!r}")
        self.top_k = top_k
        self.noise_epsilon = noise_epsilon
        self.importance_coef = importance_coef
        self.load_coef = load_coef
        self.weight = nn.Parameter(torch.empty(num_experts, d_model, device=device, dtype=torch.float32))
        self.noise_weight = nn.Parameter(torch.empty(num_experts, d_model, device=device, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gate like ``nn.Linear``; noise weight zero (the paper's initialisation)."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.zeros_(self.noise_weight)

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        clean = self.gate_logits(x, self.weight)
        extras = {"clean_logits": clean}
        logits = clean
        if self.training:
            std = F.softplus(self.fp32_linear(x, self.noise_weight)) + self.noise_epsilon
            logits = clean + torch.randn_like(clean) * std
            extras["noisy_logits"] = logits
            extras["noise_std"] = std
        top_val, topk_idx = logits.topk(self.top_k, dim=-1)
        # Softmax over the kept logits directly (not renormalised full probabilities): no underflow.
        topk_w = top_val.softmax(-1)
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=topk_w,
            counts=count_assignments(topk_idx, self.num_experts),
            num_experts=self.num_experts,
            logits=logits,
            probs=logits.softmax(-1),
            extras=extras,
        )

    def aux_losses(self, decision: RoutingDecision) -> dict[str, Tensor]:
        """Importance and load losses (Shazeer et al., 2017), weighted."""
        out: dict[str, Tensor] = {}
        if not (self.importance_coef or self.load_coef):
            return out
        num_tokens = decision.topk_idx.shape[0]
        gates = decision.topk_w.new_zeros(num_tokens, self.num_experts)
        gates = gates.scatter(1, decision.topk_idx.clamp_min(0), decision.topk_w)
        importance, load = losses.importance_load_cv2(
            gates,
            decision.extras["clean_logits"],
            decision.extras.get("noisy_logits"),
            decision.extras.get("noise_std"),
            self.top_k,
        )
        if self.importance_coef:
            out["importance"] = self.importance_coef * importance
        if self.load_coef:
            out["load"] = self.load_coef * load
        return out

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"{super().extra_repr()}, top_k={self.top_k}, noise_epsilon={self.noise_epsilon}"
