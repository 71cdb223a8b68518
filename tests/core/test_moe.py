import copy
import io

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from domain_moe.core import (
    GLUExperts,
    MLPExperts,
    ModuleListExperts,
    MoE,
    SharedExperts,
    TopKRouter,
    collect_aux,
    deepseek_moe,
    use_backend,
)
from domain_moe.core.dispatch.backend import ENV_VAR
from domain_moe.testing import naive_moe_forward

TORCH_BACKENDS = ("torch_loop", "torch_grouped", "bmm", "dense_all")


def _grads(module, x):
    return [x.grad.clone()] + [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]


def _run(layer, x, backend):
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    layer.backend = backend
    y = layer(x)
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    ((y * probe).sum() + layer.last_aux.total.to(y.dtype)).backward()
    return y.detach(), _grads(layer, x)


def _run_naive(layer, x):
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    decision = layer.router(x.reshape(-1, layer.d_model))
    y = naive_moe_forward(layer, x, decision)
    probe = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    aux = sum(layer.router.aux_losses(decision).values(), torch.zeros(()))
    loss = (y * probe).sum() + aux.to(y.dtype)
    if loss.requires_grad:  # every slot empty and no shared expert: the oracle builds no graph
        loss.backward()
    elif x.grad is None:
        x.grad = torch.zeros_like(x)
    return y.detach(), _grads(layer, x)


def _assert_close_all(a, b, atol, rtol=1e-5):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert torch.allclose(u, v, atol=atol, rtol=rtol), f"tensor {i}: max error {(u - v).abs().max():.3g}"


@st.composite
def moe_cases(draw):
    num_experts = draw(st.integers(1, 8))
    top_k = draw(st.integers(1, num_experts))
    num_tokens = draw(st.integers(1, 12))
    mode = draw(st.sampled_from(["random", "one_expert", "holes", "capacity", "all_experts"]))
    d_model = draw(st.sampled_from([4, 8, 12]))
    d_hidden = draw(st.sampled_from([4, 8, 16]))
    gated = draw(st.booleans())
    shared = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return num_experts, top_k, num_tokens, mode, d_model, d_hidden, gated, shared, seed


def _build(case, scripted_router, dtype):
    num_experts, top_k, num_tokens, mode, d_model, d_hidden, gated, shared, seed = case
    gen = torch.Generator().manual_seed(seed)
    if mode == "all_experts":
        top_k = num_experts
    if mode == "capacity":
        router = TopKRouter(d_model, num_experts, top_k, capacity_factor=0.5, drop_policy="position")
    else:
        scores = torch.rand(num_tokens, num_experts, generator=gen)
        if mode == "one_expert":
            scores[:, 0] += 10  # every token's first choice is expert 0; others may be empty
        idx = scores.topk(top_k, dim=-1).indices
        if mode == "holes":
            holes = torch.rand(idx.shape, generator=gen) < 0.4
            idx = idx.masked_fill(holes, -1)
        router = scripted_router(d_model, num_experts, idx)
    cls = GLUExperts if gated else MLPExperts
    experts = cls(num_experts, d_model, d_hidden)
    shared_mod = SharedExperts(d_model, d_hidden) if shared else None
    layer = MoE(router, experts, shared=shared_mod).to(dtype)
    x = torch.randn(num_tokens, d_model, generator=gen, dtype=dtype)
    return layer, x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=moe_cases())
def test_every_backend_equals_oracle_outputs_and_gradients(case, scripted_router):
    layer, x = _build(case, scripted_router, torch.float64)
    ref_y, ref_g = _run_naive(layer, x)
    for backend in ("torch_loop", "bmm", "dense_all"):
        y, g = _run(layer, x, backend)
        _assert_close_all([y], [ref_y], atol=1e-10)
        _assert_close_all(g, ref_g, atol=1e-10)
    # grouped_mm takes no float64: compare it in float32 against the float32 oracle.
    layer32 = copy.deepcopy(layer).float()
    x32 = x.float()
    if layer32.experts.backend_reasons(x32)["torch_grouped"] is None:
        ref_y, ref_g = _run_naive(layer32, x32)
        y, g = _run(layer32, x32, "torch_grouped")
        _assert_close_all([y], [ref_y], atol=1e-5)
        _assert_close_all(g, ref_g, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_two_seeded_runs_are_bitwise_equal(backend):
    def run():
        torch.manual_seed(123)
        layer = MoE(
            TopKRouter(16, 8, top_k=2, jitter_eps=0.1, capacity_factor=1.0, drop_policy="random"),
            MLPExperts(8, 16, 32),
            shared=SharedExperts(16, 32),
            backend=backend,
        )
        x = torch.randn(4, 9, 16, requires_grad=True)
        y = layer(x)
        (y.square().sum() + collect_aux(layer)).backward()
        return [y.detach(), x.grad] + [p.grad for p in layer.parameters()]

    a, b = run(), run()
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_module_list_experts_match_oracle_with_heterogeneous_experts(scripted_router):
    torch.manual_seed(0)
    experts = ModuleListExperts(
        [nn.Linear(6, 6), nn.Sequential(nn.Linear(6, 20), nn.Tanh(), nn.Linear(20, 6)), nn.Identity()], d_model=6
    ).double()
    idx = torch.tensor([[0, 1], [1, -1], [0, 1], [1, 0], [1, 0]])
    layer = MoE(scripted_router(6, 3, idx).double(), experts)  # expert 2 gets no token
    x = torch.randn(5, 6, dtype=torch.float64)
    ref_y, ref_g = _run_naive(layer, x)
    for backend in ("torch_loop", "dense_all"):
        y, g = _run(layer, x, backend)
        _assert_close_all([y], [ref_y], atol=1e-12)
        _assert_close_all(g, ref_g, atol=1e-12)


class _GraphExpert(nn.Module):
    """Not row-wise: mixes each node with its neighbours, like a one-layer GNN."""

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x, edge_index):
        agg = torch.zeros_like(x).index_add(0, edge_index[1], x[edge_index[0]])
        return self.lin(x + agg)


