import pytest
import torch

from domain_moe.core.routing import MaskedTopKRouter, TopKRouter
from domain_moe.testing import check_router


def test_conformance_without_mask():
    check_router(MaskedTopKRouter(8, 4, top_k=2), weights_sum=1.0)


def test_without_mask_equals_top_k():
    torch.manual_seed(0)
    masked = MaskedTopKRouter(8, 4, top_k=2)
    plain = TopKRouter(8, 4, top_k=2, balance_coef=0.0, z_coef=0.0)
    plain.load_state_dict(masked.state_dict())
    x = torch.randn(7, 8)
    assert torch.equal(masked(x).topk_idx, plain(x).topk_idx)


def test_mask_renormalises_over_allowed_set_by_hand():
    router = MaskedTopKRouter(3, 4, top_k=2)
    with torch.no_grad():
        router.weight.copy_(torch.eye(4, 3) * 1.0)
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    allowed = torch.tensor([[True, True, False, True], [False, True, False, False], [False] * 4])
    d = router(x, allowed)
    # logits row 0: [1, 2, 3, 0]; allowed {0, 1, 3}: best two are 1 (logit 2) and 0 (logit 1).
    assert d.topk_idx.tolist() == [[1, 0], [1, -1], [-1, -1]]
    expected = torch.softmax(torch.tensor([2.0, 1.0]), 0)
    torch.testing.assert_close(d.topk_w[0], expected)
    torch.testing.assert_close(d.topk_w[1], torch.tensor([1.0, 0.0]))
    assert d.topk_w[2].sum() == 0
    assert not torch.isnan(d.probs).any()


def test_mask_gradient_reaches_gate():
    router = MaskedTopKRouter(5, 3, top_k=2)
    allowed = torch.tensor([[True, True, False]] * 4)
    d = router(torch.randn(4, 5), allowed)
    (d.topk_w * torch.randn(4, 2)).sum().backward()
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0


def test_bad_mask():
    router = MaskedTopKRouter(5, 3, top_k=2)
    with pytest.raises(ValueError, match="allowed must be a bool tensor"):
        router(torch.randn(4, 5), torch.ones(4, 3))
