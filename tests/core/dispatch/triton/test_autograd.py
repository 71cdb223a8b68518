"""The differentiable Triton functions and the MoE layer on ``backend="triton"``: outputs and gradients
against the torch backends and the naive per-token oracle, torch.compile, determinism, and GPU-only checks
(bf16, CUDA-graph capture, bitwise reruns, the int64 offset path on large tensors)."""

from __future__ import annotations

import copy

import pytest
import torch

from domain_moe.core import GLUExperts, MLPExperts, MoE, SharedExperts, TopKRouter
from domain_moe.core.dispatch import reference
from domain_moe.core.dispatch.triton import autograd as tri
from domain_moe.core.dispatch.triton import launch
from domain_moe.core.dispatch.triton.reference_router import router_topk_reference
from domain_moe.testing import naive_moe_forward, only_cuda


def _grads(module, x):
    return [x.grad.clone()] + [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in module.parameters()]


def _probe(y):
    return torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=y.device).view_as(y)


def _run(layer, x, backend):
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    layer.backend = backend
    y = layer(x)
    ((y * _probe(y)).sum() + layer.last_aux.total.to(y.dtype)).backward()
    return y.detach(), _grads(layer, x)


def _run_naive(layer, x):
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    decision = layer.router(x.reshape(-1, layer.d_model))
    y = naive_moe_forward(layer, x, decision)
    aux = sum(layer.router.aux_losses(decision).values(), torch.zeros((), device=x.device))
    loss = (y * _probe(y)).sum() + aux.to(y.dtype)
    if loss.requires_grad:
        loss.backward()
    if x.grad is None:
        x.grad = torch.zeros_like(x)
    return y.detach(), _grads(layer, x)


def _assert_close_all(got, want, atol, rtol):
    assert len(got) == len(want)
    for i, (u, v) in enumerate(zip(got, want)):
        torch.testing.assert_close(u.float(), v.float(), atol=atol, rtol=rtol, msg=lambda m, i=i: f"tensor {i}: {m}")


def _assert_rel_close(got, want, tol):
    """Relative error in norm (for fp16 against an fp32 oracle)."""
    for i, (u, v) in enumerate(zip(got, want)):
        err = (u.float() - v.float()).norm() / v.float().norm().clamp_min(1e-3)
        assert err < tol, f"tensor {i}: relative error {err:.3g}"


def _layer(scripted_router, routing, case, dtype=torch.float32, device="cpu"):
    T, E, K, mode, D, H, gated, act, shared = case
    if mode == "capacity":
        router = TopKRouter(D, E, K, capacity_factor=0.5)
    else:
        idx, _ = routing(T, E, K, mode, seed=T + E + K)
        router = scripted_router(D, E, idx)
    cls = GLUExperts if gated else MLPExperts
    experts = cls(E, D, H, activation=act, bias=True)
    layer = MoE(router, experts, shared=SharedExperts(D, H) if shared else None).to(device=device, dtype=dtype)
    x = torch.randn(T, D, generator=torch.Generator().manual_seed(T * D), dtype=torch.float32).to(device, dtype)
    return layer, x


LAYER_CASES = [
    # (T, E, K, mode, D, H, gated, activation, shared)
    (33, 8, 2, "random", 24, 40, False, "gelu", False),
    (7, 3, 3, "random", 16, 24, True, "silu", True),  # top_k == num_experts
    (1, 3, 2, "random", 48, 16, False, "relu", True),
    (33, 3, 1, "one_expert", 24, 20, True, "gelu", False),  # every token on one expert, two empty
    (33, 8, 3, "holes", 16, 40, False, "gelu_tanh", False),  # -1 slots
    (7, 8, 2, "empty_experts", 24, 24, True, "gelu_tanh", False),
    (33, 3, 2, "capacity", 24, 40, False, "silu", False),  # TopKRouter(capacity_factor=0.5) drops
    (33, 1, 1, "random", 16, 24, False, "identity", False),
]