def test_non_row_wise_experts_run_on_dense_all_with_kwargs(scripted_router):
    torch.manual_seed(0)
    experts = ModuleListExperts([_GraphExpert(4) for _ in range(3)], d_model=4, row_wise=False).double()
    idx = torch.tensor([[0], [2], [2], [1], [0], [2]])
    layer = MoE(scripted_router(4, 3, idx).double(), experts)
    assert layer.resolve_backend(torch.zeros(1, 4)) == "dense_all"
    x = torch.randn(6, 4, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
    y = layer(x, edge_index=edge_index)
    ref = naive_moe_forward(layer, x, layer.router(x), edge_index=edge_index)
    assert torch.allclose(y, ref, atol=1e-12)
    with pytest.raises(ValueError, match="torch_loop"):
        MoE(
            scripted_router(4, 3, idx),
            ModuleListExperts([_GraphExpert(4)] * 3, 4, row_wise=False),
            backend="torch_loop",
        )(x.float(), edge_index=edge_index)


def test_leading_shape_is_kept_and_aux_recorded():
    layer = MoE(TopKRouter(8, 4, top_k=2), MLPExperts(4, 8, 16, d_out=5))
    y = layer(torch.randn(2, 3, 8))
    assert y.shape == (2, 3, 5)
    aux = layer.last_aux
    assert aux.num_tokens == 6 and int(aux.counts.sum()) == 12
    assert torch.allclose(aux.mean_k, torch.tensor(2.0))
    assert aux.router_entropy is not None and 0 < float(aux.router_entropy) <= float(torch.log(torch.tensor(4.0)))
    assert set(aux.losses) == {"balance", "z"}
    assert torch.allclose(collect_aux(layer), aux.total)


def test_collect_aux_sums_layers_and_ignores_unrun_layers():
    a = MoE(TopKRouter(8, 4, top_k=1), MLPExperts(4, 8, 16))
    b = MoE(TopKRouter(8, 4, top_k=1), MLPExperts(4, 8, 16))
    c = MoE(TopKRouter(8, 4, top_k=1), MLPExperts(4, 8, 16))
    model = nn.ModuleList([a, b, c])
    assert float(collect_aux(model)) == 0.0
    x = torch.randn(5, 8)
    a(x)
    b(x)
    assert torch.allclose(collect_aux(model), a.last_aux.total + b.last_aux.total)


def test_capacity_drops_show_in_aux_and_pass_zero():
    torch.manual_seed(0)
    layer = MoE(TopKRouter(8, 2, top_k=1, capacity_factor=0.5), MLPExperts(2, 8, 16))
    x = torch.randn(10, 8)
    y = layer(x)
    dropped = layer.router(x).topk_idx[:, 0] < 0
    assert dropped.any()
    assert torch.all(y[dropped] == 0)
    assert float(layer.last_aux.dropped_fraction) == pytest.approx(dropped.float().mean().item())


def test_backend_resolution_order(monkeypatch):
    layer = MoE(TopKRouter(8, 4, top_k=1), MLPExperts(4, 8, 16))
    x = torch.randn(3, 8)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert layer.resolve_backend(x) == "torch_grouped"
    monkeypatch.setenv(ENV_VAR, "bmm")
    assert layer.resolve_backend(x) == "bmm"
    with use_backend("dense_all"):
        assert layer.resolve_backend(x) == "dense_all"
        layer.backend = "torch_loop"
        assert layer.resolve_backend(x) == "torch_loop"
    layer.backend = "auto"
    monkeypatch.setenv(ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match=ENV_VAR):
        layer.resolve_backend(x)


def test_auto_falls_back_to_loop_when_grouped_mm_cannot_run():
    layer = MoE(TopKRouter(8, 4, top_k=1), MLPExperts(4, 8, 16)).double()
    assert layer.resolve_backend(torch.randn(3, 8, dtype=torch.float64)) == "torch_loop"
    odd = MoE(TopKRouter(5, 4, top_k=1), MLPExperts(4, 5, 16))
    assert odd.resolve_backend(torch.randn(3, 5)) == "torch_loop"


@pytest.mark.parametrize(
    ("backend", "x", "match"),
    [
        ("torch_grouped", torch.randn(3, 8, dtype=torch.float64), "grouped_mm takes"),
        ("triton", torch.randn(3, 8), "triton"),
    ],
)
def test_explicit_backend_that_cannot_run_raises(backend, x, match, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    layer = MoE(TopKRouter(8, 4, top_k=1), MLPExperts(4, 8, 16), backend=backend).to(x.dtype)
    with pytest.raises(ValueError, match=match):
        layer(x)


def test_explicit_backend_unsupported_by_experts_raises():
    layer = MoE(TopKRouter(8, 2, top_k=1), ModuleListExperts([nn.Linear(8, 8), nn.Linear(8, 8)], 8), backend="bmm")
    with pytest.raises(ValueError, match="not supported"):
        layer(torch.randn(3, 8))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: MoE(TopKRouter(8, 4), MLPExperts(3, 8, 16)), ValueError, "num_experts"),
        (lambda: MoE(TopKRouter(8, 4), MLPExperts(4, 6, 16)), ValueError, "d_model"),
        (lambda: MoE(TopKRouter(8, 4), MLPExperts(4, 8, 16), shared=SharedExperts(6, 16)), ValueError, "d_model"),
        (lambda: MoE(TopKRouter(8, 4), MLPExperts(4, 8, 16), backend="fast"), ValueError, "backend"),
        (lambda: MoE(nn.Linear(8, 4), MLPExperts(4, 8, 16)), TypeError, "router"),
        (lambda: MoE(TopKRouter(8, 4), nn.Linear(8, 8)), TypeError, "experts"),
    ],
)
def test_bad_construction_raises(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.randn(8), ValueError, "shape"),
        (torch.randn(3, 7), ValueError, "d_model=8"),
        (torch.randint(0, 3, (3, 8)), TypeError, "floating point"),
        (torch.randn(0, 8), ValueError, "no tokens"),
        (torch.full((3, 8), float("nan")), ValueError, "NaN"),
    ],
)
def test_bad_input_raises(x, error, match):
    layer = MoE(TopKRouter(8, 4, top_k=2), MLPExperts(4, 8, 16))
    with pytest.raises(error, match=match):
        layer(x)


