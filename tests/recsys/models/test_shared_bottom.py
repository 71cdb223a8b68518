import pytest
import torch

from domain_moe.recsys.models import SharedBottom


def test_is_towers_over_one_shared_mlp():
    model = SharedBottom(["a", "b"], num_dense=5, d_hidden=[7, 6], tower_hidden=[3])
    x = torch.randn(4, 5)
    h = model.bottom(x)
    assert h.shape == (4, 6) and bool((h >= 0).all())  # ReLU after every bottom layer
    torch.testing.assert_close(model(x), torch.cat([t(h) for t in model.towers.towers], 1))


def test_mmoe_default_width_and_bad_width():
    assert SharedBottom(["a"], num_dense=100).bottom[0].out_features == 113  # parameter-matched to MMoE
    with pytest.raises(ValueError, match="d_hidden"):
        SharedBottom(["a"], num_dense=3, d_hidden=[])
