import pytest
import torch

from domain_moe.distill.models.convnet import ConvNet


def test_features_and_logits():
    x = torch.randn(3, 2, 28, 56)
    assert ConvNet(2, 0, (4, 8, 16))(x).shape == (3, 16)
    assert ConvNet(2, 7, (4, 8))(x).shape == (3, 7)


def test_seeded_init_is_deterministic():
    torch.manual_seed(3)
    a = ConvNet(1, 5)
    torch.manual_seed(3)
    b = ConvNet(1, 5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_bad_inputs():
    with pytest.raises(ValueError, match="widths"):
        ConvNet(1, 0, ())
    with pytest.raises(ValueError, match="num_classes"):
        ConvNet(1, -1)
    with pytest.raises(ValueError, match=r"x must have shape \[B, in_chans=1, H, W\]"):
        ConvNet(1, 0)(torch.randn(2, 3, 28, 28))


def test_pool_grid_keeps_left_and_right_apart():
    torch.manual_seed(0)
    net = ConvNet(1, 0, (4,), pool=(1, 2))
    assert net.num_features == 8
    left, right = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8) + 1
    a = net(torch.cat([left, right], -1))
    b = net(torch.cat([right, left], -1))
    assert not torch.allclose(a, b)  # global pooling could not tell the two orders apart
    with pytest.raises(ValueError, match="pool must be two positive ints"):
        ConvNet(1, 0, pool=(1,))
