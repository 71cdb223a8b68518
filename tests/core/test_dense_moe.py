import pytest
import torch
from torch import nn

from domain_moe.core import DenseRouter, MLPExperts, ModuleListExperts, MoE, SoftMoERouter, TopKRouter, collect_aux
from domain_moe.core.dense_moe import DenseMoE, DenseMoEOutput


def _hetero(d=6, out=3):
    return ModuleListExperts(
        [nn.Linear(d, out), nn.Linear(d, out), nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, out))], d, out
    )


def test_matches_moe_with_dense_router():
    router, experts = DenseRouter(6, 3), _hetero()
    dense, sparse = DenseMoE(router, experts), MoE(router, experts, backend="torch_loop")
    x = torch.randn(7, 6)
    out = dense.forward_experts(x)
    assert isinstance(out, DenseMoEOutput)
    torch.testing.assert_close(out.y, sparse(x))
    torch.testing.assert_close(out.gate.sum(-1), torch.ones(7))
    for e in range(3):
        torch.testing.assert_close(out.expert_y[e], experts.forward_expert(e, x))


def test_matches_moe_with_top_k_router_and_zero_gate_for_unpicked():
    router = TopKRouter(8, num_experts=4, top_k=2)
    experts = MLPExperts(4, 8, 16)
    dense, sparse = DenseMoE(router, experts), MoE(router, experts, backend="torch_loop")
    x = torch.randn(2, 5, 8)
    out = dense.forward_experts(x)
    torch.testing.assert_close(out.y, sparse(x), rtol=1e-5, atol=1e-6)
    assert out.expert_y.shape == (4, 2, 5, 8) and out.gate.shape == (2, 5, 4)
    assert ((out.gate > 0).sum(-1) == 2).all()
    # The aux losses of the call are kept on the layer, so collect_aux and MoETask see them.
    assert collect_aux(nn.Sequential(dense)).item() > 0


def test_expert_outputs_carry_gradient_when_gate_is_zero():
    router = DenseRouter(6, 3)
    with torch.no_grad():  # a gate that gives expert 2 (almost) nothing
        router.weight.zero_()
        router.weight[0] += 30.0
    layer = DenseMoE(router, _hetero())
    x = torch.ones(4, 6)
    out = layer.forward_experts(x)
    assert out.gate[:, 2].max() < 1e-10
    out.y.sum().backward(retain_graph=True)
    starved = layer.experts.experts[2][0].weight.grad.abs().max()
    layer.zero_grad()
    out.expert_y[2].sum().backward()
    own = layer.experts.experts[2][0].weight.grad.abs().max()
    assert starved < 1e-8 < own


def test_shared_experts_are_added():
    router, experts = DenseRouter(6, 3), _hetero()
    shared = nn.Linear(6, 3)
    x = torch.randn(4, 6)
    out = DenseMoE(router, experts, shared=shared).forward_experts(x)
    torch.testing.assert_close(out.y - torch.einsum("te,etd->td", out.gate, out.expert_y), shared(x))


def test_bad_input_and_soft_router():
    layer = DenseMoE(DenseRouter(6, 3), _hetero())
    with pytest.raises(ValueError, match="d_model=6"):
        layer(torch.randn(4, 5))
    with pytest.raises(TypeError, match="floating point"):
        layer(torch.ones(4, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="Soft MoE"):
        DenseMoE(SoftMoERouter(6, 3, slots_per_expert=1), MLPExperts(3, 6, 8))


def test_seeded_determinism():
    def run():
        torch.manual_seed(3)
        layer = DenseMoE(DenseRouter(6, 3), _hetero())
        return layer(torch.randn(5, 6))

    torch.testing.assert_close(run(), run(), rtol=0, atol=0)
