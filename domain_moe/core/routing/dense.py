"""Dense softmax gating over all experts (the MMoE / PLE gate of multi-task recommendation)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.routing.base import Router
from domain_moe.core.types import RoutingDecision

__all__ = ["DenseRouter"]


class DenseRouter(Router):
    """Every token uses every expert, weighted by ``softmax(x W^T / temperature)``.

    The gate of MMoE (Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
    Mixture-of-Experts", KDD 2018) and of CGC/PLE (Tang et al., RecSys 2020), one per task. Since
    all experts see all tokens the groups are uniform (``T`` rows each), so the router prefers the
    ``bmm`` backend. ``temperature`` below 1 sharpens the gate, above 1 flattens it.

    Optional auxiliary loss ``entropy_coef * mean_t H(g_t)``: a positive coefficient sharpens the
    gate, a negative one keeps it from collapsing onto one expert (gate polarisation); 0 (default)
    is off.

    Args:
        d_model: token width ``D``.
        num_experts: experts ``E``.
        temperature: softmax temperature (``> 0``).
        entropy_coef: weight of the gate-entropy loss (0 = off).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, E]`` (slot ``e`` holds expert ``e``)
        - decision.logits, decision.probs: ``[T, E]``

    Example:
        >>> import torch
        >>> router = DenseRouter(d_model=16, num_experts=3)
        >>> decision = router(torch.randn(4, 16))
        >>> decision.topk_idx[0].tolist(), decision.counts.tolist()
        ([0, 1, 2], [4, 4, 4])
    """

    preferred_backend = "bmm"

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        *,
        temperature: float = 1.0,
        entropy_coef: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.entropy_coef = entropy_coef
        self.weight = nn.Parameter(torch.empty(num_experts, d_model, device=device, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the gate like ``nn.Linear``."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route ``x``; see the class docstring."""
        logits = self.gate_logits(x, self.weight)
        probs = (logits / self.temperature).softmax(-1)
        num_tokens = x.shape[0]
        topk_idx = torch.arange(self.num_experts, device=probs.device).repeat(num_tokens, 1)
        counts = torch.full((self.num_experts,), num_tokens, dtype=torch.long, device=probs.device)
        return RoutingDecision(
            topk_idx=topk_idx,
            topk_w=probs,
            counts=counts,
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
        )

    def aux_losses(self, decision: RoutingDecision) -> dict[str, Tensor]:
        """The weighted gate-entropy loss, when ``entropy_coef`` is non-zero."""
        if not self.entropy_coef or decision.probs is None:
            return {}
        return {"entropy": self.entropy_coef * losses.entropy(decision.probs)}

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"{super().extra_repr()}, temperature={self.temperature}"
