"""The launch layer: tile table, block choice, config binding, argument validation, and the custom ops
(``torch.library.opcheck``, fake kernels, the router op's autograd)."""

from __future__ import annotations

import pytest
import torch
import triton

from domain_moe.core.dispatch.triton import launch
from domain_moe.core.dispatch.triton.reference_router import router_topk_reference

BM = 16


# --------------------------------------------------------------------------------------------------
# tile table and configs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts",
    [[0, 0, 0], [5, 0, 17, 16], [33], [1] * 8, [0, 40, 0, 0, 0, 0, 0, 1]],
    ids=["all_empty", "mixed", "one", "ones", "hot"],
)
@pytest.mark.parametrize("trash", [0, 7])
def test_tile_table_covers_each_bucket_exactly_once(counts, trash):
    num_experts = len(counts)
    offs = torch.tensor([0, *torch.tensor(counts).cumsum(0).tolist()])
    num_rows = int(offs[-1]) + trash
    table = launch.tile_table(offs, num_rows, BM)
    assert table.dtype == torch.int32 and table.shape == (3, triton.cdiv(num_rows, BM) + num_experts)
    bucket, row0, row_end = table.long()
    live = bucket <= num_experts
    covered = torch.zeros(num_rows, dtype=torch.long)
    for b, r0, r1 in zip(bucket[live].tolist(), row0[live].tolist(), row_end[live].tolist()):
        lo = int(offs[b]) if b < num_experts else int(offs[-1])
        hi = int(offs[b + 1]) if b < num_experts else num_rows
        assert lo <= r0 < hi and r1 == hi, "a tile straddles two buckets"
        covered[r0 : min(r0 + BM, r1)] += 1
    assert torch.all(covered == 1)
    # real tiles come first, surplus entries last
    assert torch.all(bucket.diff() >= 0) and torch.all(bucket <= num_experts + 1)


def test_pick_block_m_is_16_in_the_interpreter():
    assert launch.pick_block_m(10_000, 2) == 16


def test_autotune_or_first_binds_the_first_config_without_cuda():
    configs = [triton.Config({"BLOCK": 32}, num_warps=2), triton.Config({"BLOCK": 64}, num_warps=4)]
    seen = {}

    class FakeKernel:
        def __getitem__(self, grid):
            def run(*args, **kwargs):
                seen.update(kwargs, grid=grid, args=args)

            return run

    bound = launch.autotune_or_first(configs, key=["n"])(FakeKernel())
    bound[(3,)](1, 2, FLAG=True)
    assert seen["BLOCK"] == 32 and seen["num_warps"] == 2 and seen["FLAG"] is True and seen["grid"] == (3,)
    with pytest.raises(ValueError, match="configs"):
        launch.autotune_or_first([], key=[])


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def _gemm_args(A=40, T=5, E=2, D=16, H=24, dtype=torch.float32):
    offs = torch.tensor([0, 3, A])
    sorted_token = torch.arange(A) % T
    table = launch.tile_table(offs, A, BM)
    x = torch.randn(T, D, dtype=dtype)
    w = torch.randn(E, H, D, dtype=dtype)
    return x, w, table, sorted_token, offs


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda a: {**a, "x": a["x"].double()}, TypeError, "x must be float32"),
        (lambda a: {**a, "x": a["x"].bfloat16(), "weight": a["weight"].bfloat16()}, TypeError, "bfloat16"),
        (lambda a: {**a, "weight": a["weight"].half()}, TypeError, "weight must have the dtype of x"),
        (lambda a: {**a, "x": a["x"][:, :7]}, ValueError, "x must have width 16"),
        (lambda a: {**a, "activation": "tanh"}, ValueError, "activation must be one of"),
        (lambda a: {**a, "block_m": 32}, ValueError, "table has"),
        (lambda a: {**a, "bias": torch.randn(2, 23)}, ValueError, r"bias must have shape \(2, 24\)"),
        (lambda a: {**a, "row_scale": torch.rand(3)}, ValueError, "row_scale must have shape"),
        (lambda a: {**a, "gather_index": a["gather_index"].float()}, TypeError, "gather_index must be int64"),
        (lambda a: {**a, "glu": True, "weight": a["weight"][:, :23]}, ValueError, "even number"),
        (lambda a: {**a, "glu": True, "trans_weight": True}, ValueError, "nn.Linear weight layout"),
        (lambda a: {**a, "out": torch.empty(40, 23)}, ValueError, r"out must have shape \(40, 24\)"),
        (lambda a: {**a, "x": a["x"].to("meta")}, ValueError, "one device"),
    ],
)
def test_grouped_gemm_fwd_rejects_bad_arguments(mutate, error, match):
    x, w, table, sorted_token, _ = _gemm_args()
    args = {"x": x, "weight": w, "table": table, "block_m": BM, "gather_index": sorted_token}
    args = mutate(args)
    with pytest.raises(error, match=match):
        launch.grouped_gemm_fwd(**args)