@pytest.mark.parametrize("case", LAYER_CASES, ids=lambda c: "-".join(map(str, c)))
def test_layer_equals_oracle_outputs_and_gradients_fp32(scripted_router, routing, case):
    layer, x = _layer(scripted_router, routing, case)
    ref_y, ref_g = _run_naive(layer, x)
    y, g = _run(layer, x, "triton")
    _assert_close_all([y], [ref_y], atol=1e-5, rtol=1e-4)
    _assert_close_all(g, ref_g, atol=1e-5, rtol=1e-4)
    # and the torch backends agree with it on the same layer
    y_loop, g_loop = _run(layer, x, "torch_loop")
    _assert_close_all([y, *g], [y_loop, *g_loop], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", [LAYER_CASES[4], LAYER_CASES[6], LAYER_CASES[1]], ids=["holes", "capacity", "glu"])
def test_layer_fp16_is_close_to_the_fp32_oracle(scripted_router, routing, case):
    layer, x = _layer(scripted_router, routing, case)
    ref_y, ref_g = _run_naive(layer, x)
    half = copy.deepcopy(layer).half()
    y, g = _run(half, x.half(), "triton")
    assert y.dtype == torch.float16
    _assert_rel_close([y, *g], [ref_y, *ref_g], tol=1e-2)


def _mlp_weights(E, D, H, gated, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    width = 2 * H if gated else H

    def p(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype).requires_grad_(True)

    return p(E, width, D, scale=D**-0.5), p(E, width, scale=0.1), p(E, D, H, scale=H**-0.5), p(E, D, scale=0.1)


@pytest.mark.parametrize(
    ("T", "E", "K", "mode", "gated", "act", "bias", "init"),
    [(33, 3, 2, "holes", False, "gelu", True, True), (7, 8, 3, "capacity", True, "silu", False, False)],
)
def test_moe_mlp_equals_expert_mlp_plus_combine(plan_for, T, E, K, mode, gated, act, bias, init):
    D, H = 24, 20
    _, w0, plan = plan_for(T, E, K, mode)
    w1, b1, w2, b2 = _mlp_weights(E, D, H, gated)
    b1, b2 = (b1, b2) if bias else (None, None)
    x = torch.randn(T, D, requires_grad=True)
    weight = w0.clone().requires_grad_(True)
    start = torch.randn(T, D, requires_grad=True) if init else None
    inputs = [t for t in (x, weight, w1, b1, w2, b2, start) if t is not None]
    dout = torch.randn(T, D)

    fused = tri.moe_mlp(x, weight, plan, w1, b1, w2, b2, activation=act, glu=gated, init=start)
    g_fused = torch.autograd.grad(fused, inputs, dout)
    rows = tri.expert_mlp(x, plan, w1, b1, w2, b2, activation=act, glu=gated)
    split = reference.combine(rows, weight, plan, start)
    g_split = torch.autograd.grad(split, inputs, dout)
    # the torch definition of the same function
    experts = (GLUExperts if gated else MLPExperts)(E, D, H, activation=act, bias=bias)
    with torch.no_grad():
        experts.w1.copy_(w1)
        experts.w2.copy_(w2)
        if bias:
            experts.b1.copy_(b1)
            experts.b2.copy_(b2)
    ref = reference.combine(experts(x, plan, "torch_loop"), weight, plan, start)
    params = [experts.w1, experts.b1, experts.w2, experts.b2] if bias else [experts.w1, experts.w2]
    ref_inputs = [x, weight, *params] + ([start] if init else [])
    g_ref = torch.autograd.grad(ref, ref_inputs, dout)
    _assert_close_all([fused, split], [ref, ref], atol=1e-5, rtol=1e-4)
    _assert_close_all(g_fused, g_ref, atol=1e-5, rtol=1e-4)
    _assert_close_all(g_split, g_ref, atol=1e-5, rtol=1e-4)


def test_combine_and_gather_twins_match_reference_autograd(plan_for):
    T, D = 33, 24
    _, w0, plan = plan_for(T, 8, 3, "holes")
    rows = torch.randn(plan.num_rows, D, requires_grad=True)
    weight = w0.clone().requires_grad_(True)
    init = torch.randn(T, D, requires_grad=True)
    x = torch.randn(T, D, requires_grad=True)
    dout, drows = torch.randn(T, D), torch.randn(plan.num_rows, D)
    got = torch.autograd.grad(tri.combine(rows, weight, plan, init), [rows, weight, init], dout)
    want = torch.autograd.grad(reference.combine(rows, weight, plan, init), [rows, weight, init], dout)
    _assert_close_all(got, want, atol=1e-6, rtol=1e-5)
    g_rows = tri.gather_rows(x, plan)
    assert torch.equal(g_rows, reference.gather_rows(x, plan))
    (got_dx,) = torch.autograd.grad(g_rows, x, drows)
    (want_dx,) = torch.autograd.grad(reference.gather_rows(x, plan), x, drows)
    _assert_close_all([got_dx], [want_dx], atol=1e-6, rtol=1e-5)


def test_only_requested_gradients_are_computed(plan_for):
    _, _, plan = plan_for(7, 3, 2, "random")
    w1, b1, w2, b2 = (t.detach() for t in _mlp_weights(3, 16, 16, False))
    w2.requires_grad_(True)
    x = torch.randn(7, 16)
    rows = tri.expert_mlp(x, plan, w1, b1, w2, b2)
    (dw2,) = torch.autograd.grad(rows.sum(), [w2])
    assert dw2.shape == w2.shape and w1.grad is None and x.grad is None


def test_two_runs_are_bitwise_equal(scripted_router, routing):
    layer, x = _layer(scripted_router, routing, LAYER_CASES[0])
    a = _run(layer, x, "triton")
    b = _run(layer, x, "triton")
    for u, v in zip([a[0], *a[1]], [b[0], *b[1]]):
        assert torch.equal(u, v)


def test_bad_input_raises_clear_errors(plan_for):
    _, _, plan = plan_for(7, 3, 2, "random")
    w1, b1, w2, b2 = _mlp_weights(4, 16, 16, False)
    with pytest.raises(ValueError, match="routes to 3 experts but the weights hold 4"):
        tri.expert_mlp(torch.randn(7, 16), plan, w1, b1, w2, b2)
    w1, b1, w2, b2 = _mlp_weights(3, 16, 16, False)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        tri.expert_mlp(torch.randn(7, 16, dtype=torch.float64), plan, w1.double(), None, w2.double(), None)
    with pytest.raises(TypeError, match="plan must be a DispatchPlan"):
        tri.combine(torch.randn(14, 4), torch.rand(7, 2), object())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_layer_in_an_unsupported_dtype_on_triton_raises(dtype):
    layer = MoE(TopKRouter(8, 3, top_k=2), MLPExperts(3, 8, 16), backend="triton").to(dtype)
    with pytest.raises(ValueError, match="backend='triton' cannot run here"):
        layer(torch.randn(5, 8, dtype=dtype))


# --------------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------------


def test_compile_fullgraph_of_the_fused_functions_matches_eager(routing):
    idx, w0 = routing(7, 3, 2, "holes")
    w1, b1, w2, b2 = _mlp_weights(3, 16, 16, True)

    def fn(x, weight, w1, b1, w2, b2):
        plan = reference.build_plan(idx, weight.detach(), 3)
        a = tri.moe_mlp(x, weight, plan, w1, b1, w2, b2, activation="silu", glu=True)
        b = tri.combine(tri.expert_mlp(x, plan, w1, b1, w2, b2, activation="silu", glu=True), weight, plan)
        return a + b

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=False)
    x = torch.randn(7, 16, requires_grad=True)
    weight = w0.clone().requires_grad_(True)
    inputs = [x, weight, w1, b1, w2, b2]
    eager = fn(*inputs)
    g_eager = torch.autograd.grad(eager.square().sum(), inputs)
    comp = compiled(*inputs)
    g_comp = torch.autograd.grad(comp.square().sum(), inputs)
    _assert_close_all([comp, *g_comp], [eager, *g_eager], atol=1e-6, rtol=1e-6)


def test_compile_fullgraph_of_the_layer_matches_eager():
    torch._dynamo.reset()
    layer = MoE(TopKRouter(16, 4, top_k=2), GLUExperts(4, 16, 16, bias=True), backend="triton")
    x = torch.randn(9, 16, requires_grad=True)
    eager = layer(x)
    (g_eager,) = torch.autograd.grad(eager.square().sum(), x)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager", dynamic=False)
    comp = compiled(x)
    (g_comp,) = torch.autograd.grad(comp.square().sum(), x)
    _assert_close_all([comp, g_comp], [eager, g_eager], atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# GPU only
# --------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@only_cuda
@pytest.mark.parametrize("gated", [False, True])
def test_gpu_bf16_layer_matches_torch_backends(routing, scripted_router, gated):
    case = (4096, 8, 2, "holes", 256, 512, gated, "silu" if gated else "gelu", False)
    layer, x = _layer(scripted_router, routing, case, device="cuda")
    ref_y, ref_g = _run(layer, x, "torch_loop")  # fp32 torch reference
    bf = copy.deepcopy(layer).bfloat16()
    y, g = _run(bf, x.bfloat16(), "triton")
    y_t, g_t = _run(bf, x.bfloat16(), "torch_loop")
    _assert_rel_close([y, *g], [ref_y, *ref_g], tol=3e-2)
    _assert_rel_close([y, *g], [y_t, *g_t], tol=3e-2)


@pytest.mark.gpu
@only_cuda
def test_gpu_runs_are_bitwise_identical(routing, scripted_router):
    layer, x = _layer(scripted_router, routing, (8192, 8, 2, "random", 512, 1024, True, "silu", True), device="cuda")
    layer = layer.bfloat16()
    a = _run(layer, x.bfloat16(), "triton")
    b = _run(layer, x.bfloat16(), "triton")
    for u, v in zip([a[0], *a[1]], [b[0], *b[1]]):
        assert torch.equal(u, v)


@pytest.mark.gpu
@only_cuda
def test_gpu_cuda_graph_capture_of_forward_and_backward():
    torch.manual_seed(0)
    layer = MoE(TopKRouter(128, 8, top_k=2), GLUExperts(8, 128, 256, bias=True), backend="triton").cuda().bfloat16()
    static_x = torch.randn(2048, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)

    def step():
        y = layer(static_x)
        (y.float().square().mean() + layer.last_aux.total).backward()
        return y

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # autotuning and allocator warm-up happen outside the capture
            layer.zero_grad(set_to_none=True)
            static_x.grad = None
            step()
    torch.cuda.current_stream().wait_stream(side)
    layer.zero_grad(set_to_none=True)
    static_x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = step()
    new_x = torch.randn_like(static_x)
    static_x.data.copy_(new_x)
    graph.replay()
    torch.cuda.synchronize()
    graph_y, graph_dx = static_y.clone(), static_x.grad.clone()
    eager_x = new_x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    y = layer(eager_x)
    (y.float().square().mean() + layer.last_aux.total).backward()
    assert torch.equal(graph_y, y.detach())
    assert torch.equal(graph_dx, eager_x.grad)


@pytest.mark.gpu
@only_cuda
def test_gpu_int64_offsets_on_large_tensors():
    # rows x width >= 2**31 elements: 32-bit offsets would wrap around.
    T, D, E, N = 2**19 + 37, 32, 2, 4096
    dev, dt = "cuda", torch.float16
    idx = (torch.arange(T, device=dev) % E).view(T, 1)
    weight = torch.rand(T, 1, device=dev, dtype=dt)
    plan = reference.build_plan(idx, weight, E)
    x = torch.randn(T, D, device=dev, dtype=dt)
    w = torch.randn(E, N, D, device=dev, dtype=dt) * D**-0.5
    block_m = launch.pick_block_m(plan.num_rows, E)
    table = launch.tile_table(plan.expert_offsets, plan.num_rows, block_m)
    out, _ = launch.grouped_gemm_fwd(x, w, table, block_m=block_m, gather_index=plan.sorted_token)
    assert out.numel() >= 2**31
    probe = torch.tensor([0, 1, plan.num_rows // 2, plan.num_rows - 2, plan.num_rows - 1], device=dev)
    expert = plan.row_expert()[probe]
    want = torch.einsum("rk,rnk->rn", x[plan.sorted_token[probe]].float(), w[expert].float())
    torch.testing.assert_close(out[probe].float(), want, atol=2e-2, rtol=1e-2)
    comb = launch.combine_fwd(out, plan.row_of_slot, weight=weight)
    tokens = plan.sorted_token[probe]
    want_comb = out[probe].float() * weight[tokens].float()
    torch.testing.assert_close(comb[tokens].float(), want_comb, atol=2e-2, rtol=1e-2)
    gathered = launch.gather_rows_fwd(comb, plan.sorted_token, plan.expert_offsets)
    assert torch.equal(gathered[probe], comb[tokens])
    dw, _ = launch.grouped_gemm_wgrad(x, out, plan.expert_offsets, gather_index=plan.sorted_token, gather_x=True)
    rows = slice(int(plan.expert_offsets[1]), int(plan.expert_offsets[2]))
    want_dw = out[rows, :8].float().T @ x[plan.sorted_token[rows]].float()
    torch.testing.assert_close(dw[1, :8].float(), want_dw, atol=1.0, rtol=2e-2)


@pytest.mark.gpu
@only_cuda
@pytest.mark.parametrize("gated", [False, True])
def test_gpu_fused_functions_and_router_match_references(gated):
    # fp32 on CUDA (TF32 off, as in torch): the compiled kernels, including the ones the layer does not use
    # (fused combine, router-weight gradient, weighted gather, router top-k).
    torch.manual_seed(0)
    T, E, K, D, H = 3000, 16, 2, 96, 160
    logits = torch.randn(T, E, device="cuda")
    got = launch.router_topk(logits, K)
    ref = router_topk_reference(logits, K)
    assert torch.equal(got.topk_idx, ref.topk_idx) and torch.equal(got.counts, ref.counts)
    torch.testing.assert_close(got.topk_w, ref.topk_w)
    torch.testing.assert_close(got.prob_sum, ref.prob_sum, atol=1e-3, rtol=1e-5)
    plan = reference.build_plan(got.topk_idx, got.topk_w, E)
    w1, b1, w2, b2 = (t.detach().cuda().requires_grad_(True) for t in _mlp_weights(E, D, H, gated))
    x = torch.randn(T, D, device="cuda", requires_grad=True)
    weight = got.topk_w.clone().requires_grad_(True)
    inputs = [x, weight, w1, b1, w2, b2]
    dout = torch.randn(T, D, device="cuda")
    fused = tri.moe_mlp(x, weight, plan, w1, b1, w2, b2, activation="silu", glu=gated)
    g_fused = torch.autograd.grad(fused, inputs, dout)
    twin = tri.combine(tri.expert_mlp(x, plan, w1, b1, w2, b2, activation="silu", glu=gated), weight, plan)
    g_twin = torch.autograd.grad(twin, inputs, dout)
    experts = (GLUExperts if gated else MLPExperts)(E, D, H, activation="silu", bias=True).cuda()
    with torch.no_grad():
        for p, v in zip((experts.w1, experts.b1, experts.w2, experts.b2), (w1, b1, w2, b2)):
            p.copy_(v)
    want = reference.combine(experts(x, plan, "torch_loop"), weight, plan)
    g_want = torch.autograd.grad(want, [x, weight, experts.w1, experts.b1, experts.w2, experts.b2], dout)
    _assert_close_all([fused, *g_fused], [want, *g_want], atol=1e-4, rtol=1e-4)
    _assert_close_all([twin, *g_twin], [want, *g_want], atol=1e-4, rtol=1e-4)
