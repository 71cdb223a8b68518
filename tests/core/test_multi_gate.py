import pytest
import torch

from domain_moe.core.experts import MLPExperts
from domain_moe.core.experts.linear import LinearExperts
from domain_moe.core.multi_gate import MultiGate, MultiGateMoE, all_expert_outputs, mix_experts
from domain_moe.core.routing import DenseRouter

SCOPE = [[True, True, False, False], [False, True, True, False], [False, False, False, True]]


def test_scoped_gate_equals_dense_router_over_its_scope():
    """Oracle: each gate is the core DenseRouter over the experts in its scope, scattered into E slots."""
    gate = MultiGate(3, 4, 6, scope=SCOPE)
    x = torch.randn(9, 6)
    w = gate(x)
    for g, row in enumerate(SCOPE):
        idx = torch.tensor([e for e, keep in enumerate(row) if keep])
        router = DenseRouter(6, len(idx))
        with torch.no_grad():
            router.weight.copy_(gate.weight[g, idx])
        expected = torch.zeros(9, 4)
        expected[:, idx] = router(x).probs
        torch.testing.assert_close(w[g], expected)


def test_weights_sum_to_one_and_masked_experts_get_zero_weight_and_gradient():
    gate = MultiGate(3, 4, 6, scope=SCOPE)
    experts = LinearExperts(4, 6, 5)
    layer = MultiGateMoE(experts, gate)
    x = torch.randn(8, 6)
    w = gate(x)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 8))
    mask = torch.tensor(SCOPE)
    assert torch.equal(w.masked_select(~mask.unsqueeze(1)), torch.zeros(int((~mask).sum()) * 8))
    # Gate 0's loss must not reach experts 2 and 3 (out of its scope), nor gate 0's logits rows for them.
    out = layer(x)
    out[0].square().sum().backward()
    assert torch.equal(experts.weight.grad[2:], torch.zeros_like(experts.weight.grad[2:]))
    assert experts.weight.grad[:2].abs().sum() > 0
    assert torch.equal(gate.weight.grad[0, 2:], torch.zeros(2, 6))
    assert torch.equal(gate.weight.grad[1:], torch.zeros(2, 4, 6))


def test_multi_gate_moe_matches_naive_loop():
    experts = LinearExperts(4, 6, 5, activation="relu")
    gate = MultiGate(2, 4, 3)
    layer = MultiGateMoE(experts, gate)
    x, gx = torch.randn(7, 6), torch.randn(2, 7, 3)
    out = layer(x, gx)
    for g in range(2):
        for t in range(7):
            probs = torch.softmax(gate.weight[g] @ gx[g, t], -1)
            ref = sum(probs[e] * experts.forward_expert(e, x[t : t + 1])[0] for e in range(4))
            torch.testing.assert_close(out[g, t], ref)
    assert layer.last_weights.shape == (2, 7, 4) and not layer.last_weights.requires_grad
    assert layer.last_expert_outputs.shape == (4, 7, 5)


def test_sigmoid_and_auto_scores():
    gate = MultiGate(2, 3, 4, scope=[[True, False, False], [True, True, True]], score_fn="auto")
    x = torch.randn(5, 4)
    w = gate(x)
    logits = gate.logits(x)
    torch.testing.assert_close(w[0, :, 0], torch.sigmoid(logits[0, :, 0]))
    torch.testing.assert_close(w[1], logits[1].softmax(-1))
    sig = MultiGate(1, 3, 4, scope=[[True, False, True]], score_fn="sigmoid")
    w = sig(x)
    assert torch.equal(w[0, :, 1], torch.zeros(5))
    torch.testing.assert_close(w[0, :, 2], torch.sigmoid(sig.logits(x)[0, :, 2]))


def test_all_expert_outputs_for_containers_without_forward_all():
    experts = MLPExperts(3, d_model=4, d_hidden=8)
    x = torch.randn(5, 4)
    out = all_expert_outputs(experts, x)
    for e in range(3):
        torch.testing.assert_close(out[e], experts.forward_expert(e, x))
    with pytest.raises(ValueError, match="no forward_all"):
        all_expert_outputs(experts, torch.randn(3, 5, 4))


def test_mix_experts_shapes_checked():
    with pytest.raises(ValueError, match="must match"):
        mix_experts(torch.randn(3, 4, 2), torch.randn(2, 4, 5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scope": [[True, False], [False, False]]}, ValueError, r"gates \[1\] no expert"),
        ({"scope": [[True, True, True]]}, ValueError, r"shape \[G=2, E=2\]"),
        ({"scope": [[1, 0], [0, 1]]}, TypeError, "boolean"),
        ({"score_fn": "tanh"}, ValueError, "score_fn"),
        ({"temperature": 0}, ValueError, "temperature"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiGate(2, 2, 4, **kwargs)


def test_bad_inputs():
    gate = MultiGate(2, 3, 4)
    with pytest.raises(ValueError, match=r"\[G=2, T, D\]"):
        gate(torch.randn(3, 5, 4))
    with pytest.raises(TypeError, match="floating-point"):
        gate(torch.ones(5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_experts=3 but experts holds 2"):
        MultiGateMoE(LinearExperts(2, 4, 3), gate)
    layer = MultiGateMoE(LinearExperts(3, 4, 3), gate)
    with pytest.raises(ValueError, match="gate_x is required"):
        layer(torch.randn(3, 5, 4))
