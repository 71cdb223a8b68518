import pytest
import torch
import torch.nn.functional as F
from torch import nn

from domain_moe.core.experts.linear import LinearExperts
from domain_moe.core.multi_gate import all_expert_outputs
from domain_moe.testing import check_experts


@pytest.mark.parametrize("norm", [None, "layer"])
def test_conformance_row_wise(norm):
    check_experts(LinearExperts(3, 6, 4, activation="silu", norm=norm))


def test_conformance_batchnorm_in_eval_mode():
    experts = LinearExperts(3, 6, 4, norm="batch")
    experts.running_mean.normal_()
    experts.running_var.uniform_(0.5, 2.0)
    check_experts(experts.eval())


def test_repr():
    experts = LinearExperts(2, 5, 3, activation="silu", norm="batch")
    assert repr(experts) == (
        "LinearExperts(num_experts=2, d_model=5, d_out=3, activation='silu', norm='batch', bias=False)"
    )


def test_forward_all_matches_per_expert_modules():
    """Oracle: E separate nn.Linear + nn.BatchNorm1d + SiLU modules with the same parameters."""
    torch.manual_seed(1)
    experts = LinearExperts(3, 6, 4, activation="silu", norm="batch")
    with torch.no_grad():
        experts.norm_weight.uniform_(0.5, 1.5)
        experts.norm_bias.normal_()
    refs = []
    for e in range(3):
        lin = nn.Linear(6, 4, bias=False)
        bn = nn.BatchNorm1d(4)
        with torch.no_grad():
            lin.weight.copy_(experts.weight[e])
            bn.weight.copy_(experts.norm_weight[e])
            bn.bias.copy_(experts.norm_bias[e])
        refs.append(nn.Sequential(lin, bn, nn.SiLU()))
    x = torch.randn(3, 16, 6)  # one input per expert
    out = experts.forward_all(x)
    for e in range(3):
        torch.testing.assert_close(out[e], refs[e](x[e]))
        torch.testing.assert_close(experts.running_mean[e], refs[e][1].running_mean)
        torch.testing.assert_close(experts.running_var[e], refs[e][1].running_var)
    experts.eval()
    for r in refs:
        r.eval()
    out = experts.forward_all(x)
    for e in range(3):
        torch.testing.assert_close(out[e], refs[e](x[e]))


def test_shared_input_equals_repeated_input_and_gradients_flow():
    experts = LinearExperts(4, 5, 3, activation="relu")
    x = torch.randn(7, 5, requires_grad=True)
    out = experts.forward_all(x)
    torch.testing.assert_close(out, experts.forward_all(x.expand(4, 7, 5)))
    out.sum().backward()
    assert experts.weight.grad is not None and x.grad is not None
    ref = F.relu(F.linear(x, experts.weight[2], experts.bias[2]))
    torch.testing.assert_close(out[2], ref)
    torch.testing.assert_close(all_expert_outputs(experts, x), out)


def test_layer_norm_per_expert():
    experts = LinearExperts(2, 5, 8, activation="identity", norm="layer")
    out = experts.forward_all(torch.randn(6, 5))
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)


def test_batchnorm_rejects_training_backends_and_single_rows():
    experts = LinearExperts(2, 4, 3, norm="batch")
    assert experts.supported_backends == ("dense_all",)
    with pytest.raises(ValueError, match="at least 2 rows"):
        experts.forward_all(torch.randn(1, 4))
    experts.eval()
    assert experts.forward_all(torch.randn(1, 4)).shape == (2, 1, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"norm": "group"}, "norm must be one of"), ({"activation": "tanh"}, "activation must be one of"),
     ({"d_out": 0}, "d_out must be a positive int")],
)
def test_bad_arguments(kwargs, match):
    args = {"num_experts": 2, "d_model": 4, "d_out": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        LinearExperts(**args)


def test_bad_input_shapes():
    experts = LinearExperts(2, 4, 3)
    with pytest.raises(ValueError, match=r"\[E=2, T, D\]"):
        experts.forward_all(torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match=r"D=4"):
        experts.forward_all(torch.randn(5, 3))
