import math

import pytest
import torch

from domain_moe.distill.models.pace import VerticalPace

VERTICALS = [[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]]


def test_gamma_starts_at_sqrt_nv_and_block_norms_equal_gamma():
    pace = VerticalPace(VERTICALS)
    assert pace.vertical_gamma().tolist() == pytest.approx([2.0, math.sqrt(3), math.sqrt(3)])
    with torch.no_grad():
        pace.gamma.copy_(torch.tensor([0.5, 3.0, 7.0]))
    y = pace(torch.randn(6, 10) * 5)
    for v, classes in enumerate(VERTICALS):
        torch.testing.assert_close(y[:, classes].norm(dim=1), torch.full((6,), [0.5, 3.0, 7.0][v]))


def test_direction_inside_a_block_is_kept():
    x = torch.randn(3, 10)
    y = VerticalPace(VERTICALS, mode="fixed", init=10.0)(x)
    for classes in VERTICALS:
        cos = torch.nn.functional.cosine_similarity(x[:, classes], y[:, classes], dim=1)
        torch.testing.assert_close(cos, torch.ones(3))


def test_learned_gets_gradient_fixed_does_not_none_is_identity():
    learned = VerticalPace(VERTICALS, mode="learned")
    learned(torch.randn(4, 10)).sum().backward()
    assert learned.gamma.grad is not None and learned.gamma.grad.shape == (3,)
    fixed = VerticalPace(VERTICALS, mode="fixed")
    assert not any(True for _ in fixed.parameters())
    x = torch.randn(4, 10)
    assert VerticalPace(VERTICALS, mode="none")(x) is x


def test_class_level_has_one_scale_per_class():
    pace = VerticalPace(VERTICALS, level="class", init=3.0)
    assert pace.gamma.shape == (10,)
    assert pace.vertical_gamma().tolist() == pytest.approx([3.0, 3.0, 3.0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="mode must be one of"):
        VerticalPace(VERTICALS, mode="adaptive")
    with pytest.raises(ValueError, match="init must be"):
        VerticalPace(VERTICALS, init=-1.0)
    with pytest.raises(ValueError, match=r"logits must have shape \[B, N=10\]"):
        VerticalPace(VERTICALS)(torch.randn(2, 9))