def test_other_launchers_reject_bad_arguments():
    x, _, table, sorted_token, offs = _gemm_args()
    A, T, E, H = 40, 5, 2, 24
    z = torch.randn(A, H)
    with pytest.raises(ValueError, match="preact must have shape"):
        launch.grouped_gemm_bwd(torch.randn(A, 16), torch.randn(E, H, 16), z[:, :3], table, block_m=BM,
                                trans_weight=False)  # fmt: skip
    with pytest.raises(ValueError, match="grad must have width"):
        launch.grouped_gemm_bwd(torch.randn(A, 5), torch.randn(E, 16, H), z, table, block_m=BM)
    with pytest.raises(ValueError, match="gather_index"):
        launch.grouped_gemm_wgrad(x, torch.randn(A, H), offs, gather_x=True)
    with pytest.raises(ValueError, match="grad must have 5 rows"):
        launch.grouped_gemm_wgrad(x, torch.randn(A, H), offs)
    with pytest.raises(TypeError, match="expert_offsets must be int64"):
        launch.grouped_gemm_wgrad(torch.randn(A, 16), torch.randn(A, H), offs.float())
    row_of_slot = torch.arange(T * 2).view(T, 2) - 2
    with pytest.raises(ValueError, match=r"weight must have shape \(5, 2\)"):
        launch.combine_fwd(torch.randn(A, 4), row_of_slot, weight=torch.rand(5, 3))
    with pytest.raises(ValueError, match=r"init must have shape \(5, 4\)"):
        launch.combine_fwd(torch.randn(A, 4), row_of_slot, init=torch.rand(5, 3))
    with pytest.raises(ValueError, match="grad_out must have shape"):
        launch.combine_bwd(torch.randn(4, 4), torch.randn(A, 4), row_of_slot)
    with pytest.raises(ValueError, match="slot_of_row"):
        launch.gather_rows_fwd(x, sorted_token, offs, weight=torch.rand(T, 2))
    with pytest.raises(ValueError, match="top_k must be an int in"):
        launch.router_topk_fwd(torch.randn(4, 3), 4)
    with pytest.raises(ValueError, match="score_fn"):
        launch.router_topk_fwd(torch.randn(4, 3), 1, score_fn="relu")
    with pytest.raises(ValueError, match="selection_bias must have shape"):
        launch.router_topk_fwd(torch.randn(4, 3), 1, selection_bias=torch.zeros(4))


def test_launchers_refuse_cpu_tensors_outside_the_interpreter(monkeypatch):
    x, w, table, sorted_token, _ = _gemm_args()
    monkeypatch.setattr(launch, "INTERPRET", False)
    with pytest.raises(ValueError, match="CUDA"):
        launch.grouped_gemm_fwd(x, w, table, block_m=BM, gather_index=sorted_token)


# --------------------------------------------------------------------------------------------------
# custom ops
# --------------------------------------------------------------------------------------------------


