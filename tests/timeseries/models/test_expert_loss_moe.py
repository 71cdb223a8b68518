import pytest
import torch

from domain_moe.core.dense_moe import DenseMoE
from domain_moe.core.routing.dense import DenseRouter
from domain_moe.timeseries.models import ExpertLossMoE, ForecastOutput


def test_shapes_and_mixture_is_gate_weighted_sum_of_expert_forecasts():
    model = ExpertLossMoE(input_size=10, horizon=5, num_experts=4, num_linear=2, d_hidden=8)
    out = model(torch.randn(7, 10))
    assert isinstance(out, ForecastOutput)
    assert out.y.shape == (7, 5) and out.expert_y.shape == (7, 4, 5) and out.gate.shape == (7, 4)
    torch.testing.assert_close(out.gate.sum(-1), torch.ones(7))
    torch.testing.assert_close(out.y, torch.einsum("be,beh->bh", out.gate, out.expert_y))
    # the gate and the layer come from the shared core
    assert isinstance(model.moe, DenseMoE) and isinstance(model.moe.router, DenseRouter)
    assert [type(e).__name__ for e in model.moe.experts.experts] == ["Linear", "Linear", "Sequential", "Sequential"]


def test_single_expert_has_gate_one():
    model = ExpertLossMoE(input_size=4, horizon=2, num_experts=1, num_linear=0)
    out = model(torch.randn(3, 4))
    torch.testing.assert_close(out.gate, torch.ones(3, 1))
    torch.testing.assert_close(out.y, out.expert_y[:, 0])


def test_parameter_groups_partition_the_model():
    model = ExpertLossMoE(input_size=4, horizon=2)
    ids = {id(p) for p in model.gate_parameters} | {id(p) for p in model.expert_parameters}
    assert ids == {id(p) for p in model.parameters()}
    assert not {id(p) for p in model.gate_parameters} & {id(p) for p in model.expert_parameters}


def test_seeded_determinism_and_reset():
    def build():
        torch.manual_seed(1)
        return ExpertLossMoE(input_size=6, horizon=3)

    x = torch.randn(5, 6)
    a, b = build(), build()
    torch.testing.assert_close(a(x).y, b(x).y, rtol=0, atol=0)
    before = a(x).y.clone()
    a.reset_parameters()
    assert not torch.allclose(a(x).y, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_size": 0, "horizon": 2}, "input_size"),
        ({"input_size": 3, "horizon": 2, "num_linear": 5}, "num_linear"),
        ({"input_size": 3, "horizon": 2, "dropout": 1.0}, "dropout"),
        ({"input_size": 3, "horizon": 2, "temperature": 0.0}, "temperature"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExpertLossMoE(**kwargs)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"input_size=4"):
        ExpertLossMoE(input_size=4, horizon=2)(torch.randn(3, 5))
