import copy

import pytest
import torch

from domain_moe.core import RandomRouter
from domain_moe.testing import check_router


@pytest.mark.parametrize("level", ["batch", "token"])
def test_conformance(level):
    router = RandomRouter(8, 4, level=level)
    assert list(router.parameters()) == []
    check_router(router, weights_sum=1.0)


def test_batch_level_one_expert_per_forward():
    router = RandomRouter(4, 5, level="batch")
    x = torch.randn(16, 4)
    seen = set()
    for _ in range(30):
        d = router(x)
        assert d.topk_idx.unique().numel() == 1
        assert torch.equal(d.topk_w, torch.ones(16, 1))
        assert d.counts.sum() == 16 and d.counts.max() == 16
        seen.add(int(d.topk_idx[0, 0]))
    assert seen == set(range(5))


def test_token_level_and_eval_draw_per_token():
    x = torch.randn(200, 4)
    d = RandomRouter(4, 5, level="token")(x)
    assert d.topk_idx.unique().numel() == 5
    assert d.counts.min() > 10  # roughly uniform: 40 expected per expert
    router = RandomRouter(4, 5, level="batch").eval()
    assert router(x).topk_idx.unique().numel() == 5
    router = RandomRouter(4, 5, level="token", eval_level="batch").eval()
    assert router(x).topk_idx.unique().numel() == 1


def test_global_rng_determinism():
    router = RandomRouter(4, 7, level="token")
    x = torch.randn(10, 4)
    torch.manual_seed(5)
    a = router(x).topk_idx
    torch.manual_seed(5)
    b = router(x).topk_idx
    assert torch.equal(a, b)


def test_generator_is_used_and_not_the_global_rng():
    gen = torch.Generator().manual_seed(1)
    router = RandomRouter(4, 7, level="token", generator=gen)
    twin = copy.deepcopy(router)  # copies the generator state too
    x = torch.randn(10, 4)
    state = torch.get_rng_state()
    a = router(x).topk_idx
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, twin(x).topk_idx)
    expected = torch.randint(7, (10,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[:, 0], expected)


def test_no_aux_losses_and_repr():
    router = RandomRouter(4, 3, level="token")
    assert router.aux_losses(router(torch.randn(2, 4))) == {}
    assert "level='token'" in repr(router)


@pytest.mark.parametrize(
    ("kwargs", "name", "error"),
    [
        ({"level": "sentence"}, "level", ValueError),
        ({"eval_level": "all"}, "eval_level", ValueError),
        ({"generator": 3}, "generator", TypeError),
    ],
)
def test_bad_arguments(kwargs, name, error):
    with pytest.raises(error, match=name):
        RandomRouter(8, 4, **kwargs)


@pytest.mark.parametrize("level", ["batch", "token"])
def test_moe_matches_naive(moe_matches_naive, level):
    moe_matches_naive(RandomRouter(8, 4, level=level))
