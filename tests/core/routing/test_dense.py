import math

import pytest
import torch

from domain_moe.core import DenseRouter
from domain_moe.testing import check_router


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 0.5}, {"entropy_coef": 1e-2}])
def test_conformance(kwargs):
    d = check_router(DenseRouter(8, 4, **kwargs), weights_sum=1.0)
    assert d.topk_idx.shape == (13, 4)
    assert d.counts.tolist() == [13] * 4


def test_every_expert_weighted_by_softmax():
    router = DenseRouter(3, 3, temperature=2.0)
    with torch.no_grad():
        router.weight.copy_(torch.eye(3) * 4.0)
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    d = router(x)
    assert d.topk_idx.tolist() == [[0, 1, 2], [0, 1, 2]]
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    torch.testing.assert_close(d.logits, logits)
    torch.testing.assert_close(d.topk_w, (logits / 2.0).softmax(-1))
    assert d.capacity is None and router.preferred_backend == "bmm"


def test_temperature_sharpens():
    x = torch.randn(6, 4)
    cold, hot = DenseRouter(4, 3, temperature=0.1), DenseRouter(4, 3, temperature=10.0)
    hot.load_state_dict(cold.state_dict())
    assert cold(x).topk_w.max(-1).values.mean() > hot(x).topk_w.max(-1).values.mean()


def test_entropy_loss_optional():
    router = DenseRouter(4, 4)
    assert router.aux_losses(router(torch.randn(3, 4))) == {}
    router = DenseRouter(4, 4, entropy_coef=-0.5)
    with torch.no_grad():
        router.weight.zero_()
    aux = router.aux_losses(router(torch.randn(3, 4)))
    torch.testing.assert_close(aux["entropy"], torch.tensor(-0.5 * math.log(4)))


@pytest.mark.parametrize("value", [0.0, -1.0, "1", False])
def test_bad_temperature(value):
    with pytest.raises(ValueError, match="temperature"):
        DenseRouter(8, 4, temperature=value)


def test_repr():
    assert "temperature=0.5" in repr(DenseRouter(8, 4, temperature=0.5))


@pytest.mark.parametrize("kwargs", [{}, {"temperature": 0.5, "entropy_coef": 0.1}])
def test_moe_matches_naive(moe_matches_naive, kwargs):
    moe_matches_naive(DenseRouter(8, 4, **kwargs))
