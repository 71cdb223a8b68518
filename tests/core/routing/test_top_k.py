import pytest
import torch

from domain_moe.core import TopKRouter
from domain_moe.core.balancing import BiasBalancer
from domain_moe.testing import check_router


def _set_logits(router, logits):
    """Make ``router`` output ``logits`` for the one-hot inputs ``eye(T, D)``."""
    num_tokens = logits.shape[0]
    with torch.no_grad():
        router.weight.zero_()
        router.weight[:, :num_tokens] = logits.T
    return torch.eye(num_tokens, router.d_model)


@pytest.mark.parametrize(
    ("kwargs", "weights_sum"),
    [
        ({"top_k": 2}, 1.0),
        ({"top_k": 1}, None),
        ({"top_k": 3, "score_fn": "sigmoid"}, 1.0),
        ({"top_k": 2, "route_scale": 2.5}, 2.5),
        ({"top_k": 2, "renorm": False}, None),
        ({"top_k": 2, "capacity_factor": 0.5, "drop_policy": "score"}, None),
        ({"top_k": 2, "capacity_factor": 0.5, "drop_policy": "random"}, None),
        ({"top_k": 2, "jitter_eps": 0.1}, 1.0),
        ({"top_k": 2, "bias_balancing": True}, 1.0),
        ({"top_k": 2, "num_groups": 3, "topk_groups": 2}, 1.0),
    ],
)
def test_conformance(kwargs, weights_sum):
    router = TopKRouter(8, 6, **kwargs)
    decision = check_router(router, weights_sum=weights_sum)
    assert decision.topk_idx.shape == (13, kwargs["top_k"])


def test_softmax_top2_picks_largest_and_renormalises():
    router = TopKRouter(4, 4, top_k=2)
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 0.0, 5.0, 4.0]])
    x = _set_logits(router, logits)
    d = router(x)
    assert d.topk_idx.tolist() == [[0, 2], [2, 3]]
    p = logits.softmax(-1)
    expected = torch.stack([p[0, [0, 2]], p[1, [2, 3]]])
    expected = expected / expected.sum(-1, keepdim=True)
    torch.testing.assert_close(d.topk_w, expected)
    assert d.counts.tolist() == [1, 0, 2, 1]


def test_top1_softmax_keeps_raw_probability():
    router = TopKRouter(4, 3, top_k=1)
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    d = router(_set_logits(router, logits))
    assert d.topk_idx.tolist() == [[1]]
    torch.testing.assert_close(d.topk_w, logits.softmax(-1)[:, 1:2])


def test_sigmoid_renorm_and_route_scale():
    router = TopKRouter(4, 4, top_k=2, score_fn="sigmoid", route_scale=2.0)
    logits = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    d = router(_set_logits(router, logits))
    assert d.topk_idx.tolist() == [[3, 0]]
    s = logits.sigmoid()[0, [3, 0]]
    torch.testing.assert_close(d.topk_w[0], 2.0 * s / s.sum())


def test_capacity_drops_are_counted():
    router = TopKRouter(4, 2, top_k=1, capacity_factor=1.0)
    # Every token prefers expert 0: capacity ceil(1 * 4 / 2) = 2 keeps the first two tokens.
    logits = torch.tensor([[2.0, 0.0]] * 4)
    d = router(_set_logits(router, logits))
    assert d.capacity == 2
    assert d.topk_idx.flatten().tolist() == [0, 0, -1, -1]
    assert d.topk_w[2:].abs().sum() == 0
    assert d.counts.tolist() == [2, 0]
    assert d.extras["selected_counts"].tolist() == [4, 0]


def test_capacity_score_policy_keeps_highest_weights():
    router = TopKRouter(4, 2, top_k=1, capacity_factor=0.5, drop_policy="score")
    logits = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0], [0.5, 0.0]])
    d = router(_set_logits(router, logits))
    assert d.capacity == 1
    assert d.topk_idx.flatten().tolist() == [-1, 0, -1, -1]