def _op_samples():
    torch.manual_seed(0)
    T, K, E, D, H = 5, 2, 3, 16, 16
    idx = torch.tensor([[0, 2], [2, -1], [0, 1], [2, 0], [2, 1]])
    w = torch.rand(T, K).masked_fill(idx < 0, 0)
    from domain_moe.core.dispatch.reference import build_plan

    plan = build_plan(idx, w, E)
    A = plan.num_rows
    table = launch.tile_table(plan.expert_offsets, A, BM)
    x = torch.randn(T, D)
    w13 = torch.randn(E, 2 * H, D) * 0.2
    b13 = torch.randn(E, 2 * H)
    w2 = torch.randn(E, D, H) * 0.2
    z = torch.randn(A, 2 * H)
    rows = torch.randn(A, D)
    scale = torch.rand(A)
    st, offs = plan.sorted_token, plan.expert_offsets
    return [
        (launch.grouped_gemm_fwd_op, (x, w13, table, b13, st, scale, BM, False, "silu", True, True)),
        (launch.grouped_gemm_fwd_op, (z, w13, table, None, None, None, BM, True, "identity", False, False)),
        (launch.grouped_gemm_bwd_op, (x, w2, z, table, st, scale, BM, True, "gelu", True)),
        (launch.grouped_gemm_wgrad_op, (x, rows, offs, st, True, False, None, True)),
        (launch.grouped_gemm_wgrad_op, (z, x, offs, st, False, True, scale, False)),
        (launch.combine_fwd_op, (rows, plan.row_of_slot, w, x)),
        (launch.combine_fwd_op, (rows, plan.row_of_slot, None, None)),
        (launch.combine_bwd_op, (x, rows, plan.row_of_slot)),
        (launch.gather_rows_fwd_op, (x, st, offs, w, plan.slot_of_row)),
        (launch.router_topk_op, (torch.randn(T, E), 2, "softmax", True, 1.0, None)),
        (launch.router_topk_op, (torch.randn(T, E, requires_grad=True), 2, "sigmoid", True, 2.0, torch.rand(E))),
    ]


@pytest.mark.parametrize(("op", "args"), _op_samples(), ids=lambda v: getattr(v, "_name", None) or "")
def test_opcheck(op, args):
    torch.library.opcheck(op, args)


def test_ops_are_registered_in_the_domain_moe_namespace():
    for name in ("grouped_gemm_fwd", "grouped_gemm_bwd", "grouped_gemm_wgrad", "combine_fwd", "combine_bwd",
                 "gather_rows_fwd", "router_topk"):  # fmt: skip
        assert hasattr(torch.ops.domain_moe, name)


@pytest.mark.parametrize(
    ("score_fn", "renorm", "top_k", "bias"),
    [
        ("softmax", True, 2, False),
        ("softmax", False, 1, False),
        ("sigmoid", True, 3, True),
        ("sigmoid", False, 2, False),
    ],
)
def test_router_op_gradient_matches_reference_autograd(score_fn, renorm, top_k, bias):
    T, E = 7, 5
    logits = torch.randn(T, E, dtype=torch.float32)
    sel_bias = torch.randn(E) * 0.1 if bias else None
    kw = {"score_fn": score_fn, "renorm": renorm, "route_scale": 1.7, "selection_bias": sel_bias}
    g_w, g_lse, g_ps = torch.randn(T, top_k), torch.randn(T), torch.randn(E)

    a = logits.clone().requires_grad_(True)
    got = launch.router_topk(a, top_k, **kw)
    ((got.topk_w * g_w).sum() + (got.lse * g_lse).sum() + (got.prob_sum * g_ps).sum()).backward()
    b = logits.clone().requires_grad_(True)
    ref = router_topk_reference(b, top_k, **kw)
    ((ref.topk_w * g_w).sum() + (ref.lse * g_lse).sum() + (ref.prob_sum * g_ps).sum()).backward()
    assert torch.equal(got.topk_idx, ref.topk_idx) and torch.equal(got.counts, ref.counts)
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5)
    # only the weights: the other outputs receive no gradient
    c = logits.clone().requires_grad_(True)
    launch.router_topk(c, top_k, **kw).topk_w.sum().backward()
    d = logits.clone().requires_grad_(True)
    router_topk_reference(d, top_k, **kw).topk_w.sum().backward()
    torch.testing.assert_close(c.grad, d.grad, atol=1e-6, rtol=1e-5)
