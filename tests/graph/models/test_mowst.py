import pytest
import torch
from torch import nn

from domain_moe.graph.models.gnn import GNN
from domain_moe.graph.models.mlp import NodeMLP
from domain_moe.graph.models.mowst import ConfidenceGate, Mowst, MowstOutput, dispersion


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