def test_group_limited_routing_stays_in_chosen_groups():
    torch.manual_seed(1)
    router = TopKRouter(8, 8, top_k=3, num_groups=4, topk_groups=2)
    x = torch.randn(64, 8)
    d = router(x)
    scores = router.scores(router.fp32_linear(x, router.weight)).view(64, 4, 2)
    best_groups = scores.topk(2, dim=-1).values.sum(-1).topk(2, dim=-1).indices
    chosen_groups = d.topk_idx // 2
    for t in range(64):
        assert set(chosen_groups[t].tolist()) <= set(best_groups[t].tolist())
    # Without the limit some tokens do leave those groups, so the check above is not vacuous.
    free = TopKRouter(8, 8, top_k=3)
    free.load_state_dict(router.state_dict())
    free_groups = free(x).topk_idx // 2
    outside = [not set(free_groups[t].tolist()) <= set(best_groups[t].tolist()) for t in range(64)]
    assert any(outside)


def test_bias_balancing_changes_selection_not_weights():
    router = TopKRouter(4, 3, top_k=1, bias_balancing=True)
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    x = _set_logits(router, logits)
    before = router(x)
    assert before.topk_idx.tolist() == [[0]]
    with torch.no_grad():
        router.selection_bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    after = router(x)
    assert after.topk_idx.tolist() == [[2]]
    # The weight is the *unbiased* probability of the chosen expert.
    torch.testing.assert_close(after.topk_w[0, 0], logits.softmax(-1)[0, 2])


def test_bias_balancing_accumulates_loads_in_training_only():
    router = TopKRouter(4, 3, top_k=2, bias_balancing=True)
    x = torch.randn(5, 4)
    router.eval()
    router(x)
    assert router.load_accum.sum() == 0
    router.train()
    router(x)
    router(x)
    assert router.load_accum.sum() == 2 * 5 * 2
    assert BiasBalancer(rate=0.1).step(router)
    assert router.load_accum.sum() == 0


def test_jitter_only_in_training():
    router = TopKRouter(8, 4, top_k=2, jitter_eps=0.5)
    x = torch.randn(32, 8)
    router.eval()
    torch.testing.assert_close(router(x).topk_w, router(x).topk_w)
    router.train()
    assert not torch.equal(router(x).topk_w, router(x).topk_w)


def test_aux_losses_values():
    router = TopKRouter(4, 4, top_k=1, balance_coef=0.5, z_coef=0.25)
    x = torch.randn(6, 4)
    d = router(x)
    aux = router.aux_losses(d)
    assert set(aux) == {"balance", "z"}
    frac = d.extras["selected_counts"].float() / 6
    torch.testing.assert_close(aux["balance"], 0.5 * 4 * (frac * d.probs.mean(0)).sum())
    torch.testing.assert_close(aux["z"], 0.25 * torch.logsumexp(d.logits, -1).square().mean())
    off = TopKRouter(4, 4, balance_coef=0, z_coef=0)
    assert off.aux_losses(off(x)) == {}


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"top_k": 5}, "top_k"),
        ({"top_k": 0}, "top_k"),
        ({"score_fn": "relu"}, "score_fn"),
        ({"capacity_factor": 0.0}, "capacity_factor"),
        ({"drop_policy": "oldest"}, "drop_policy"),
        ({"jitter_eps": 1.0}, "jitter_eps"),
        ({"num_groups": 2}, "topk_groups"),
        ({"num_groups": 3, "topk_groups": 1}, "num_groups"),
        ({"num_groups": 2, "topk_groups": 3}, "topk_groups"),
        ({"num_groups": 4, "topk_groups": 1, "top_k": 2}, "top_k"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TopKRouter(8, 4, **kwargs)


def test_bad_input():
    router = TopKRouter(8, 4)
    with pytest.raises(ValueError, match="d_model=8"):
        router(torch.randn(3, 7))
    with pytest.raises(ValueError, match=r"\[T, D\]"):
        router(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="no tokens"):
        router(torch.randn(0, 8))
    with pytest.raises(TypeError, match="floating point"):
        router(torch.ones(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        router(torch.full((2, 8), float("nan")))


def test_repr_names_options():
    text = repr(TopKRouter(8, 4, capacity_factor=1.5, bias_balancing=True))
    assert "top_k=2" in text and "capacity_factor=1.5" in text and "bias_balancing=True" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_k": 2},
        {"top_k": 2, "score_fn": "sigmoid"},
        {"top_k": 1, "capacity_factor": 0.5},
        {"top_k": 2, "capacity_factor": 0.75, "drop_policy": "score"},
    ],
)
def test_moe_matches_naive(moe_matches_naive, kwargs):
    moe_matches_naive(TopKRouter(8, 4, **kwargs))
