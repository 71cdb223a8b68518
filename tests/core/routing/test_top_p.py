import math

import pytest
import torch

from domain_moe.core import TopPRouter, losses
from domain_moe.testing import check_router


def _route(router, logits):
    with torch.no_grad():
        router.weight.zero_()
        router.weight[:, : logits.shape[0]] = logits.T
    return router(torch.eye(logits.shape[0], router.d_model))


@pytest.mark.parametrize("kwargs", [{}, {"top_p": 0.9}, {"top_p": 1.0}, {"top_p": 0.5, "max_k": 2}])
def test_conformance(kwargs):
    d = check_router(TopPRouter(8, 5, **kwargs))
    assert d.topk_idx.shape == (13, kwargs.get("max_k", 5))
    assert bool(((d.topk_idx >= 0).sum(-1) >= 1).all())  # always at least one expert


def test_keeps_exactly_the_crossing_expert_with_raw_probs():
    router = TopPRouter(4, 4, top_p=0.4)
    probs = torch.tensor(
        [
            [0.5, 0.3, 0.15, 0.05],  # first alone crosses 0.4 -> 1 expert
            [0.1, 0.35, 0.25, 0.3],  # 0.35 <= 0.4, +0.3 = 0.65 crosses -> 2 experts
            [0.25, 0.25, 0.25, 0.25],  # 0.25, 0.5 crosses -> 2 experts
            [0.39, 0.01, 0.3, 0.3],  # 0.39, then 0.69 crosses -> 2 experts
        ]
    )
    d = _route(router, probs.log())
    valid = d.topk_idx >= 0
    assert valid.sum(-1).tolist() == [1, 2, 2, 2]
    assert d.topk_idx[0, 0] == 0 and d.topk_idx[1, :2].tolist() == [1, 3]
    assert d.topk_idx[3, 0] == 0 and d.topk_idx[3, 1].item() in (2, 3)
    # Raw probabilities, not renormalised; -1 slots carry 0.
    torch.testing.assert_close(d.topk_w[0], torch.tensor([0.5, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(d.topk_w[1], torch.tensor([0.35, 0.3, 0.0, 0.0]))
    torch.testing.assert_close(d.topk_w[2], torch.tensor([0.25, 0.25, 0.0, 0.0]))
    assert d.counts.sum() == 7


def test_flat_router_uses_more_experts_than_peaked():
    router = TopPRouter(4, 8, top_p=0.9)
    flat = torch.zeros(1, 8)
    peaked = torch.tensor([[6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert (_route(router, flat).topk_idx >= 0).sum() == 8
    assert (_route(router, peaked).topk_idx >= 0).sum() == 1


def test_max_k_caps_experts():
    router = TopPRouter(4, 6, top_p=1.0, max_k=3)
    d = _route(router, torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0]]))
    assert d.topk_idx.tolist() == [[0, 1, 2]]
    torch.testing.assert_close(d.topk_w[0], torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0, -2.0]).softmax(-1)[:3])


def test_aux_losses():
    router = TopPRouter(4, 4, top_p=0.4, balance_coef=0.5, entropy_coef=0.25)
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.35, 0.25, 0.3]])
    d = _route(router, probs.log())
    aux = router.aux_losses(d)
    # Assignments: token 0 -> {0}, token 1 -> {1, 3}: 3 in total.
    frac = torch.tensor([1.0, 1.0, 0.0, 1.0]) / 3
    torch.testing.assert_close(aux["balance"], 0.5 * 4 * (frac * probs.mean(0)).sum())
    ent = -(probs * probs.log()).sum(-1).mean()
    torch.testing.assert_close(aux["entropy"], 0.25 * ent)
    # Uniform routing scores a balance of exactly 1 with variable k too.
    uniform = _route(router, torch.zeros(4, 4))
    torch.testing.assert_close(losses.switch_balance(uniform.probs, uniform.counts, None), torch.tensor(1.0))
    assert math.isclose(losses.entropy(uniform.probs).item(), math.log(4), rel_tol=1e-6)
    off = TopPRouter(4, 4, balance_coef=0.0, entropy_coef=0.0)
    assert off.aux_losses(off(torch.randn(3, 4))) == {}


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": "0.4"}, "top_p"),
        ({"max_k": 0}, "max_k"),
        ({"max_k": 6}, "max_k"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TopPRouter(8, 5, **kwargs)


def test_repr():
    assert "top_p=0.4" in repr(TopPRouter(8, 4)) and "max_k=2" in repr(TopPRouter(8, 4, max_k=2))


@pytest.mark.parametrize("kwargs", [{"top_p": 0.6}, {"top_p": 0.9, "max_k": 2}])
def test_moe_matches_naive(moe_matches_naive, kwargs):
    moe_matches_naive(TopPRouter(8, 4, **kwargs))
