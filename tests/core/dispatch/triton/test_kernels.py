"""Each kernel (through its launcher) against a float64 torch reference, on tiny odd shapes, fp32 and fp16;
NaN guard regions around inputs and sentinel guards around outputs; the int64 offset path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from domain_moe.core.dispatch import reference
from domain_moe.core.dispatch.triton import launch
from domain_moe.core.dispatch.triton.reference_router import router_topk_reference
from domain_moe.core.routing.top_k import TopKRouter

ACTS = {
    "identity": lambda z: z,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
}
TOL = {torch.float32: {"atol": 2e-5, "rtol": 2e-5}, torch.float16: {"atol": 2e-2, "rtol": 1e-2}}
BM = 16


def _randn(*shape, dtype, scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(dtype)


def _expert_slices(plan):
    offs = plan.expert_offsets.tolist()
    return [slice(offs[e], offs[e + 1]) for e in range(len(offs) - 1)]


def _ref_gemm(x, w, plan, *, bias=None, gather=True, scale=None, trans=False, act="identity", glu=False):
    """float64 reference of grouped_gemm_fwd: ``(out, preact)``, trash rows zero."""
    rows = (x[plan.sorted_token] if gather else x).double()
    weight = (w.transpose(1, 2) if trans else w).double()
    pre = torch.zeros(rows.shape[0], weight.shape[1], dtype=torch.float64)
    for e, sl in enumerate(_expert_slices(plan)):
        pre[sl] = rows[sl] @ weight[e].T
        if scale is not None:
            pre[sl] *= scale[sl, None].double()
        if bias is not None:
            pre[sl] += bias[e].double()
    pre = pre.to(x.dtype).double()  # the kernel applies the activation to the stored pre-activation
    if glu:
        gate, up = pre.chunk(2, dim=-1)
        out = ACTS[act](gate) * up
    else:
        out = ACTS[act](pre)
    return out, pre


def _dact_ref(z, du, act, glu):
    z = z.double().requires_grad_(True)
    if glu:
        gate, up = z.chunk(2, dim=-1)
        h = ACTS[act](gate) * up
    else:
        h = ACTS[act](z)
    (dz,) = torch.autograd.grad(h, z, du.double())
    return dz


def _close(got, want, dtype, scale=1.0):
    tol = TOL[dtype]
    torch.testing.assert_close(got.double(), want.double(), atol=tol["atol"] * scale, rtol=tol["rtol"])


# --------------------------------------------------------------------------------------------------
# grouped GEMM, forward epilogue
# --------------------------------------------------------------------------------------------------

GEMM_CASES = [
    # (T, E, K, mode, D, H, act, glu, bias, gather, scale)
    (33, 3, 2, "random", 24, 40, "gelu", False, True, True, False),
    (7, 8, 3, "empty_experts", 16, 48, "silu", True, False, True, False),
    (33, 1, 1, "random", 48, 24, "relu", False, True, True, True),
    (7, 3, 1, "one_expert", 24, 20, "gelu_tanh", True, True, True, False),
    (33, 8, 2, "holes", 16, 40, "identity", False, False, False, True),
    (1, 3, 3, "random", 24, 16, "gelu", True, True, True, True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("T", "E", "K", "mode", "D", "H", "act", "glu", "bias", "gather", "scale"), GEMM_CASES)
def test_grouped_gemm_fwd_matches_reference(plan_for, dtype, T, E, K, mode, D, H, act, glu, bias, gather, scale):
    _, _, plan = plan_for(T, E, K, mode)
    A = plan.num_rows
    width = 2 * H if glu else H
    x = _randn(T if gather else A, D, dtype=dtype, seed=1)
    w = _randn(E, width, D, dtype=dtype, scale=D**-0.5, seed=2)
    b = _randn(E, width, dtype=dtype, seed=3) if bias else None
    s = (torch.rand(A) + 0.5).to(dtype) if scale else None
    table = launch.tile_table(plan.expert_offsets, A, BM)
    out, z = launch.grouped_gemm_fwd(
        x, w, table, block_m=BM, bias=b, gather_index=plan.sorted_token if gather else None, row_scale=s,
        activation=act, glu=glu, store_preact=True,
    )  # fmt: skip
    ref_out, ref_z = _ref_gemm(x, w, plan, bias=b, gather=gather, scale=s, act=act, glu=glu)
    assert out.shape == (A, H) and z.shape == (A, width) and out.dtype == dtype
    _close(z, ref_z, dtype)
    _close(out, ref_out, dtype)
    trash = plan.expert_offsets[-1]
    assert torch.all(out[trash:] == 0) and torch.all(z[trash:] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_grouped_gemm_fwd_transposed_weight(plan_for, dtype):
    # dX_rows = dZ @ W1: the weight read as [E, K, N] through its strides.
    _, _, plan = plan_for(33, 3, 2, "holes")
    A, D, H = plan.num_rows, 24, 40
    dz = _randn(A, H, dtype=dtype, seed=1)
    w1 = _randn(3, H, D, dtype=dtype, scale=H**-0.5, seed=2)
    table = launch.tile_table(plan.expert_offsets, A, BM)
    out, z = launch.grouped_gemm_fwd(dz, w1, table, block_m=BM, trans_weight=True)
    assert z is None
    ref, _ = _ref_gemm(dz, w1, plan, gather=False, trans=True)
    _close(out, ref, dtype)


# --------------------------------------------------------------------------------------------------
# grouped GEMM, activation-derivative epilogue
# --------------------------------------------------------------------------------------------------

BWD_CASES = [
    # (T, E, K, mode, D_out, H, act, glu, gather_scale)
    (33, 3, 2, "random", 24, 40, "gelu", False, False),
    (7, 8, 3, "holes", 16, 24, "silu", True, True),
    (33, 1, 1, "random", 48, 20, "gelu_tanh", False, True),
    (7, 3, 2, "empty_experts", 24, 16, "relu", True, False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("T", "E", "K", "mode", "D_out", "H", "act", "glu", "gather_scale"), BWD_CASES)
def test_grouped_gemm_bwd_matches_reference(plan_for, dtype, T, E, K, mode, D_out, H, act, glu, gather_scale):
    _, _, plan = plan_for(T, E, K, mode)
    A = plan.num_rows
    width = 2 * H if glu else H
    w2 = _randn(E, D_out, H, dtype=dtype, scale=D_out**-0.5, seed=2)
    z = _randn(A, width, dtype=dtype, seed=3)
    table = launch.tile_table(plan.expert_offsets, A, BM)
    if gather_scale:
        g = _randn(T, D_out, dtype=dtype, seed=1)
        s = (torch.rand(A) + 0.5).to(dtype)
        dz = launch.grouped_gemm_bwd(
            g, w2, z, table, block_m=BM, gather_index=plan.sorted_token, row_scale=s, activation=act, glu=glu
        )
        rows = g[plan.sorted_token].double() * s[:, None].double()
    else:
        g = _randn(A, D_out, dtype=dtype, seed=1)
        dz = launch.grouped_gemm_bwd(g, w2, z, table, block_m=BM, activation=act, glu=glu)
        rows = g.double()
    du = torch.zeros(A, H, dtype=torch.float64)
    for e, sl in enumerate(_expert_slices(plan)):
        du[sl] = rows[sl].to(dtype).double() @ w2[e].double()
    want = _dact_ref(z, du.to(dtype), act, glu)
    want[plan.expert_offsets[-1] :] = 0
    _close(dz, want, dtype, scale=4.0)


# --------------------------------------------------------------------------------------------------
# weight-gradient GEMM (varlen-K)
# --------------------------------------------------------------------------------------------------

WGRAD_CASES = [
    # (T, E, K, mode, N, K_DIM, gather_x, gather_grad_scaled, bias)
    (33, 3, 2, "random", 40, 24, True, False, True),
    (33, 8, 3, "empty_experts", 24, 48, False, True, True),
    (7, 3, 1, "one_expert", 16, 40, False, False, False),
    (1, 8, 2, "holes", 20, 16, True, False, True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("T", "E", "K", "mode", "N", "K_DIM", "gather_x", "gather_g", "bias"), WGRAD_CASES)
def test_grouped_gemm_wgrad_matches_reference(plan_for, dtype, T, E, K, mode, N, K_DIM, gather_x, gather_g, bias):
    _, _, plan = plan_for(T, E, K, mode)
    A = plan.num_rows
    x = _randn(T if gather_x else A, K_DIM, dtype=dtype, seed=1)
    g = _randn(T if gather_g else A, N, dtype=dtype, seed=2)
    s = (torch.rand(A) + 0.5).to(dtype) if gather_g else None
    dw, db = launch.grouped_gemm_wgrad(
        x, g, plan.expert_offsets, gather_index=plan.sorted_token, gather_x=gather_x, gather_grad=gather_g,
        grad_scale=s, with_bias=bias,
    )  # fmt: skip
    xr = (x[plan.sorted_token] if gather_x else x).double()
    gr = g[plan.sorted_token].double() * s[:, None].double() if gather_g else g.double()
    gr = gr.to(dtype).double()
    want_w = torch.zeros(E, N, K_DIM, dtype=torch.float64)
    want_b = torch.zeros(E, N, dtype=torch.float64)
    for e, sl in enumerate(_expert_slices(plan)):
        want_w[e] = gr[sl].T @ xr[sl]
        want_b[e] = gr[sl].sum(0)
    _close(dw, want_w, dtype, scale=4.0)
    if bias:
        _close(db, want_b, dtype, scale=4.0)
    else:
        assert db is None
    empty = plan.counts == 0
    assert torch.all(dw[empty] == 0)


# --------------------------------------------------------------------------------------------------
# combine, router-weight gradient, gather
# --------------------------------------------------------------------------------------------------

ROUTES = [(1, 3, 2, "random"), (7, 8, 3, "holes"), (33, 3, 1, "capacity"), (33, 1, 1, "random")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("T", "E", "K", "mode"), ROUTES)
def test_combine_and_gather_match_reference(plan_for, dtype, T, E, K, mode):
    idx, w, plan = plan_for(T, E, K, mode)
    D = 24
    w = w.to(dtype)
    rows = _randn(plan.num_rows, D, dtype=dtype, seed=1)
    init = _randn(T, D, dtype=dtype, seed=2)
    x = _randn(T, D, dtype=dtype, seed=3)
    dout = _randn(T, D, dtype=dtype, seed=4)
    # combine with weights and init, and the unit-weight combine (the gather's backward)
    _close(launch.combine_fwd(rows, plan.row_of_slot, weight=w, init=init),
           reference.combine(rows.double(), w.double(), plan, init.double()), dtype)  # fmt: skip
    ones = torch.ones(T, K, dtype=torch.float64)
    _close(launch.gather_rows_bwd(rows, plan.row_of_slot), reference.combine(rows.double(), ones, plan), dtype)
    # router-weight gradient: d/dw <dout, combine(rows, w)>
    w64 = w.double().requires_grad_(True)
    (want_dw,) = torch.autograd.grad(reference.combine(rows.double(), w64, plan), w64, dout.double())
    dw = launch.combine_bwd(dout, rows, plan.row_of_slot)
    assert dw.dtype == torch.float32
    _close(dw, want_dw, dtype, scale=4.0)
    assert torch.all(dw[idx < 0] == 0)
    # the gather, plain and weighted (the combine's rows gradient)
    gathered = launch.gather_rows_fwd(x, plan.sorted_token, plan.expert_offsets)
    assert torch.equal(gathered, reference.gather_rows(x, plan))
    weighted = launch.gather_rows_fwd(
        dout, plan.sorted_token, plan.expert_offsets, weight=w, slot_of_row=plan.slot_of_row
    )
    rows64 = rows.double().requires_grad_(True)
    (want_rows,) = torch.autograd.grad(reference.combine(rows64, w.double(), plan), rows64, dout.double())
    _close(weighted, want_rows, dtype)


def test_combine_is_bitwise_reproducible(plan_for):
    _, w, plan = plan_for(33, 8, 3, "random")
    rows = _randn(plan.num_rows, 48, dtype=torch.float32)
    a = launch.combine_fwd(rows, plan.row_of_slot, weight=w)
    b = launch.combine_fwd(rows, plan.row_of_slot, weight=w)
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------
# fused router
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("T", "E", "K", "score_fn", "bias", "cf"),
    [
        (33, 8, 2, "softmax", False, None),
        (7, 3, 3, "softmax", False, None),
        (33, 3, 1, "softmax", False, 0.5),
        (7, 8, 1, "sigmoid", True, None),
        (1, 8, 3, "sigmoid", False, None),
        (33, 1, 1, "softmax", False, None),
    ],
)
def test_router_topk_matches_top_k_router(T, E, K, score_fn, bias, cf):
    router = TopKRouter(16, E, K, score_fn=score_fn, bias_balancing=bias, capacity_factor=cf, route_scale=1.5)
    if bias:
        router.selection_bias.copy_(torch.randn(E) * 0.1)
    x = torch.randn(T, 16)
    decision = router(x)
    logits = decision.logits.detach()
    renorm = router.renorm and (K > 1 or score_fn == "sigmoid")
    got = launch.router_topk_fwd(
        logits, K, score_fn=score_fn, renorm=renorm, route_scale=1.5,
        selection_bias=router.selection_bias if bias else None,
    )  # fmt: skip
    ref_idx, ref_w, _ = router.select(logits)
    assert torch.equal(got.topk_idx, ref_idx)
    torch.testing.assert_close(got.topk_w, ref_w.detach(), atol=1e-6, rtol=1e-5)
    assert torch.equal(got.counts, decision.extras["selected_counts"])
    # the loss statistics reproduce TopKRouter's z-loss and Switch balance loss
    aux = router.aux_losses(decision)
    torch.testing.assert_close(router.z_coef * got.lse.square().mean(), aux["z"].detach())
    frac = got.counts.float() / (T * K)
    balance = router.balance_coef * E * (frac * got.prob_sum / T).sum()
    torch.testing.assert_close(balance, aux["balance"].detach())
    ref = router_topk_reference(logits, K, score_fn=score_fn, renorm=renorm, route_scale=1.5,
                                selection_bias=router.selection_bias if bias else None)  # fmt: skip
    torch.testing.assert_close(got.prob_sum, ref.prob_sum)
    torch.testing.assert_close(got.lse, ref.lse)


# --------------------------------------------------------------------------------------------------
# guard regions: kernels never read outside their inputs' views nor write outside their outputs'
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gemm_kernels_respect_guard_regions(plan_for, guarded, outside, dtype):
    nan, sentinel = float("nan"), 1234.0
    T, E, D, H = 7, 3, 24, 20
    _, _, plan = plan_for(T, E, 2, "holes")
    A = plan.num_rows
    table = launch.tile_table(plan.expert_offsets, A, BM)
    _, x = guarded((T, D), dtype, nan, _randn(T, D, dtype=dtype, seed=1))
    _, w1 = guarded((E, 2 * H, D), dtype, nan, _randn(E, 2 * H, D, dtype=dtype, scale=0.2, seed=2))
    _, b1 = guarded((E, 2 * H), dtype, nan, _randn(E, 2 * H, dtype=dtype, seed=3))
    _, scale = guarded((A,), dtype, nan, torch.rand(A).to(dtype))
    out_big, out = guarded((A, H), dtype, sentinel)
    z_big, z = guarded((A, 2 * H), dtype, sentinel)
    launch.grouped_gemm_fwd(
        x, w1, table, block_m=BM, bias=b1, gather_index=plan.sorted_token, row_scale=scale, activation="silu",
        glu=True, store_preact=True, out=out, preact_out=z,
    )  # fmt: skip
    want, want_z = _ref_gemm(x, w1, plan, bias=b1, scale=scale, act="silu", glu=True)
    _close(out, want, dtype)
    _close(z, want_z, dtype)
    # backward epilogue into a guarded output, from a guarded per-token gradient
    _, w2 = guarded((E, D, H), dtype, nan, _randn(E, D, H, dtype=dtype, scale=0.2, seed=4))
    _, g = guarded((T, D), dtype, nan, _randn(T, D, dtype=dtype, seed=5))
    dz_big, dz = guarded((A, 2 * H), dtype, sentinel)
    launch.grouped_gemm_bwd(g, w2, z, table, block_m=BM, gather_index=plan.sorted_token, row_scale=scale,
                            activation="silu", glu=True, out=dz)  # fmt: skip
    # weight gradient into guarded outputs
    dw_big, dw = guarded((E, 2 * H, D), dtype, sentinel)
    db_big, db = guarded((E, 2 * H), dtype, sentinel)
    launch.grouped_gemm_wgrad(x, dz, plan.expert_offsets, gather_index=plan.sorted_token, gather_x=True,
                              with_bias=True, out=dw, bias_out=db)  # fmt: skip
    for big, view in ((out_big, out), (z_big, z), (dz_big, dz), (dw_big, dw), (db_big, db)):
        assert not torch.isnan(view).any()
        assert torch.all(outside(big, view.shape) == sentinel)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_combine_and_gather_respect_guard_regions(plan_for, guarded, outside, dtype):
    nan, sentinel = float("nan"), -77.0
    T, E, K, D = 33, 8, 3, 24
    _, w_data, plan = plan_for(T, E, K, "holes")
    A = plan.num_rows
    # rows of the trash bucket hold NaN on purpose: combine must skip them, not multiply them by 0
    rows_data = _randn(A, D, dtype=dtype, seed=1)
    rows_data[plan.expert_offsets[-1] :] = nan
    _, rows = guarded((A, D), dtype, nan, rows_data)
    _, w = guarded((T, K), dtype, nan, w_data.to(dtype))
    _, init = guarded((T, D), dtype, nan, _randn(T, D, dtype=dtype, seed=2))
    _, x = guarded((T, D), dtype, nan, _randn(T, D, dtype=dtype, seed=3))
    out_big, out = guarded((T, D), dtype, sentinel)
    launch.combine_fwd(rows, plan.row_of_slot, weight=w, init=init, out=out)
    dw_big, dw = guarded((T, K), torch.float32, sentinel)
    launch.combine_bwd(x, rows, plan.row_of_slot, out=dw)
    g_big, g = guarded((A, D), dtype, sentinel)
    launch.gather_rows_fwd(x, plan.sorted_token, plan.expert_offsets, weight=w, slot_of_row=plan.slot_of_row, out=g)
    for big, view in ((out_big, out), (dw_big, dw), (g_big, g)):
        assert not torch.isnan(view).any()
        assert torch.all(outside(big, view.shape) == sentinel)
    assert torch.all(g[plan.expert_offsets[-1] :] == 0)


def test_router_reads_only_its_view(guarded):
    _, logits = guarded((7, 5), torch.float32, float("nan"), torch.randn(7, 5))
    got = launch.router_topk_fwd(logits, 2)
    for t in got:
        assert not torch.isnan(t.float()).any()
    ref = router_topk_reference(logits.clone(), 2)
    assert torch.equal(got.topk_idx, ref.topk_idx)


# --------------------------------------------------------------------------------------------------
# int64 offset path
# --------------------------------------------------------------------------------------------------


def test_int64_offset_path_gives_the_same_results(plan_for, monkeypatch):
    T, E, D, H = 7, 3, 16, 24
    _, w, plan = plan_for(T, E, 2, "holes")
    A = plan.num_rows
    x = _randn(T, D, dtype=torch.float32, seed=1)
    w1 = _randn(E, H, D, dtype=torch.float32, seed=2)
    g = _randn(A, D, dtype=torch.float32, seed=3)
    table = launch.tile_table(plan.expert_offsets, A, BM)

    def run():
        out, z = launch.grouped_gemm_fwd(x, w1, table, block_m=BM, gather_index=plan.sorted_token,
                                         activation="gelu", store_preact=True)  # fmt: skip
        dz = launch.grouped_gemm_bwd(g, w1, z, table, block_m=BM, trans_weight=False, activation="gelu")
        dw, _ = launch.grouped_gemm_wgrad(x, dz, plan.expert_offsets, gather_index=plan.sorted_token, gather_x=True)
        comb = launch.combine_fwd(out, plan.row_of_slot, weight=w)
        dwr = launch.combine_bwd(x[:, :1].expand(T, H).contiguous(), out, plan.row_of_slot)
        gat = launch.gather_rows_fwd(x, plan.sorted_token, plan.expert_offsets, weight=w, slot_of_row=plan.slot_of_row)
        return out, z, dz, dw, comb, dwr, gat

    small = run()
    monkeypatch.setattr(launch, "INT64_THRESHOLD", 0)
    assert launch._int64(x)
    wide = run()
    for a, b in zip(small, wide):
        assert torch.equal(a, b)
