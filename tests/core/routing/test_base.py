import pytest
import torch

from domain_moe.core.routing.base import (
    DROP_POLICIES,
    Router,
    apply_capacity,
    check_logits,
    count_assignments,
)
from domain_moe.core.types import RoutingDecision

# T=4 tokens, K=2 slots, E=3 experts; expert 0 is wanted by 4 slots, expert 1 by 3, expert 2 by 1.
IDX = torch.tensor([[0, 1], [0, 2], [0, 1], [1, 0]])
W = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.9, 0.1], [0.8, 0.2]])


def test_count_assignments_ignores_empty_slots():
    idx = torch.tensor([[0, -1], [2, 0], [-1, -1]])
    counts = count_assignments(idx, 4)
    assert counts.tolist() == [2, 0, 1, 0]
    assert counts.dtype == torch.long


def test_count_assignments_int32_input():
    assert count_assignments(IDX.int(), 3).tolist() == [4, 3, 1]


def test_capacity_position_policy():
    # Slot-major: all first choices (in token order) before second choices.
    # Expert 0 rows: t0s0, t1s0, t2s0, t3s1 -> keep t0s0, t1s0. Expert 1: t3s0, t0s1, t2s1 -> keep
    # t3s0, t0s1. Expert 2: t1s1 -> kept.
    idx, w = apply_capacity(IDX, W, 2, 3, policy="position")
    assert idx.tolist() == [[0, 1], [0, 2], [-1, -1], [1, -1]]
    assert torch.equal(w, torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.0, 0.0], [0.8, 0.0]]))


def test_capacity_score_policy():
    # Expert 0 keeps its two heaviest rows (t2s0 0.9, t1s0 0.7); expert 1 keeps t3s0 0.8, t0s1 0.4.
    idx, w = apply_capacity(IDX, W, 2, 3, policy="score")
    assert idx.tolist() == [[-1, 1], [0, 2], [0, -1], [1, -1]]
    assert torch.equal(w, torch.tensor([[0.0, 0.4], [0.7, 0.3], [0.9, 0.0], [0.8, 0.0]]))


def test_capacity_score_policy_with_explicit_scores():
    scores = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    idx, _ = apply_capacity(IDX, W, 1, 3, policy="score", scores=scores)
    # Expert 0: t3s1 has the top priority. Ties are broken by slot-major position, so expert 1
    # keeps t3s0 (a first choice) over t0s1 and t2s1.
    assert idx.tolist() == [[-1, -1], [-1, 2], [-1, -1], [1, 0]]


def test_capacity_random_policy():
    kept_sets = set()
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        idx, w = apply_capacity(IDX, W, 2, 3, policy="random", generator=gen)
        assert count_assignments(idx, 3).tolist() == [2, 2, 1]
        kept = idx >= 0
        assert torch.equal(idx[kept], IDX[kept])  # only drops, never re-routes
        assert torch.equal(w[kept], W[kept]) and bool((w[~kept] == 0).all())
        kept_sets.add(tuple(kept.flatten().tolist()))
    assert len(kept_sets) > 1  # random, not a fixed priority
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = apply_capacity(IDX, W, 2, 3, policy="random", generator=gen_a)[0]
    b = apply_capacity(IDX, W, 2, 3, policy="random", generator=gen_b)[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("policy", DROP_POLICIES)
def test_capacity_keeps_existing_empty_slots_and_large_capacity(policy):
    idx = torch.tensor([[0, -1], [0, 1]])
    w = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    out_idx, out_w = apply_capacity(idx, w, 10, 2, policy=policy)
    assert torch.equal(out_idx, idx) and torch.equal(out_w, w)


def test_capacity_bad_policy():
    with pytest.raises(ValueError, match="drop_policy"):
        apply_capacity(IDX, W, 2, 3, policy="fifo")


def test_check_logits_nan_raises():
    check_logits(torch.zeros(2, 3))
    bad = torch.zeros(2, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        check_logits(bad)
    with pytest.raises(ValueError, match="my logits"):
        check_logits(bad, name="my logits")


class _Fixed(Router):
    def forward(self, x):
        self.check_input(x)
        idx = torch.zeros(x.shape[0], 1, dtype=torch.long)
        return RoutingDecision(idx, torch.ones(idx.shape), count_assignments(idx, 2), 2)


def test_router_base_validation_and_helpers():
    with pytest.raises(ValueError, match="d_model"):
        _Fixed(0, 2)
    with pytest.raises(ValueError, match="num_experts"):
        _Fixed(4, 0)
    router = _Fixed(4, 2)
    assert router.aux_losses(router(torch.randn(3, 4))) == {}
    assert "d_model=4" in repr(router) and "num_experts=2" in repr(router)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        router([[1.0] * 4])
    # C = ceil(cf * T * K / E), clamped to [1, T].
    assert router.capacity_for(10, 1, 1.25) == 7
    assert router.capacity_for(10, 2, 0.01) == 1
    assert router.capacity_for(10, 2, 4.0) == 10
    logits = router.fp32_linear(torch.randn(3, 4, dtype=torch.float64), torch.randn(2, 4))
    assert logits.dtype == torch.float32
