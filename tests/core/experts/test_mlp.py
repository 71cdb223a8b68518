import pytest
import torch
from torch import nn

from domain_moe.core.dispatch import build_plan
from domain_moe.core.experts import MLPExperts
from domain_moe.testing import check_experts


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "silu", "identity"])
@pytest.mark.parametrize("bias", [True, False])
def test_conformance_every_backend(activation, bias):
    check_experts(MLPExperts(5, 8, 12, activation=activation, bias=bias))


def test_float64_conformance_skips_grouped_only():
    check_experts(MLPExperts(3, 8, 12, d_out=4, dtype=torch.float64), atol=1e-12)


def test_repr_and_shapes():
    experts = MLPExperts(4, 16, 32, d_out=8)
    assert repr(experts) == "MLPExperts(num_experts=4, d_model=16, d_out=8, d_hidden=32, activation='gelu', bias=True)"
    assert experts.w1.shape == (4, 32, 16) and experts.w2.shape == (4, 8, 32)
    assert experts.b1.shape == (4, 32) and experts.b2.shape == (4, 8)


def test_initialisation_matches_nn_linear_statistics():
    torch.manual_seed(0)
    experts = MLPExperts(64, 32, 48)
    bound = 1 / 32**0.5
    assert experts.w1.abs().max() <= bound + 1e-6 and experts.b1.abs().max() <= bound + 1e-6
    ref = nn.Linear(32, 48).weight
    assert abs(experts.w1.std().item() - ref.std().item()) < 0.1 * ref.std().item()


def test_one_expert_equals_dense_ffn():
    experts = MLPExperts(1, 8, 16, activation="relu")
    ffn = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    with torch.no_grad():
        ffn[0].weight.copy_(experts.w1[0])
        ffn[0].bias.copy_(experts.b1[0])
        ffn[2].weight.copy_(experts.w2[0])
        ffn[2].bias.copy_(experts.b2[0])
    x = torch.randn(5, 8)
    plan = build_plan(torch.zeros(5, 1, dtype=torch.long), torch.ones(5, 1), 1)
    for backend in experts.supported_backends:
        assert torch.allclose(experts(x, plan, backend), ffn(x), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_experts": 0}, "num_experts"), ({"d_hidden": 0}, "d_hidden"), ({"activation": "swish2"}, "activation")],
)
def test_bad_arguments(kwargs, match):
    args = {"num_experts": 2, "d_model": 4, "d_hidden": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        MLPExperts(**args)


def test_unknown_backend_raises():
    experts = MLPExperts(2, 4, 8)
    plan = build_plan(torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1), 2)
    with pytest.raises(ValueError, match="backend"):
        experts(torch.randn(3, 4), plan, "bogus")
