"""Fixtures of the Triton kernel tests; the folder is skipped when triton cannot run here."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("the triton kernels need CUDA or TRITON_INTERPRET=1", allow_module_level=True)

from domain_moe.core.dispatch.reference import build_plan
from domain_moe.core.routing.top_k import TopKRouter

ROUTING_MODES = ("random", "one_expert", "empty_experts", "holes", "capacity")


def make_routing(num_tokens: int, num_experts: int, top_k: int, mode: str = "random", seed: int = 0):
    """``(topk_idx, topk_w)`` for a routing pattern.

    ``one_expert``: every token's first slot goes to expert 0 (with ``top_k == 1`` all tokens do); ``empty_experts``:
    only the first ``top_k`` (at least half the) experts are used; ``holes``: ~40 % of the slots are ``-1``;
    ``capacity``: a ``TopKRouter(capacity_factor=0.5)`` decision, whose drops are ``-1``.
    """
    gen = torch.Generator().manual_seed(seed)
    if mode == "capacity":
        router = TopKRouter(8, num_experts, top_k, capacity_factor=0.5)
        with torch.no_grad():
            decision = router(torch.randn(num_tokens, 8, generator=gen))
        return decision.topk_idx.long(), decision.topk_w.detach()
    scores = torch.rand(num_tokens, num_experts, generator=gen)
    if mode == "one_expert":
        scores[:, 0] += 10.0
    elif mode == "empty_experts":
        keep = max(top_k, (num_experts + 1) // 2)
        scores[:, keep:] -= 10.0
    idx = scores.topk(top_k, dim=-1).indices
    if mode == "holes":
        idx = idx.masked_fill(torch.rand(idx.shape, generator=gen) < 0.4, -1)
    w = torch.rand(idx.shape, generator=gen) + 0.1
    w = w.masked_fill(idx < 0, 0.0)
    return idx, w


@pytest.fixture
def routing():
    """:func:`make_routing`."""
    return make_routing


@pytest.fixture
def plan_for():
    """``plan_for(T, E, K, mode, seed) -> (topk_idx, topk_w, plan)``."""

    def build(num_tokens, num_experts, top_k, mode="random", seed=0):
        idx, w = make_routing(num_tokens, num_experts, top_k, mode, seed)
        return idx, w, build_plan(idx, w, num_experts)

    return build


@pytest.fixture
def guarded():
    """``guarded(shape, dtype, fill, data=None) -> (buffer, view)``: a view inside a larger buffer.

    The buffer extends the view by 3 elements on both sides of every dimension and is filled with
    ``fill`` (NaN for inputs, a sentinel for outputs); ``data`` is copied into the view.
    """

    def make(shape, dtype, fill, data=None, pad=3):
        big = torch.full(tuple(s + 2 * pad for s in shape), fill, dtype=dtype)
        view = big[tuple(slice(pad, pad + s) for s in shape)]
        if data is not None:
            view.copy_(data)
        return big, view

    return make


@pytest.fixture
def outside():
    """``outside(buffer, shape)``: the elements of a :func:`guarded` buffer that lie outside its view."""

    def pick(big, shape, pad=3):
        mask = torch.ones_like(big, dtype=torch.bool)
        mask[tuple(slice(pad, pad + s) for s in shape)] = False
        return big[mask]

    return pick
