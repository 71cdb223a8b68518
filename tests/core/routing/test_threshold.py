import pytest
import torch
from torch import nn

from domain_moe.core.routing import ThresholdRouter
from domain_moe.testing import check_router


class _FixedGate(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x):
        return self.logits[: x.shape[0]] + 0 * x.sum()


def test_conformance():
    check_router(ThresholdRouter(8, 4, top_k=2, threshold=0.5))
    check_router(ThresholdRouter(8, 4, top_k=3, threshold=None))


def test_threshold_and_cap_by_hand():
    logits = torch.tensor([[2.0, -1.0, 1.0, 3.0], [-2.0, -3.0, -1.0, -4.0], [0.5, -0.1, -0.2, -0.3]])
    router = ThresholdRouter(4, 4, top_k=2, threshold=0.5, gate=_FixedGate(logits))
    d = router(torch.zeros(3, 4))
    assert d.topk_idx.tolist() == [[3, 0], [-1, -1], [0, -1]]
    torch.testing.assert_close(d.topk_w[0], torch.sigmoid(torch.tensor([3.0, 2.0])))
    assert d.topk_w[1].abs().sum() == 0
    assert d.counts.tolist() == [2, 0, 0, 1]


def test_fixed_k_mode_exactly_k():
    router = ThresholdRouter(6, 5, top_k=3, threshold=None)
    d = router(torch.randn(20, 6))
    assert ((d.topk_idx >= 0).sum(-1) == 3).all()


def test_bce_loss_matches_torch():
    router = ThresholdRouter(6, 3, top_k=2)
    d = router(torch.randn(4, 6))
    target = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 1]])
    expected = nn.functional.binary_cross_entropy(d.logits.sigmoid(), target.float())
    torch.testing.assert_close(router.bce_loss(d, target), expected)
    with pytest.raises(ValueError, match="target must have shape"):
        router.bce_loss(d, target[:2])


def test_bad_arguments():
    with pytest.raises(ValueError, match="top_k"):
        ThresholdRouter(4, 3, top_k=4)
    with pytest.raises(ValueError, match="threshold"):
        ThresholdRouter(4, 3, top_k=1, threshold=1.5)
    with pytest.raises(TypeError, match="gate"):
        ThresholdRouter(4, 3, gate="linear")
    with pytest.raises(ValueError, match="gate must map"):
        ThresholdRouter(4, 3, gate=nn.Linear(4, 2))(torch.randn(2, 4))
