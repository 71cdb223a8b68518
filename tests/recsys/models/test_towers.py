import pytest
import torch

from domain_moe.recsys.models.towers import Towers, mlp


def test_each_task_uses_its_own_tower():
    towers = Towers(3, 4, [5])
    h = torch.randn(3, 6, 4)
    out = towers(h)
    for t in range(3):
        torch.testing.assert_close(out[:, t], towers.towers[t](h[t]).squeeze(-1))
    shared = torch.randn(6, 4)
    torch.testing.assert_close(towers(shared), towers(shared.expand(3, 6, 4)))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[T=3, B, 4\]"):
        Towers(3, 4)(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="positive ints"):
        mlp(3, [0])
