import pytest
import torch

from domain_moe.recsys.models.extraction import ExtractionLayer

SCOPE = [[True, False, True], [False, True, True]]


def naive(layer, reps):
    """Per gate and row: softmax over the in-scope experts of the gate's input, experts on their own input."""
    experts = layer.moe.experts
    out = torch.zeros(layer.num_gates, reps.shape[1], layer.d_hidden)
    for g in range(layer.num_gates):
        gx = reps[layer.gate_inputs[g]]
        scope = layer.scope[g]
        logits = gx @ layer.moe.gate.weight[g].T
        probs = logits.masked_fill(~scope, float("-inf")).softmax(-1)
        for e in range(layer.num_experts):
            x = reps[layer.expert_inputs[e]]
            if layer.feature_gate is not None:
                fg = layer.feature_gate
                x = x * 2 * torch.sigmoid(x @ fg.down[e] @ fg.up[e])
            out[g] += probs[:, e : e + 1] * experts.forward_expert(e, x)
            if layer.self_gate is not None and layer.self_rows[g]:
                own = layer.self_gate.scope[g]
                sl = layer.self_gate.logits(gx)[g]
                if int(own.sum()) == 1:
                    s = torch.sigmoid(sl) * own
                else:
                    s = sl.masked_fill(~own, float("-inf")).softmax(-1)
                out[g] += s[:, e : e + 1] * experts.forward_expert(e, x)
    return out


@pytest.mark.parametrize("feature_gate", [False, True])
@pytest.mark.parametrize("self_gate", [False, True])
def test_matches_naive_oracle(feature_gate, self_gate):
    layer = ExtractionLayer(
        5, 4, expert_inputs=[0, 1, 2], gate_inputs=[0, 1], scope=SCOPE,
        self_scope=[[True, False, False], [False, True, True]] if self_gate else None,
        feature_gate=feature_gate, lora_rank=2, activation="silu",
    )
    if feature_gate:
        with torch.no_grad():
            layer.feature_gate.up.normal_()
    reps = torch.randn(3, 7, 5)
    torch.testing.assert_close(layer(reps), naive(layer, reps))


def test_masked_experts_get_no_gradient_from_a_gate():
    layer = ExtractionLayer(5, 4, expert_inputs=[0, 0, 0], gate_inputs=[0, 0], scope=SCOPE, feature_gate=True)
    with torch.no_grad():
        layer.feature_gate.up.normal_()
    out = layer(torch.randn(1, 8, 5))
    out[0].sum().backward()  # gate 0 sees experts 0 and 2 only
    w = layer.moe.experts.weight.grad
    assert torch.equal(w[1], torch.zeros_like(w[1])) and w[0].abs().sum() > 0 and w[2].abs().sum() > 0
    assert torch.equal(layer.feature_gate.up.grad[1], torch.zeros_like(layer.feature_gate.up.grad[1]))
    assert torch.equal(layer.moe.last_weights[0, :, 1], torch.zeros(8))


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="self_scope must have shape"):
        ExtractionLayer(5, 4, [0, 0], [0], self_scope=[[True]])
    with pytest.raises(ValueError, match="expert_owner"):
        ExtractionLayer(5, 4, [0, 0], [0], expert_owner=[0])
    layer = ExtractionLayer(5, 4, [0, 1], [0])
    with pytest.raises(ValueError, match=r"R>=2"):
        layer(torch.randn(1, 3, 5))
