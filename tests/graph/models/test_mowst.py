import pytest
import torch
from torch import nn

from domain_moe.graph.models.gnn import GNN
from domain_moe.graph.models.mlp import NodeMLP
from domain_moe.graph.models.mowst import ConfidenceGate, HyperConfidenceGate, Mowst, MowstOutput, dispersion


class ConstGate(nn.Module):
    """Gate with a fixed logit: +50 gives C = 1 (to float precision), -50 gives C = 0."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, inputs):
        return torch.full(inputs.shape[:1], self.logit)


def ring(n: int) -> torch.Tensor:
    src = torch.arange(n)
    dst = (src + 1) % n
    return torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)


def make(num_features=34, num_classes=4, **kwargs):
    return Mowst(num_features=num_features, num_classes=num_classes, hidden_channels=8, **kwargs)


def test_dispersion_limits():
    one_hot = torch.eye(4)
    uniform = torch.full((3, 4), 0.25)
    assert torch.allclose(dispersion(one_hot), torch.ones(4, 2))
    assert torch.allclose(dispersion(uniform), torch.zeros(3, 2), atol=1e-6)
    mid = dispersion(torch.tensor([[0.7, 0.1, 0.1, 0.1]]))
    assert ((mid > 0) & (mid < 1)).all()
    assert dispersion(one_hot, ["entropy"]).shape == (4, 1)
    with pytest.raises(ValueError, match="unknown kind"):
        dispersion(one_hot, ["gini"])


@pytest.mark.parametrize(("logit", "side"), [(50.0, "weak"), (-50.0, "strong")])
def test_confidence_limits_select_one_expert(karate, logit, side):
    model = make(gate=ConstGate(logit)).eval()
    with torch.no_grad():
        out = model(karate.x, karate.edge_index)
        expected = (out.weak_logits if side == "weak" else out.strong_logits).softmax(-1)
        assert torch.allclose(model.predict_proba(karate.x, karate.edge_index), expected, atol=1e-6)
        gen = torch.Generator().manual_seed(0)
        sampled = model.predict_proba(karate.x, karate.edge_index, mode="sample", generator=gen)
        assert torch.allclose(sampled, expected, atol=1e-6)
    # The losses reduce to the chosen expert's cross-entropy.
    ce = nn.functional.cross_entropy(out.weak_logits if side == "weak" else out.strong_logits, karate.y)
    assert torch.allclose(Mowst.separate_loss(out, karate.y), ce, atol=1e-5)
    assert torch.allclose(Mowst.joint_loss(out, karate.y), ce, atol=1e-5)


def test_joint_loss_bounded_by_separate_loss():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        n, q = 50, 5
        out = MowstOutput(
            torch.randn(n, q, generator=gen) * 3,
            torch.randn(n, q, generator=gen) * 3,
            torch.empty(0),
            torch.randn(n, generator=gen) * 2,
        )
        out = out._replace(confidence=torch.sigmoid(out.gate_logits))
        y = torch.randint(q, (n,), generator=gen)
        assert Mowst.joint_loss(out, y) <= Mowst.separate_loss(out, y) + 1e-6


def test_loss_follows_variant_and_mask(karate):
    mask = karate.train_mask
    for variant, fn in (("mowst", Mowst.separate_loss), ("mowst_star", Mowst.joint_loss)):
        model = make(variant=variant)
        out = model(karate.x, karate.edge_index)
        assert torch.equal(model.loss(out, karate.y, mask), fn(out, karate.y, mask))
    with pytest.raises(ValueError, match="y has 3 entries"):
        model.loss(out, karate.y[:3])


def test_seeded_sampling_is_reproducible(karate):
    model = make(gate=ConstGate(0.0)).eval()  # C = 0.5: the routing is as random as it gets
    draws = [
        model.sample_predict(karate.x, karate.edge_index, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)
    ]
    assert torch.equal(draws[0].to_weak, draws[1].to_weak)
    assert torch.equal(draws[0].proba, draws[1].proba)
    assert not torch.equal(draws[0].to_weak, draws[2].to_weak)


def test_sampled_accuracy_converges_to_its_expectation(karate):
    model = make(gate=ConstGate(0.3)).eval()
    with torch.no_grad():
        out = model(karate.x, karate.edge_index)
        c = out.confidence
        expected = c * (out.weak_logits.argmax(-1) == karate.y) + (1 - c) * (out.strong_logits.argmax(-1) == karate.y)
        gen = torch.Generator().manual_seed(0)
        accs = [
            (model.predict_proba(karate.x, karate.edge_index, mode="sample", generator=gen).argmax(-1) == karate.y)
            .float()
            .mean()
            for _ in range(400)
        ]
    assert abs(torch.stack(accs).mean() - expected.mean()) < 0.02


@pytest.mark.parametrize("conv", ["gcn", "sage", "gat", "gin"])
def test_lazy_inference_equals_full_on_routed_nodes(conv):
    torch.manual_seed(0)
    n = 60
    x = torch.randn(n, 6)
    edge_index = torch.cat([ring(n), torch.randint(n, (2, 10))], dim=1)
    model = Mowst(num_features=6, num_classes=3, hidden_channels=8, conv=conv, gate=ConstGate(1.5)).eval()
    with torch.no_grad():
        full = model.sample_predict(x, edge_index, generator=torch.Generator().manual_seed(1), lazy=False)
        lazy = model.sample_predict(x, edge_index, generator=torch.Generator().manual_seed(1), lazy=True)
    assert torch.equal(full.to_weak, lazy.to_weak)
    strong = ~lazy.to_weak
    assert strong.any()
    assert torch.allclose(lazy.proba[strong], full.proba[strong], atol=1e-5)
    assert torch.equal(lazy.proba[~strong], full.proba[~strong])
    assert full.gnn_work_saved == 0.0
    assert 0.0 <= lazy.gnn_work_saved < 1.0


def test_lazy_inference_saves_work_on_a_sparse_graph():
    torch.manual_seed(0)
    n = 200
    model = Mowst(num_features=4, num_classes=2, hidden_channels=8, gate=ConstGate(4.0)).eval()  # C ≈ 0.98
    with torch.no_grad():
        sample = model.sample_predict(torch.randn(n, 4), ring(n), generator=torch.Generator().manual_seed(0))
    assert model.num_hops == 3
    assert sample.gnn_work_saved > 0.5
    assert sample.strong_nodes == round((1 - sample.gnn_work_saved) * n)


def test_dispersion_gradient_isolation(karate):
    for detach, expect_grad in ((True, False), (False, True)):
        model = make(detach_dispersion=detach)
        out = model(karate.x, karate.edge_index)
        out.confidence.sum().backward()
        grads = [p.grad for p in model.weak_parameters()]
        has_grad = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert has_grad == expect_grad
        assert all(p.grad is not None for p in model.gate_parameters())


def test_frozen_side_builds_no_graph(karate):
    model = make()
    out = model(karate.x, karate.edge_index, frozen="strong")
    assert out.strong_logits.grad_fn is None and out.confidence.grad_fn is not None
    out = model(karate.x, karate.edge_index, frozen="weak")
    assert out.weak_logits.grad_fn is None and out.confidence.grad_fn is None
    assert out.strong_logits.grad_fn is not None


def test_gate_on_features_and_monotone_gate(karate):
    model = make(gate_on_features=True, monotone=True)
    assert model.gate.in_channels == 2 + 34
    gate = ConfidenceGate(num_dispersions=2, hidden_channels=16, num_layers=3, monotone=True)
    d = torch.rand(100, 2)
    assert (gate(d + torch.tensor([0.1, 0.0])) >= gate(d) - 1e-6).all()
    assert (gate(d + torch.tensor([0.0, 0.1])) >= gate(d) - 1e-6).all()
    assert make(dispersion_kinds=("entropy",)).gate.in_channels == 1


def test_injected_experts_and_errors(karate):
    model = Mowst(NodeMLP(34, 4, 8), GNN(34, 4, 8, conv="sage"))
    assert model(karate.x, karate.edge_index).weak_logits.shape == (34, 4)
    with pytest.raises(ValueError, match="num_features and num_classes"):
        Mowst()
    with pytest.raises(ValueError, match="variant"):
        make(variant="moe")
    with pytest.raises(ValueError, match="experts disagree"):
        Mowst(NodeMLP(34, 4, 8), GNN(34, 3, 8))(karate.x, karate.edge_index)
    with pytest.raises(ValueError, match="refers to node 40"):
        make()(karate.x, torch.tensor([[0], [40]]))


def test_hyper_gate_matches_a_per_node_loop_and_is_affine_in_the_dispersion():
    torch.manual_seed(0)
    k, f, h = 2, 5, 3
    gate = HyperConfidenceGate(num_dispersions=k, num_features=f, hidden_channels=h, generator_hidden=7).eval()
    d, x = torch.rand(6, k), torch.randn(6, f)
    logits = gate(torch.cat([d, x], dim=-1))
    for v in range(6):
        w1 = gate.w1(x[v]).view(k, h)
        b1, w2, b2 = gate.b1(x[v]), gate.w2(x[v]), gate.b2(x[v])
        assert torch.allclose(logits[v], (d[v] @ w1 + b1) @ w2 + b2[0], atol=1e-5)
    # For fixed features the generated gate is affine in D: G(a·D1 + (1-a)·D2) = a·G(D1) + (1-a)·G(D2).
    d2 = torch.rand(6, k)
    mix = gate(torch.cat([0.3 * d + 0.7 * d2, x], dim=-1))
    assert torch.allclose(mix, 0.3 * logits + 0.7 * gate(torch.cat([d2, x], dim=-1)), atol=1e-5)


def test_monotone_hyper_gate_and_mowst_hyper_option(karate):
    torch.manual_seed(0)
    gate = HyperConfidenceGate(num_dispersions=2, num_features=4, monotone=True)
    d, x = torch.rand(50, 2), torch.randn(50, 4)
    base = gate(torch.cat([d, x], -1))
    for step in (torch.tensor([0.1, 0.0]), torch.tensor([0.0, 0.1])):
        assert (gate(torch.cat([d + step, x], -1)) >= base - 1e-6).all()
    model = make(gate_kind="hyper")
    assert isinstance(model.gate, HyperConfidenceGate) and model.gate_on_features
    assert model(karate.x, karate.edge_index).confidence.shape == (34,)
    with pytest.raises(ValueError, match="gate_kind"):
        make(gate_kind="attention")
    with pytest.raises(ValueError, match=r"inputs must be \[N, 6\]"):
        gate(torch.rand(3, 2))


def test_reusing_the_frozen_side_is_exact(karate):
    torch.manual_seed(0)
    model = make()
    model.strong.eval()
    first = model(karate.x, karate.edge_index, frozen="strong")
    again = model(karate.x, karate.edge_index, frozen="strong", reuse=first)
    assert torch.equal(again.strong_logits, first.strong_logits) and again.strong_logits.grad_fn is None
    model.train()
    model.weak.eval()
    model.gate.eval()
    first = model(karate.x, karate.edge_index, frozen="weak")
    again = model(karate.x, karate.edge_index, frozen="weak", reuse=first)
    assert torch.equal(again.confidence, first.confidence) and again.strong_logits.grad_fn is not None
    with pytest.raises(ValueError, match="reuse needs frozen"):
        model(karate.x, karate.edge_index, reuse=first)


def test_one_softmax_before_the_dispersion_in_training_and_evaluation(karate):
    # Pitfall 1 of the official code: evaluation applied softmax twice before the dispersion.
    model = make()
    for train in (True, False):
        model.train(train)
        torch.manual_seed(0)
        out = model(karate.x, karate.edge_index)
        torch.manual_seed(0)
        weak_logits = model.weak(karate.x)
        expected = torch.sigmoid(model.gate(dispersion(weak_logits.softmax(-1))))
        assert torch.allclose(out.confidence, expected, atol=1e-6)
    with torch.no_grad():
        sample = model.sample_predict(karate.x, karate.edge_index, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sample.confidence, expected, atol=1e-6)


def test_joint_loss_is_the_cross_entropy_of_mixed_probabilities_by_hand():
    # Pitfall 2: the official Mowst* trains on mixed *logits*; the paper (and this module) mix probabilities.
    weak = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    strong = torch.tensor([[0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    gate_logits = torch.tensor([0.5, -2.0])
    c = torch.sigmoid(gate_logits)
    y = torch.tensor([1, 2])
    mix = c[:, None] * weak.softmax(-1) + (1 - c[:, None]) * strong.softmax(-1)
    by_hand = -(mix[0, 1].log() + mix[1, 2].log()) / 2
    out = MowstOutput(weak, strong, c, gate_logits)
    assert torch.allclose(Mowst.joint_loss(out, y), by_hand, atol=1e-6)
    logit_mix = c[:, None] * weak + (1 - c[:, None]) * strong
    assert not torch.allclose(Mowst.joint_loss(out, y), nn.functional.cross_entropy(logit_mix, y), atol=1e-3)
