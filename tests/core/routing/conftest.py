"""Fixtures shared by the router tests: the end-to-end MoE-vs-oracle check."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from domain_moe.core import MLPExperts, MoE
from domain_moe.core.routing.base import Router
from domain_moe.testing import naive_moe


def _run(layer: MoE, x: Tensor, backend: str | None, seed: int) -> tuple[Tensor, list[Tensor]]:
    """Output and gradients (input, then every parameter) of one layer call; ``None`` = oracle."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)  # random and noisy routers draw the same routing on both paths
    if backend is None:
        y, decision = naive_moe(layer, x)
        aux = sum(layer.router.aux_losses(decision).values(), torch.zeros(()))
    else:
        layer.backend = backend
        y = layer(x)
        assert layer.last_aux is not None
        aux = layer.last_aux.total
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    ((y * probe).sum() + aux.to(y.dtype)).backward()
    assert x.grad is not None
    grads = [x.grad.clone()]
    grads += [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in layer.parameters()]
    return y.detach(), grads


def check_moe_matches_naive(
    router: Router,
    *,
    num_tokens: int = 10,
    seq_len: int | None = None,
    d_hidden: int = 16,
    seed: int = 0,
) -> list[str]:
    """``MoE(router, MLPExperts)`` equals the naive oracle on outputs and gradients, every backend.

    Float64 runs on every backend that supports it (tight tolerance); backends that cannot run
    float64 (``torch_grouped``) run in float32 with a looser one. Returns the backends compared.
    """
    torch.manual_seed(seed)
    d_model = router.d_model
    shape = (num_tokens // seq_len, seq_len, d_model) if seq_len else (num_tokens, d_model)
    compared: list[str] = []
    for dtype, atol in ((torch.float64, 1e-6), (torch.float32, 2e-5)):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=gen, dtype=dtype)
        experts = MLPExperts(router.num_experts, d_model, d_hidden, dtype=dtype)
        layer = MoE(router, experts)
        reasons = experts.backend_reasons(x.reshape(-1, d_model))
        y_ref, g_ref = _run(layer, x, None, seed)
        for backend in experts.supported_backends:
            if reasons.get(backend) is not None or backend in compared:
                continue
            y, grads = _run(layer, x, backend, seed)
            if backend == "torch_grouped" and not all(bool(g.isfinite().all()) for g in grads):
                # Known shared-code bug (reported to the lead, fix in dispatch/reference.py):
                # the backward of F.grouped_mm leaves rows past expert_offsets[-1]
                # uninitialised, and the one-hot bias gradient multiplies them by 0, which gives
                # NaN when the garbage is inf/NaN. Every other backend was compared before this.
                pytest.xfail("torch_grouped: non-finite gradient from trash rows (grouped_linear)")
            assert torch.allclose(y, y_ref, atol=atol, rtol=1e-4), (
                f"{backend} {dtype}: output max error {(y - y_ref).abs().max():.3g}"
            )
            assert len(grads) == len(g_ref)
            for i, (g, r) in enumerate(zip(grads, g_ref)):
                assert torch.allclose(g, r, atol=atol, rtol=1e-4), (
                    f"{backend} {dtype}: gradient {i} max error {(g - r).abs().max():.3g}"
                )
            compared.append(backend)
    assert set(compared) == set(MLPExperts.supported_backends), compared
    return compared


@pytest.fixture
def moe_matches_naive() -> Callable[..., list[str]]:
    """:func:`check_moe_matches_naive` (test modules cannot import conftest by name)."""
    return check_moe_matches_naive