def test_mismatched_module_list_expert_width_raises():
    experts = ModuleListExperts([nn.Linear(8, 8), nn.Linear(8, 5)], d_model=8)
    layer = MoE(TopKRouter(8, 2, top_k=2), experts)
    with pytest.raises(ValueError, match=r"experts\[1\]"):
        layer(torch.randn(4, 8))


def test_deepseek_pattern_with_shared_experts_and_bias_balancing():
    layer = deepseek_moe(d_model=16, d_hidden=8, num_experts=8, top_k=2, num_shared=2, num_groups=4, topk_groups=2)
    assert isinstance(layer.shared, SharedExperts) and layer.shared.num_shared == 2
    assert layer.router.score_fn == "sigmoid" and layer.router.bias_balancing
    layer.train()
    x = torch.randn(3, 5, 16)
    y = layer(x)
    assert y.shape == x.shape
    assert int(layer.router.load_accum.sum()) == 3 * 5 * 2
    ref = naive_moe_forward(layer, x, layer.router(x.reshape(-1, 16)))
    assert torch.allclose(y, ref, atol=1e-5)


def test_state_dict_round_trip_reproduces_outputs():
    layer = MoE(TopKRouter(8, 4, top_k=2), GLUExperts(4, 8, 16), shared=SharedExperts(8, 16)).eval()
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    twin = MoE(TopKRouter(8, 4, top_k=2), GLUExperts(4, 8, 16), shared=SharedExperts(8, 16)).eval()
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(6, 8)
    assert torch.equal(layer(x), twin(x))


@pytest.mark.parametrize(
    ("backend", "dtype"), [("torch_grouped", torch.bfloat16), ("bmm", torch.float32), ("dense_all", torch.float32)]
)
def test_compile_fullgraph_matches_eager(backend, dtype):
    # grouped_mm's fake kernel accepts bf16 only, so the compiled grouped path is checked in bf16.
    torch._dynamo.reset()
    layer = MoE(TopKRouter(16, 4, top_k=2), MLPExperts(4, 16, 32), backend=backend).to(dtype).eval()
    x = torch.randn(10, 16, dtype=dtype)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-6
    assert torch.allclose(compiled(x).float(), layer(x).float(), atol=tol)
