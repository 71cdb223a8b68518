import torch

from domain_moe.vision.models import ContextRouter


def _router(**kw):
    torch.manual_seed(0)
    return ContextRouter(16, grid=4, num_contexts=6, num_classes=10, num_experts=5, **kw)


def test_fixed_k_routes_exactly_k():
    router = _router(threshold=None, top_k=3)
    d = router(torch.randn(20, 16, 16), torch.randint(6, (20,)), torch.randint(-1, 10, (20,)))
    assert ((d.topk_idx >= 0).sum(-1) == 3).all()
    assert ContextRouter.multi_hot(d).sum(-1).eq(3).all()


def test_threshold_mode_gives_zero_to_k_max():
    router = _router(threshold=0.5, top_k=2)
    with torch.no_grad():
        router.router.gate.bias.copy_(torch.tensor([5.0, -5.0, 0.0, 0.0, 0.0]))
    d = router(torch.randn(30, 16, 16), torch.randint(6, (30,)))
    k = (d.topk_idx >= 0).sum(-1)
    assert (k <= 2).all()
    assert ContextRouter.multi_hot(d)[:, 0].all() and not ContextRouter.multi_hot(d)[:, 1].any()


def test_scores_permute_with_the_pool():
    router = _router()
    x = router.features(torch.randn(4, 16, 16), torch.tensor([0, 1, 2, 3]))
    scorer = router.router.gate
    perm = torch.tensor([3, 0, 4, 1, 2])
    before = scorer(x)
    with torch.no_grad():
        scorer.descriptors.copy_(scorer.descriptors[perm])
        scorer.bias.copy_(scorer.bias[perm])
    torch.testing.assert_close(scorer(x), before[:, perm])


def test_bad_base_tokens():
    import pytest

    with pytest.raises(ValueError, match="base_tokens must be"):
        _router()(torch.randn(2, 9, 16), torch.tensor([0, 1]))
