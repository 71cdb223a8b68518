import pytest
import torch

from domain_moe.core.experts.activation import ACTIVATIONS, get_activation


def test_known_names():
    x = torch.linspace(-2, 2, 9)
    assert torch.equal(get_activation("relu")(x), x.clamp_min(0))
    assert torch.equal(get_activation("identity")(x), x)
    assert set(ACTIVATIONS) == {"relu", "gelu", "gelu_tanh", "silu", "identity"}


def test_unknown_name():
    with pytest.raises(ValueError, match="activation"):
        get_activation("mish")
