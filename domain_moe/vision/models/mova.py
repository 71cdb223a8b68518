"""MoVA: coarse context-aware routing over frozen vision experts plus the MoV-Adapter, without an LLM."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from domain_moe.core.routing import RandomSubsetRouter
from domain_moe.core.types import RoutingDecision
from domain_moe.vision.experts import ExpertPool, TimmExpert, base_tokens_of, cached_expert_tokens
from domain_moe.vision.heads import QuestionHead
from domain_moe.vision.models.context_router import ContextRouter
from domain_moe.vision.models.mov_adapter import MoVAdapter

__all__ = ["ROUTE_MODES", "MoVA"]

#: Where the routed set comes from: the learned router, the annotations, a matched-K random draw, all, none.
ROUTE_MODES = ("router", "annotation", "random", "all", "none")


class MoVA(nn.Module):
    """MoVA (Zong et al., "MoVA: Adapting Mixture of Vision Experts to Multimodal Context", NeurIPS 2024).

    1. The base encoder turns the image into ``g x g`` tokens (or cached ``base_tokens`` are used).
    2. The :class:`ContextRouter` picks up to ``top_k`` experts per sample from the pooled base tokens and the
       question's context (``route_mode="router"``); the alternatives are the annotation labels (training
       stage 3), a random set of the same size as the router's (``"random"``, MoVA Table 7), every expert or
       none.
    3. Only routed experts run, and only on the samples routed to them (live through the :class:`ExpertPool`,
       or by indexing cached ``expert_tokens``).
    4. The :class:`MoVAdapter` fuses them into the base tokens; the :class:`QuestionHead` answers.

    Batches are dicts: ``image`` (unless every token source is cached), ``context``, ``argument``, optionally
    ``base_tokens`` ``[B, L, C]``, ``expert_tokens`` (a list of ``[B, L, C_j]``) and ``route_target``
    ``[B, N]`` (annotations). The last call's routing decision, routed sets and gate weights are kept on the
    model (``last_decision``, ``last_routes``) for the router loss and diagnostics.

    Args:
        router: the coarse router.
        adapter: the MoV-Adapter.
        head: the question head.
        base: the base encoder (``None`` when base tokens are always cached).
        pool: the frozen experts (``None`` when expert tokens are always cached).
        grid: base grid side ``g``.
        route_mode: one of :data:`ROUTE_MODES`.

    Shapes:
        - batch["image"]: ``[B, 1, S, S]``; batch["context"], batch["argument"]: ``[B]``
        - output: ``[B, num_answers]``

    Example:
        >>> from domain_moe.vision.canvas import AnswerSpace
        >>> mask = AnswerSpace(10, 3).mask()
        >>> router = ContextRouter(16, 4, 6, 10, num_experts=2)
        >>> adapter = MoVAdapter(16, [8, 12], num_tokens=16, d_context=32, num_blocks=1, num_heads=2)
        >>> model = MoVA(router, adapter, QuestionHead(16, 6, 10, mask, num_heads=2), grid=4)
        >>> batch = {"base_tokens": torch.randn(3, 16, 16), "expert_tokens": [torch.randn(3, 16, 8),
        ...          torch.randn(3, 16, 12)], "context": torch.tensor([0, 1, 2]), "argument": torch.tensor([1, -1, 2])}
        >>> model(batch).shape
        torch.Size([3, 19])
    """

    def __init__(
        self,
        router: ContextRouter,
        adapter: MoVAdapter,
        head: QuestionHead,
        base: TimmExpert | None = None,
        pool: ExpertPool | None = None,
        grid: int = 8,
        route_mode: str = "router",
    ) -> None:
        super().__init__()
        if route_mode not in ROUTE_MODES:
            raise ValueError(f"route_mode must be one of {ROUTE_MODES}, got {route_mode!r}")
        if router.num_experts != adapter.num_experts:
            raise ValueError(f"router has {router.num_experts} experts but the adapter {adapter.num_experts}")
        if head.embed.d_context != adapter.d_context:
            raise ValueError(f"head d_context={head.embed.d_context} must equal adapter d_context={adapter.d_context}")
        if pool is not None and len(pool) != adapter.num_experts:
            raise ValueError(f"pool has {len(pool)} experts but the adapter {adapter.num_experts}")
        self.router = router
        self.adapter = adapter
        self.head = head
        self.base = base
        self.pool = pool
        self.grid = grid
        self.route_mode = route_mode
        self.random_router = RandomSubsetRouter(1, adapter.num_experts, top_k=router.top_k)
        self.last_decision: RoutingDecision | None = None
        self.last_routes: Tensor | None = None

    @property
    def num_experts(self) -> int:
        """Experts ``N``."""
        return self.adapter.num_experts

    def reset_parameters(self) -> None:
        """Reset the router, the adapter and the head (the frozen experts are untouched)."""
        self.router.reset_parameters()
        self.adapter.reset_parameters()
        self.head.reset_parameters()

    def base_tokens(self, batch: dict[str, Any]) -> Tensor:
        """Cached base tokens, or the base encoder run on the image."""
        return base_tokens_of(batch, self.base, self.grid)

    def routes(self, batch: dict[str, Any], base: Tensor) -> Tensor:
        """The routed set of every sample (``[B, N]`` bool) under ``route_mode``."""
        b = base.shape[0]
        self.last_decision = None
        if self.route_mode in ("router", "random"):
            self.last_decision = self.router(base.detach(), batch["context"], batch.get("argument"))
            routes = ContextRouter.multi_hot(self.last_decision)
            if self.route_mode == "random":
                k = routes.sum(-1)
                drawn = self.random_router(base.new_zeros(b, 1), k)
                routes = ContextRouter.multi_hot(drawn)
        elif self.route_mode == "annotation":
            if "route_target" not in batch:
                raise ValueError("route_mode='annotation' needs batch['route_target'] [B, N]")
            routes = batch["route_target"].bool()
        else:
            routes = torch.full((b, self.num_experts), self.route_mode == "all", device=base.device)
        return routes

    def expert_tokens(self, batch: dict[str, Any], routes: Tensor) -> dict[int, tuple[Tensor, Tensor]]:
        """Aligned tokens of each routed expert for exactly its routed samples (nothing else is computed)."""
        cached = cached_expert_tokens(batch, self.num_experts)
        out: dict[int, tuple[Tensor, Tensor]] = {}
        for j in range(self.num_experts):
            samples = routes[:, j].nonzero().squeeze(1)
            if samples.numel() == 0:
                continue
            if cached is not None:
                out[j] = (samples, cached[j][samples])
            elif self.pool is not None:
                out[j] = (samples, self.pool(batch["image"][samples], j))
            else:
                raise ValueError("MoVA has no expert pool: pass batch['expert_tokens'] or build it with pool=")
        return out

    def forward(self, batch: dict[str, Any]) -> Tensor:
        """Answer logits; see the class docstring."""
        base = self.base_tokens(batch)
        routes = self.routes(batch, base)
        self.last_routes = routes
        # The head's context embedding, not the router's: the adapter's loss must not move a trained router.
        context = self.head.embed(batch["context"], batch.get("argument"))
        fused = self.adapter(base, self.expert_tokens(batch, routes), routes, context)
        return self.head(fused, batch["context"], batch.get("argument"))

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"grid={self.grid}, route_mode={self.route_mode!r}"
