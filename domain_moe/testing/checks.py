"""Conformance checks for routers and expert containers (in the spirit of gymnasium's ``check_env``)."""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence

import torch
from torch import Tensor

from domain_moe.core.dispatch.reference import build_plan
from domain_moe.core.experts.base import Experts
from domain_moe.core.routing.base import Router, count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["check_experts", "check_router"]


def _fail(owner: object, message: str) -> AssertionError:
    return AssertionError(f"{type(owner).__name__}: {message}")


def _route(router: Router, x: Tensor) -> RoutingDecision:
    return router(x)


def check_router(
    router: Router,
    num_tokens: int = 13,
    *,
    seq_len: int | None = None,
    weights_sum: float | None = None,
    seed: int = 0,
    check_gradient: bool = True,
) -> RoutingDecision:
    """Check that ``router`` honours the routing contract; raise ``AssertionError`` naming what broke.

    Checked, in training and eval mode: decision shapes and dtypes; ``-1`` slots carry weight exactly 0
    and valid indices lie in ``[0, E)``; no token gets the same expert twice; weights are finite and
    non-negative (and sum to ``weights_sum`` per routed token, when given); ``counts`` equal the
    histogram of ``topk_idx``; the gradient of the weights reaches the router's parameters; two calls
    under the same seed are identical; a state-dict round trip into a deep copy gives the same
    decision. Soft MoE routers are checked on their dispatch/combine weights instead.

    Args:
        router: the router to check.
        num_tokens: ``T`` of the random input (``B * L`` for sequence routers).
        seq_len: ``L`` for routers that need sequences (``needs_sequences``).
        weights_sum: expected per-token weight sum, or ``None`` to skip.
        seed: seed of the random input and of the router's randomness.
        check_gradient: whether the router has parameters the weights depend on.

    Returns:
        The training-mode decision, for further router-specific assertions.
    """
    d_model = router.d_model
    gen = torch.Generator().manual_seed(seed)
    if router.needs_sequences:
        length = seq_len or num_tokens
        x = torch.randn(max(num_tokens // length, 1), length, d_model, generator=gen)
    else:
        x = torch.randn(num_tokens, d_model, generator=gen)
    was_training = router.training
    decision = None
    for training in (True, False):
        router.train(training)
        torch.manual_seed(seed)
        d1 = _route(router, x)
        torch.manual_seed(seed)
        d2 = _route(router, x)
        for name in ("topk_idx", "topk_w", "counts", "dispatch_weights", "combine_weights"):
            a, b = getattr(d1, name), getattr(d2, name)
            if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
                raise _fail(router, f"{name} differs between two calls under the same seed (training={training})")
        _check_decision(router, d1, x, weights_sum)
        if training:
            decision = d1
    router.train(was_training)
    assert decision is not None
    if check_gradient and any(p.requires_grad for p in router.parameters()):
        router.zero_grad(set_to_none=True)
        router.train(True)
        torch.manual_seed(seed)
        d = _route(router, x)
        target = d.combine_weights if d.is_soft else d.topk_w
        assert target is not None
        probe = torch.randn(target.shape, generator=gen)
        loss = (target * probe).sum()
        if d.probs is not None:
            loss = loss + (d.probs * torch.randn(d.probs.shape, generator=gen)).sum()
        if not loss.requires_grad:
            raise _fail(router, "no gradient reaches the router parameters from the routing weights")
        loss.backward()
        grads = [p.grad for p in router.parameters() if p.requires_grad]
        if not any(g is not None and bool(g.abs().sum() > 0) for g in grads):
            raise _fail(router, "no gradient reaches the router parameters from the routing weights")
        router.zero_grad(set_to_none=True)
        router.train(was_training)
    buffer = io.BytesIO()
    torch.save(router.state_dict(), buffer)
    buffer.seek(0)
    twin = copy.deepcopy(router)
    for p in twin.parameters():
        torch.nn.init.normal_(p.data)
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    router.eval()
    twin.eval()
    torch.manual_seed(seed)
    a = _route(router, x)
    torch.manual_seed(seed)
    b = _route(twin, x)
    router.train(was_training)
    if not torch.equal(a.topk_idx, b.topk_idx) or not torch.equal(a.topk_w, b.topk_w):
        raise _fail(router, "a state-dict round trip changes the decision")
    return decision


def _check_decision(router: Router, d: RoutingDecision, x: Tensor, weights_sum: float | None) -> None:
    num_experts = router.num_experts
    if not isinstance(d, RoutingDecision):
        raise _fail(router, f"forward must return a RoutingDecision, got {type(d).__name__}")
    if d.num_experts != num_experts:
        raise _fail(router, f"decision.num_experts={d.num_experts}, router has {num_experts}")
    if d.counts.shape != (num_experts,) or d.counts.is_floating_point():
        raise _fail(
            router, f"counts must be an integer [E={num_experts}] tensor, got {d.counts.dtype} {tuple(d.counts.shape)}"
        )
    if d.is_soft:
        assert d.dispatch_weights is not None and d.combine_weights is not None
        batch, length = x.shape[0], x.shape[1]
        for name, w, dim in (("dispatch_weights", d.dispatch_weights, 1), ("combine_weights", d.combine_weights, 2)):
            if w.shape[:2] != (batch, length) or w.shape[-1] % num_experts:
                raise _fail(router, f"{name} must be [B, L, E*S], got {tuple(w.shape)}")
            if not torch.allclose(w.sum(dim), torch.ones(()), atol=1e-5):
                raise _fail(router, f"{name} must sum to 1 along dim {dim}")
        return
    idx, w = d.topk_idx, d.topk_w
    num_tokens = x.shape[0]
    if idx.dim() != 2 or idx.shape[0] != num_tokens or idx.dtype not in (torch.int64, torch.int32):
        raise _fail(router, f"topk_idx must be an int [T={num_tokens}, K] tensor, got {idx.dtype} {tuple(idx.shape)}")
    if w.shape != idx.shape or not w.is_floating_point():
        raise _fail(
            router, f"topk_w must be a float tensor shaped like topk_idx {tuple(idx.shape)}, got {tuple(w.shape)}"
        )
    if bool(((idx < -1) | (idx >= num_experts)).any()):
        raise _fail(router, f"topk_idx holds values outside [-1, {num_experts})")
    if bool((w[idx < 0] != 0).any()):
        raise _fail(router, "slots with topk_idx == -1 must have weight exactly 0")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise _fail(router, "topk_w must be finite and non-negative")
    valid = idx >= 0
    same = (idx.unsqueeze(-1) == idx.unsqueeze(-2)) & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    if bool((same.sum((-1, -2)) > valid.sum(-1)).any()):
        raise _fail(router, "a token was routed to the same expert in two slots")
    if not torch.equal(d.counts.long(), count_assignments(idx, num_experts)):
        raise _fail(router, "counts do not match the histogram of topk_idx")
    if weights_sum is not None:
        routed = valid.any(-1)
        sums = w.sum(-1)[routed].double()
        if not torch.allclose(sums, torch.full_like(sums, weights_sum), atol=1e-4):
            raise _fail(router, f"weights of routed tokens must sum to {weights_sum}")
    if d.capacity is not None and bool((d.counts > d.capacity).any()):
        raise _fail(router, f"an expert got more than capacity={d.capacity} rows")


def check_experts(
    experts: Experts,
    num_tokens: int = 11,
    top_k: int = 2,
    *,
    backends: Sequence[str] | None = None,
    seed: int = 0,
    atol: float = 1e-5,
) -> None:
    """Check an expert container against its own per-expert definition on every backend it supports.

    A random plan with an empty expert, ``-1`` slots and a crowded expert is built; for each backend the
    grouped outputs must equal ``forward_expert`` applied row by row (trash rows zero), gradients must
    reach every parameter of a used expert, and a state-dict round trip must reproduce the outputs.

    Args:
        experts: the container to check.
        num_tokens: ``T``.
        top_k: ``K`` (at most ``E``).
        backends: backends to check (default: all it declares).
        seed: seed of the input and the plan.
        atol: absolute tolerance.
    """
    gen = torch.Generator().manual_seed(seed)
    num_experts = experts.num_experts
    param = next(iter(experts.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.randn(num_tokens, experts.d_model, generator=gen, dtype=dtype)
    top_k = min(top_k, num_experts)
    scores = torch.rand(num_tokens, num_experts, generator=gen)
    if num_experts > 1:
        scores[:, -1] = -1.0  # the last expert gets no tokens
        scores[:, 0] += 2.0  # the first is crowded
    idx = scores.topk(top_k, dim=-1).indices
    idx[0, -1] = -1
    w = torch.rand(idx.shape, generator=gen, dtype=dtype).masked_fill(idx < 0, 0.0)
    plan = build_plan(idx, w, num_experts)
    expected = x.new_zeros(plan.num_rows, experts.d_out)
    expert_of_row = plan.row_expert()
    with torch.no_grad():
        for r in range(plan.num_rows):
            e = int(expert_of_row[r])
            if e < num_experts:
                expected[r] = experts.forward_expert(e, x[plan.sorted_token[r]].unsqueeze(0))[0]
    for backend in backends or experts.supported_backends:
        reason = experts.backend_reasons(x).get(backend)
        if reason is not None:
            continue
        experts.zero_grad(set_to_none=True)
        out = experts(x, plan, backend)
        if out.shape != expected.shape:
            raise _fail(experts, f"backend {backend!r} returned {tuple(out.shape)}, expected {tuple(expected.shape)}")
        if not torch.allclose(out, expected, atol=atol, rtol=1e-4):
            err = (out - expected).abs().max().item()
            raise _fail(experts, f"backend {backend!r} differs from forward_expert (max error {err:.3g})")
        out.sum().backward()
        if param is not None and all(p.grad is None for p in experts.parameters()):
            raise _fail(experts, f"backend {backend!r}: no gradient reaches the expert parameters")
    twin = copy.deepcopy(experts)
    for p in twin.parameters():
        torch.nn.init.normal_(p.data)
    twin.load_state_dict(experts.state_dict())
    backend = experts.supported_backends[0]
    with torch.no_grad():
        if not torch.equal(twin(x, plan, backend), experts(x, plan, backend)):
            raise _fail(experts, "a state-dict round trip changes the outputs")
