import pytest
import torch

from domain_moe.core import SwitchRouter, TopKRouter
from domain_moe.testing import check_router


def _set_logits(router, logits):
    num_tokens = logits.shape[0]
    with torch.no_grad():
        router.weight.zero_()
        router.weight[:, :num_tokens] = logits.T
    return torch.eye(num_tokens, router.d_model)


@pytest.mark.parametrize(
    ("kwargs", "weights_sum"),
    [
        ({}, None),
        ({"top_k": 2}, 1.0),
        ({"capacity_factor": None}, None),
        ({"drop_policy": "score", "z_coef": 1e-3}, None),
        ({"drop_policy": "random", "jitter_eps": 0.01}, None),
    ],
)
def test_conformance(kwargs, weights_sum):
    check_router(SwitchRouter(8, 4, **kwargs), weights_sum=weights_sum)


def test_defaults_are_switch():
    router = SwitchRouter(8, 4)
    assert isinstance(router, TopKRouter)
    assert (router.top_k, router.capacity_factor, router.drop_policy) == (1, 1.25, "position")
    assert (router.score_fn, router.balance_coef, router.z_coef) == ("softmax", 1e-2, 0.0)
    d = router(torch.randn(16, 8))
    assert d.capacity == 5  # ceil(1.25 * 16 / 4)
    assert sorted(router.aux_losses(d)) == ["balance"]
    assert sorted(SwitchRouter(8, 4, z_coef=1e-3).aux_losses(d)) == ["balance", "z"]


def test_top1_weight_is_chosen_probability_and_capacity_drops():
    router = SwitchRouter(4, 2, capacity_factor=1.0)
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    d = router(_set_logits(router, logits))
    # Three tokens want expert 0, capacity ceil(4 / 2) = 2: the third (by position) is dropped.
    assert d.capacity == 2
    assert d.topk_idx.flatten().tolist() == [0, 0, -1, 1]
    p = logits.softmax(-1)
    torch.testing.assert_close(d.topk_w.flatten(), torch.stack([p[0, 0], p[1, 0], p[0, 0] * 0, p[3, 1]]))
    assert d.counts.tolist() == [2, 1]
    # The balance loss uses the loads before capacity (f = [3/4, 1/4]), as in the paper.
    frac = torch.tensor([0.75, 0.25])
    torch.testing.assert_close(router.aux_losses(d)["balance"], 1e-2 * 2 * (frac * p.mean(0)).sum())


def test_gshard_top2_renormalises():
    router = SwitchRouter(4, 3, top_k=2, capacity_factor=None)
    logits = torch.tensor([[1.0, 0.0, 2.0]])
    d = router(_set_logits(router, logits))
    assert d.topk_idx.tolist() == [[2, 0]]
    p = logits.softmax(-1)[0, [2, 0]]
    torch.testing.assert_close(d.topk_w[0], p / p.sum())


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"top_k": 0}, "top_k"),
        ({"capacity_factor": -1.0}, "capacity_factor"),
        ({"drop_policy": "lifo"}, "drop_policy"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SwitchRouter(8, 4, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2, "capacity_factor": 0.75, "drop_policy": "random"}])
def test_moe_matches_naive(moe_matches_naive, kwargs):
    moe_matches_naive(SwitchRouter(8, 4, **kwargs))
