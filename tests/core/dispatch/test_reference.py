import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from domain_moe.core.dispatch.reference import (
    build_plan,
    combine,
    expert_buffer_positions,
    from_expert_buffer,
    gather_rows,
    grouped_linear,
    grouped_mm_supported,
    rows_from_all_experts,
    to_expert_buffer,
)


def _plan(num_tokens=7, top_k=2, num_experts=4, seed=0, holes=True):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.rand(num_tokens, num_experts, generator=gen).topk(top_k, -1).indices
    if holes:
        idx[::3, -1] = -1
    w = torch.rand(idx.shape, generator=gen, dtype=torch.float64).masked_fill(idx < 0, 0)
    return idx, w, build_plan(idx, w, num_experts)


def test_plan_is_sorted_stable_and_inverse_consistent():
    idx, w, plan = _plan()
    num_experts = 4
    offs = plan.expert_offsets
    assert offs[0] == 0 and torch.all(offs[1:] >= offs[:-1])
    assert torch.equal(plan.counts, torch.bincount(idx[idx >= 0], minlength=num_experts))
    assert int(offs[-1]) == int((idx >= 0).sum())
    experts = plan.row_expert()
    for r in range(plan.num_rows):
        e = int(experts[r])
        if e < num_experts:
            t = int(plan.sorted_token[r])
            assert e in idx[t].tolist()
            assert plan.row_of_slot.view(-1)[plan.slot_of_row[r]] == r
        else:
            assert plan.sorted_token[r] == 0 and plan.sorted_weight[r] == 0
    # stable: within an expert, tokens ascend
    for e in range(num_experts):
        toks = plan.sorted_token[offs[e] : offs[e + 1]]
        assert torch.all(toks[1:] >= toks[:-1])
    assert torch.all(plan.row_of_slot[idx < 0] == -1)


def test_plan_all_dropped_and_single_token():
    idx = torch.full((1, 3), -1)
    plan = build_plan(idx, torch.zeros(1, 3), 5)
    assert plan.expert_offsets.tolist() == [0] * 6 and plan.num_rows == 3
    x = torch.randn(1, 4)
    assert torch.equal(combine(gather_rows(x, plan), torch.zeros(1, 3), plan), torch.zeros(1, 4))


def test_gather_and_combine_match_definition():
    idx, w, plan = _plan()
    x = torch.randn(7, 5, dtype=torch.float64)
    rows = gather_rows(x, plan)
    out = combine(rows * 2, w, plan, init=torch.ones(7, 5, dtype=torch.float64))
    ref = torch.ones(7, 5, dtype=torch.float64)
    for t in range(7):
        for k in range(2):
            if idx[t, k] >= 0:
                ref[t] += w[t, k] * 2 * x[t]
    assert torch.allclose(out, ref)


def test_combine_ignores_garbage_in_trash_rows():
    idx, w, plan = _plan()
    rows = torch.randn(plan.num_rows, 3, dtype=torch.float64)
    rows[int(plan.valid_rows) :] = float("nan")
    assert torch.isfinite(combine(rows, w, plan)).all()


def test_custom_autograd_gradcheck_float64():
    idx, w, plan = _plan()
    w = w.clone().requires_grad_(True)
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    rows = torch.randn(plan.num_rows, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x: gather_rows(x, plan), (x,))
    assert gradcheck(lambda r, w: combine(r, w, plan), (rows, w))
    assert gradgradcheck(lambda r, w: combine(r, w, plan), (rows, w))
    assert gradgradcheck(lambda x: gather_rows(x, plan), (x,))
    assert gradcheck(lambda x, w: combine(gather_rows(x, plan).sin(), w, plan), (x, w))


@pytest.mark.parametrize("backend", ["torch_loop", "torch_grouped"])
@pytest.mark.parametrize("bias", [False, True])
def test_grouped_linear_matches_per_row_linear(backend, bias):
    idx, w, plan = _plan(num_tokens=9, top_k=2, num_experts=5)
    x = torch.randn(plan.num_rows, 8)
    weight = torch.randn(5, 12, 8)
    b = torch.randn(5, 12) if bias else None
    out = grouped_linear(x, weight, b, plan, backend=backend)
    experts = plan.row_expert()
    for r in range(plan.num_rows):
        e = int(experts[r])
        if e < 5:
            ref = x[r] @ weight[e].T + (b[e] if bias else 0)
            assert torch.allclose(out[r], ref, atol=1e-5)
        else:
            assert torch.all(out[r] == 0)


def test_grouped_linear_rejects_unknown_backend():
    _, _, plan = _plan()
    with pytest.raises(ValueError, match="backend"):
        grouped_linear(torch.randn(plan.num_rows, 4), torch.randn(4, 4, 4), None, plan, backend="bmm")


def test_grouped_mm_supported_reasons():
    assert grouped_mm_supported(torch.randn(3, 8), torch.randn(2, 4, 8)) is None
    assert "float64" in grouped_mm_supported(torch.randn(3, 8).double(), torch.randn(2, 4, 8).double())
    assert "aligned" in grouped_mm_supported(torch.randn(3, 5), torch.randn(2, 4, 5))


def test_expert_buffer_round_trip_and_capacity_overflow():
    idx, w, plan = _plan(num_tokens=6, top_k=1, num_experts=3, holes=False)
    rows = torch.arange(6 * 2, dtype=torch.float32).view(6, 2) + 1
    cap = int(plan.counts.max())
    pos = expert_buffer_positions(plan, cap)
    buf = to_expert_buffer(rows, pos, 3, cap)
    assert buf.shape == (3, cap, 2)
    assert torch.equal(from_expert_buffer(buf, pos), rows)
    small = expert_buffer_positions(plan, 1)
    back = from_expert_buffer(to_expert_buffer(rows, small, 3, 1), small)
    kept = small < 3
    assert torch.equal(back[kept], rows[kept]) and torch.all(back[~kept] == 0)


def test_rows_from_all_experts():
    idx, w, plan = _plan()
    all_out = torch.randn(4, 7, 3)
    rows = rows_from_all_experts(all_out, plan)
    experts = plan.row_expert()
    for r in range(plan.num_rows):
        e = int(experts[r])
        expect = all_out[e, plan.sorted_token[r]] if e < 4 else torch.zeros(3)
        assert torch.equal(rows[r], expect)
