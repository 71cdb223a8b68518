"""MoVA's coarse, context-aware expert routing without an LLM: a learned multi-label router."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core.routing import ThresholdRouter
from domain_moe.core.types import RoutingDecision
from domain_moe.vision.heads import ContextEmbedding

__all__ = ["ContextRouter", "ContextScorer"]


class ContextScorer(nn.Module):
    """Score each expert against a sample: ``s_ij = <psi([z_img; z_ctx]), phi(e_j)> / tau + b_j``.

    Every expert is scored independently with shared ``psi``/``phi`` from a learned descriptor ``e_j``, so the
    scores are permutation-equivariant over the pool (MoVA, Zong et al., NeurIPS 2024, §1.7 of our spec).

    Args:
        d_input: width of ``[z_img; z_ctx]``.
        num_experts: experts ``N``.
        d_model: width of the shared score space.
        temperature: ``tau``.

    Shapes:
        - x: ``[B, d_input]``
        - output: ``[B, N]`` (logits)

    Example:
        >>> ContextScorer(10, num_experts=3, d_model=8)(torch.randn(4, 10)).shape
        torch.Size([4, 3])
    """

    def __init__(self, d_input: int, num_experts: int, d_model: int = 64, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.psi = nn.Sequential(nn.Linear(d_input, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.descriptors = nn.Parameter(torch.empty(num_experts, d_model))
        self.phi = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.bias = nn.Parameter(torch.zeros(num_experts))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset the MLPs, draw the descriptors, zero the biases."""
        for m in (*self.psi, *self.phi):
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        nn.init.normal_(self.descriptors, std=1.0)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Expert logits."""
        scale = self.psi[-1].out_features ** 0.5 * self.temperature
        return self.psi(x) @ self.phi(self.descriptors).T / scale + self.bias


class ContextRouter(nn.Module):
    """Choose experts per sample from its pooled base tokens and its context (MoVA's coarse stage, no LLM).

    The base tokens are average-pooled to a ``pool_grid x pool_grid`` grid (MoVA found base features alone
    enough for routing) and joined with the context embedding; a :class:`ContextScorer` gives one sigmoid
    score per expert and the core :class:`~domain_moe.core.routing.ThresholdRouter` keeps the experts above
    ``threshold``, at most ``top_k`` (dynamic K; the empty set means base only). ``threshold=None`` routes
    every sample to exactly ``top_k`` experts. Trained with BCE on MoVA's loss-driven routing labels
    (:func:`~domain_moe.vision.annotations.routing_targets`).

    Args:
        d_base: base token width ``C``.
        grid: base grid side ``g``.
        num_contexts: question templates.
        num_classes: classes a question argument can name.
        num_experts: experts ``N``.
        d_model: score-space width.
        d_context: context embedding width.
        pool_grid: side of the pooled routing grid ``g_r``.
        threshold: score threshold, or ``None`` for fixed K.
        top_k: most experts per sample ``K_max``.

    Shapes:
        - base_tokens: ``[B, g * g, C]``; context, argument: ``[B]``
        - decision.topk_idx: ``[B, K_max]``, ``-1`` for unused slots

    Example:
        >>> router = ContextRouter(16, grid=4, num_contexts=6, num_classes=10, num_experts=4, top_k=2)
        >>> d = router(torch.randn(3, 16, 16), torch.tensor([0, 1, 2]), torch.tensor([1, -1, 4]))
        >>> d.topk_idx.shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        d_base: int,
        grid: int,
        num_contexts: int,
        num_classes: int,
        num_experts: int,
        d_model: int = 64,
        d_context: int = 32,
        pool_grid: int = 2,
        threshold: float | None = 0.5,
        top_k: int = 2,
    ) -> None:
        super().__init__()
        if pool_grid > grid:
            raise ValueError(f"pool_grid must be <= grid={grid}, got {pool_grid}")
        self.grid = grid
        self.pool_grid = pool_grid
        self.d_base = d_base
        self.num_experts = num_experts
        self.context = ContextEmbedding(num_contexts, num_classes, d_context)
        d_input = d_base * pool_grid * pool_grid + d_context
        self.router = ThresholdRouter(
            d_input, num_experts, top_k=top_k, threshold=threshold, gate=ContextScorer(d_input, num_experts, d_model)
        )

    def reset_parameters(self) -> None:
        """Reset the context embedding and the scorer."""
        self.context.reset_parameters()
        self.router.reset_parameters()

    @property
    def top_k(self) -> int:
        """Most experts per sample."""
        return self.router.top_k

    def features(self, base_tokens: Tensor, context: Tensor, argument: Tensor | None = None) -> Tensor:
        """Router input ``[z_img; z_ctx]``.

        Shapes:
            - output: ``[B, C * g_r * g_r + d_context]``
        """
        b, length, c = base_tokens.shape
        if length != self.grid * self.grid or c != self.d_base:
            raise ValueError(
                f"base_tokens must be [B, {self.grid * self.grid}, {self.d_base}], got shape {tuple(base_tokens.shape)}"
            )
        grid = base_tokens.transpose(1, 2).reshape(b, c, self.grid, self.grid)
        pooled = F.adaptive_avg_pool2d(grid, self.pool_grid).flatten(1)
        return torch.cat([pooled, self.context(context, argument)], -1)

    def forward(self, base_tokens: Tensor, context: Tensor, argument: Tensor | None = None) -> RoutingDecision:
        """Route each sample; see the class docstring."""
        return self.router(self.features(base_tokens, context, argument))

    @staticmethod
    def multi_hot(decision: RoutingDecision) -> Tensor:
        """The routed set of each sample as a bool mask.

        Shapes:
            - output: ``[B, N]``
        """
        idx = decision.topk_idx
        mask = torch.zeros(idx.shape[0], decision.num_experts + 1, dtype=torch.bool, device=idx.device)
        mask.scatter_(1, torch.where(idx < 0, decision.num_experts, idx), True)
        return mask[:, :-1]
