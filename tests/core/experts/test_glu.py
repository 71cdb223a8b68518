import torch
import torch.nn.functional as F

from domain_moe.core.dispatch import build_plan
from domain_moe.core.experts import GLUExperts
from domain_moe.testing import check_experts


def test_conformance():
    check_experts(GLUExperts(4, 8, 12))
    check_experts(GLUExperts(4, 8, 12, activation="gelu", bias=True))


def test_blocked_layout_is_gate_then_up():
    experts = GLUExperts(2, 4, 4, bias=False)
    x = torch.randn(5, 4)
    gate = x @ experts.w13[1, :4].T
    up = x @ experts.w13[1, 4:].T
    ref = (F.silu(gate) * up) @ experts.w2[1].T
    assert torch.allclose(experts.forward_expert(1, x), ref, atol=1e-6)
    plan = build_plan(torch.ones(5, 1, dtype=torch.long), torch.ones(5, 1), 2)
    assert torch.allclose(experts(x, plan, "torch_grouped"), ref, atol=1e-6)


def test_repr():
    assert repr(GLUExperts(2, 4, 3)) == (
        "GLUExperts(num_experts=2, d_model=4, d_out=4, d_hidden=3, activation='silu', bias=False)"
    )
