"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision


class ScriptedRouter(Router):
    """A router whose choices are fixed by the test while its weights stay differentiable.

    Weights are the softmax probabilities of a real linear gate at the scripted experts, so gradients
    reach ``self.weight`` exactly as with a learned router.
    """

    def __init__(self, d_model: int, num_experts: int, topk_idx: Tensor, capacity: int | None = None) -> None:
        super().__init__(d_model, num_experts)
        self.weight = torch.nn.Parameter(torch.randn(num_experts, d_model) * 0.5)
        self.register_buffer("script", topk_idx.clone())
        self.capacity = capacity

    def forward(self, x: Tensor) -> RoutingDecision:
        self.check_input(x)
        logits = self.fp32_linear(x, self.weight)
        probs = logits.softmax(-1)
        idx = self.script
        w = probs.gather(1, idx.clamp_min(0)).masked_fill(idx < 0, 0.0)
        return RoutingDecision(
            topk_idx=idx,
            topk_w=w,
            counts=count_assignments(idx, self.num_experts),
            num_experts=self.num_experts,
            logits=logits,
            probs=probs,
            capacity=self.capacity,
        )


@pytest.fixture
def scripted_router() -> type[ScriptedRouter]:
    """The :class:`ScriptedRouter` class (test modules cannot import conftest by name)."""
    return ScriptedRouter
