import pytest
import torch

from domain_moe.recsys.models.feature_gate import FeatureGate


def test_starts_at_exactly_one_and_then_learns():
    gate = FeatureGate(3, 8, rank=2)
    x = torch.randn(5, 8)
    assert torch.equal(gate.gates(x), torch.ones(3, 5, 8))
    gate(x).square().sum().backward()
    assert gate.up.grad.abs().sum() > 0  # A moves first (LoRA-style), then B follows


def test_matches_formula_per_expert():
    gate = FeatureGate(2, 6, rank=3)
    with torch.no_grad():
        gate.up.normal_()
    x = torch.randn(2, 4, 6)
    out = gate(x)
    for e in range(2):
        torch.testing.assert_close(out[e], x[e] * 2 * torch.sigmoid(x[e] @ gate.down[e] @ gate.up[e]))
    assert bool(((gate.gates(x) > 0) & (gate.gates(x) < 2)).all())


def test_bad_input():
    with pytest.raises(ValueError, match=r"\[E=2, B, D\]"):
        FeatureGate(2, 6)(torch.randn(3, 4, 6))
    with pytest.raises(ValueError, match="rank"):
        FeatureGate(2, 6, rank=0)
