"""Routing distributions shared by the layer and kernel benchmarks, so both measure the same skew."""

from __future__ import annotations

import torch
from torch import Tensor

ROUTINGS = ("uniform", "zipf", "hot")
ZIPF_EXPONENT = 1.2
HOT_SHARE = 0.5


def draw_routing(kind: str, num_tokens: int, num_experts: int, top_k: int, generator: torch.Generator) -> Tensor:
    """Expert indices ``[T, K]`` (distinct per token) following the named distribution.

    ``uniform``: K distinct uniform experts; ``zipf``: ``p_e ∝ (e + 1)^-1.2`` without replacement; ``hot``:
    expert 0 is the first choice of a ``HOT_SHARE`` fraction of the tokens, the rest uniform.
    """
    if kind == "uniform":
        return torch.rand(num_tokens, num_experts, generator=generator).argsort(1)[:, :top_k]
    if kind == "zipf":
        probs = torch.arange(1, num_experts + 1, dtype=torch.float64).pow(-ZIPF_EXPONENT)
        return torch.multinomial(probs.expand(num_tokens, -1), top_k, replacement=False, generator=generator)
    if kind == "hot":
        if num_experts == 1:
            return torch.zeros(num_tokens, 1, dtype=torch.long)
        others = torch.rand(num_tokens, num_experts - 1, generator=generator).argsort(1) + 1
        hot = torch.rand(num_tokens, generator=generator) < HOT_SHARE
        with_hot = torch.cat([torch.zeros(num_tokens, 1, dtype=torch.long), others[:, : top_k - 1]], 1)
        return torch.where(hot.unsqueeze(1), with_hot, others[:, :top_k])
    raise ValueError(f"routing must be one of {ROUTINGS}, got {kind!r}")
