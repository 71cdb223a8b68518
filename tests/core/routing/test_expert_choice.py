import math

import pytest
import torch

from domain_moe.core import ExpertChoiceRouter
from domain_moe.testing import check_router


@pytest.mark.parametrize("capacity_factor", [0.1, 1.0, 2.0, 100.0])
def test_conformance(capacity_factor):
    router = ExpertChoiceRouter(8, 4, capacity_factor)
    d = check_router(router)
    assert d.capacity == max(1, min(13, math.ceil(13 * capacity_factor / 4)))


@pytest.mark.parametrize(("num_tokens", "cf"), [(12, 2.0), (7, 1.0), (5, 0.5), (3, 10.0)])
def test_each_expert_gets_exactly_capacity_tokens(num_tokens, cf):
    router = ExpertChoiceRouter(6, 3, cf)
    d = router(torch.randn(num_tokens, 6))
    cap = max(1, min(num_tokens, math.ceil(num_tokens * cf / 3)))
    assert d.capacity == cap
    assert d.counts.tolist() == [cap] * 3
    assert d.topk_idx.shape == (num_tokens, 3)
    assert d.extras["expert_tokens"].shape == (3, cap)
    # Slot e holds e or -1.
    slots = torch.arange(3).expand(num_tokens, 3)
    assert bool(((d.topk_idx == slots) | (d.topk_idx == -1)).all())


def test_experts_take_their_highest_scoring_tokens():
    router = ExpertChoiceRouter(4, 2, capacity_factor=1.0)
    # Logits of 4 tokens; C = ceil(4 * 1 / 2) = 2 per expert.
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.5], [0.0, 3.0], [0.2, 0.1]])
    with torch.no_grad():
        router.weight.copy_(logits.T)
    d = router(torch.eye(4))
    s = logits.softmax(-1)
    # Expert 0 column: 0.88, 0.62, 0.05, 0.52 -> tokens 0, 1.
    # Expert 1 column: 0.12, 0.38, 0.95, 0.48 -> tokens 2, 3.
    assert d.topk_idx.tolist() == [[0, -1], [0, -1], [-1, 1], [-1, 1]]
    expected = torch.zeros(4, 2)
    expected[[0, 1], 0] = s[[0, 1], 0]
    expected[[2, 3], 1] = s[[2, 3], 1]
    torch.testing.assert_close(d.topk_w, expected)
    assert sorted(d.extras["expert_tokens"][0].tolist()) == [0, 1]


def test_a_token_can_get_several_experts_or_none():
    router = ExpertChoiceRouter(3, 3, capacity_factor=1.0)  # C = 1
    logits = torch.tensor([[4.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    with torch.no_grad():
        router.weight.copy_(logits.T)
    d = router(torch.eye(3))
    # Columns of softmax(logits): expert 0 and 1 are highest at token 0, expert 2 at token 1
    # (1/3 vs 0.009 and 0.155), so token 0 gets two experts and token 2 none.
    assert d.topk_idx.tolist() == [[0, 1, -1], [-1, -1, 2], [-1, -1, -1]]
    assert d.topk_w[2].abs().sum() == 0


def test_no_aux_loss_and_prefers_bmm():
    router = ExpertChoiceRouter(8, 4)
    assert router.aux_losses(router(torch.randn(5, 8))) == {}
    assert router.preferred_backend == "bmm"
    assert "capacity_factor=2.0" in repr(router)


@pytest.mark.parametrize("value", [0, -1.0, "2", True])
def test_bad_capacity_factor(value):
    with pytest.raises(ValueError, match="capacity_factor"):
        ExpertChoiceRouter(8, 4, value)


@pytest.mark.parametrize("capacity_factor", [2.0, 0.5])
def test_moe_matches_naive(moe_matches_naive, capacity_factor):
    moe_matches_naive(ExpertChoiceRouter(8, 4, capacity_factor))
