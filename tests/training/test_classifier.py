import doctest

import pytest
import torch

import domain_moe.training.classifier as classifier_module
from domain_moe.core import MoE, collect_aux
from domain_moe.training import MoEClassifier


def small(**kwargs):
    args = {"num_features": 12, "num_classes": 3, "d_model": 16, "d_hidden": 16, "num_experts": 4, "top_k": 2}
    return MoEClassifier(**{**args, **kwargs})


def test_examples():
    assert doctest.testmod(classifier_module).failed == 0


def test_shapes_and_flattening():
    model = small()
    assert model(torch.randn(5, 12)).shape == (5, 3)
    assert model(torch.randn(5, 3, 4)).shape == (5, 3)
    assert model(torch.randn(5, 12, dtype=torch.float32)).dtype == torch.float32


def test_structure_and_repr():
    model = small(num_layers=3, backend="torch_loop", bias_balancing=True)
    layers = [m for m in model.modules() if isinstance(m, MoE)]
    assert len(layers) == 3
    assert all(layer.backend == "torch_loop" for layer in layers)
    assert all(hasattr(layer.router, "selection_bias") for layer in layers)
    assert "num_features=12, num_classes=3, d_model=16, num_layers=3" in repr(model)


def test_aux_losses_and_gradients_reach_routers():
    model = small()
    out = model(torch.randn(8, 12))
    aux = collect_aux(model)
    assert aux.item() > 0
    (out.square().mean() + aux).backward()
    for layer in model.moes:
        assert layer.router.weight.grad is not None
        assert layer.router.weight.grad.abs().sum() > 0
        assert layer.experts.w1.grad is not None


@pytest.mark.parametrize("backend", ["torch_loop", "torch_grouped", "dense_all"])
def test_backends_agree(backend):
    torch.manual_seed(0)
    ref = small(backend="torch_loop")
    other = small(backend=backend)
    other.load_state_dict(ref.state_dict())
    x = torch.randn(7, 12)
    torch.testing.assert_close(other(x), ref(x), rtol=1e-5, atol=1e-5)


def test_reset_parameters_and_state_dict_round_trip():
    torch.manual_seed(0)
    model = small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_parameters()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    clone = small()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(4, 12)
    assert torch.equal(clone(x), model(x))


def test_float64():
    model = small(dtype=torch.float64)
    assert model(torch.randn(3, 12, dtype=torch.float64)).dtype == torch.float64


def test_dropout_only_in_training():
    model = small(dropout=0.5).eval()
    x = torch.randn(4, 12)
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_features": 0}, "num_features"),
        ({"num_classes": -1}, "num_classes"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_layers": True}, "num_layers"),
        ({"d_model": 2.5}, "d_model"),
        ({"dropout": 1.0}, "dropout"),
        ({"top_k": 9}, "top_k"),
        ({"backend": "nope"}, "backend"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small(**kwargs)


def test_bad_input():
    model = small()
    with pytest.raises(ValueError, match=r"num_features=12.*\(5, 11\)"):
        model(torch.randn(5, 11))
    with pytest.raises(ValueError, match="num_features"):
        model(torch.randn(12))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        model([[0.0] * 12])
