"""GMoPE-style prompt-expert mixture: oracle mixture, orthogonality, routers, parameter groups, errors."""

import pytest
import torch
import torch.nn.functional as F

from domain_moe.core import losses
from domain_moe.core.routing.dense import DenseRouter
from domain_moe.graph.models.gmope import GMoPE, PromptExpertMoE, structure_summary
from domain_moe.graph.models.gnn import GNN
from domain_moe.testing import check_router

EDGES = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 0, 5], [1, 0, 2, 1, 3, 2, 4, 3, 5, 0]])


def _graph(num_nodes=6, num_features=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num_nodes, num_features, generator=gen), EDGES


def test_structure_summary_matches_dense_propagation():
    x, ei = _graph()
    n = x.size(0)
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0
    a = a + torch.eye(n)
    d = a.sum(1).rsqrt()
    a_hat = d[:, None] * a * d[None, :]
    deg = torch.zeros(n).index_add_(0, ei[1], torch.ones(ei.size(1)))
    want = torch.cat([x, a_hat @ x, a_hat @ a_hat @ x, torch.log1p(deg)[:, None]], dim=1)
    torch.testing.assert_close(structure_summary(x, ei, hops=2), want)


def test_structure_summary_rejects_negative_hops():
    with pytest.raises(ValueError, match="hops"):
        structure_summary(torch.ones(2, 2), EDGES[:, :1], hops=-1)


def test_dense_mixture_equals_per_expert_oracle():
    torch.manual_seed(0)
    model = GMoPE(num_features=8, num_classes=3, num_experts=3, hidden_channels=5)
    x, ei = _graph()
    out = model.embed(x, ei)
    moe = model.encoder
    gates = torch.softmax(moe.router.weight @ structure_summary(x, ei, 2).T, dim=0).T  # [N, E]
    want = sum(gates[:, e : e + 1] * gnn(x + moe.prompt.weight[e], ei) for e, gnn in enumerate(moe.expert_modules()))
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(model(x, ei), model.head(want))
    torch.testing.assert_close(model.expert_load(), gates.mean(0))


def test_top_k_mixture_uses_only_selected_experts():
    torch.manual_seed(1)
    model = GMoPE(num_features=8, num_classes=2, num_experts=4, hidden_channels=6, router="top_k", top_k=2)
    x, ei = _graph()
    out = model.embed(x, ei)
    moe = model.encoder
    probs = torch.softmax(structure_summary(x, ei, 2) @ moe.router.weight.T, dim=-1)
    top_w, top_i = probs.topk(2, dim=-1)
    top_w = top_w / top_w.sum(-1, keepdim=True)
    experts = [gnn(x + moe.prompt.weight[e], ei) for e, gnn in enumerate(moe.expert_modules())]
    want = torch.stack([sum(top_w[n, j] * experts[int(top_i[n, j])][n] for j in range(2)) for n in range(x.size(0))])
    torch.testing.assert_close(out, want)


def test_random_router_picks_one_expert_per_node_and_is_seeded():
    model = GMoPE(num_features=8, num_classes=2, num_experts=3, hidden_channels=4, router="random").eval()
    x, ei = _graph()
    torch.manual_seed(5)
    first = model.embed(x, ei)
    torch.manual_seed(5)
    torch.testing.assert_close(model.embed(x, ei), first)
    moe = model.encoder
    experts = torch.stack([gnn(x + moe.prompt.weight[e], ei) for e, gnn in enumerate(moe.expert_modules())])
    matches = (experts - first.unsqueeze(0)).abs().amax(-1) < 1e-6  # [E, N]
    assert bool(matches.any(0).all())
    assert model.router_parameters() == []


def test_single_expert_is_gpf():
    model = GMoPE(num_features=8, num_classes=3, num_experts=1, hidden_channels=4)
    x, ei = _graph()
    gnn = model.encoder.expert_modules()[0]
    torch.testing.assert_close(model(x, ei), model.head(gnn(x + model.prompts.weight[0], ei)))
    assert "orth" not in model.encoder.last_aux.losses


def test_orthogonality_loss_zero_for_orthonormal_prompts():
    model = GMoPE(num_features=8, num_classes=2, num_experts=4, hidden_channels=4, orth_weight=0.5)
    with torch.no_grad():
        model.prompts.weight.copy_(torch.eye(8)[:4] * 3.0)  # orthogonal; normalised rows are orthonormal
    model(*_graph())
    assert float(model.encoder.last_aux.losses["orth"].detach()) == 0.0


def test_orthogonality_loss_for_collinear_prompts_by_hand():
    model = GMoPE(num_features=8, num_classes=2, num_experts=4, hidden_channels=4, orth_weight=0.5)
    with torch.no_grad():
        model.prompts.weight.copy_(torch.ones(4, 8))
    model(*_graph())
    # Gram of four identical unit rows is all ones: ||J - I||_F^2 / E^2 = (E^2 - E) / E^2 = 3/4.
    torch.testing.assert_close(model.encoder.last_aux.losses["orth"], torch.tensor(0.5 * 0.75))


def test_orthogonality_gradient_reaches_prompts_only():
    model = GMoPE(num_features=8, num_classes=2, num_experts=3, hidden_channels=4)
    model(*_graph())
    model.encoder.last_aux.losses["orth"].backward()
    assert model.prompts.weight.grad is not None and model.prompts.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone_parameters())


def test_balance_loss_matches_core_importance_load():
    model = GMoPE(num_features=8, num_classes=2, num_experts=3, hidden_channels=4, balance_weight=0.3)
    x, ei = _graph()
    model(x, ei)
    logits = structure_summary(x, ei, 2) @ model.encoder.router.weight.T
    imp, load = losses.importance_load_cv2(logits.softmax(-1), logits, None, None, 3)
    torch.testing.assert_close(model.encoder.last_aux.losses["balance"], 0.3 * (imp + load))


def test_parameter_groups_and_freeze():
    model = GMoPE(num_features=8, num_classes=3, num_experts=2, hidden_channels=4)
    total = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.backbone_parameters())
    summary_width = 3 * 8 + 1
    prompt_only = 2 * 8 + 2 * summary_width + (4 * 3 + 3)
    assert model.freeze("prompt") == prompt_only == total - backbone
    assert all(not p.requires_grad for p in model.backbone_parameters())
    assert all(p.requires_grad for p in model.prompt_parameters() + model.head_parameters())
    assert model.freeze("full") == total
    assert model.freeze("head") == 4 * 3 + 3
    assert model.freeze("prompt_head") == 2 * 8 + 4 * 3 + 3
    assert all(not p.requires_grad for p in model.router_parameters())
    with pytest.raises(ValueError, match="mode"):
        model.freeze("all")  # type: ignore[arg-type]


def test_prompt_only_gradients_skip_backbone():
    model = GMoPE(num_features=8, num_classes=3, num_experts=2, hidden_channels=4)
    model.freeze("prompt")
    x, ei = _graph()
    F.cross_entropy(model(x, ei), torch.tensor([0, 1, 2, 0, 1, 2])).backward()
    assert all(p.grad is None for p in model.backbone_parameters())
    assert all(p.grad is not None for p in model.tunable_parameters("prompt"))


def test_seeded_construction_is_deterministic():
    x, ei = _graph()
    torch.manual_seed(3)
    first = GMoPE(num_features=8, num_classes=3)(x, ei)
    torch.manual_seed(3)
    torch.testing.assert_close(GMoPE(num_features=8, num_classes=3)(x, ei), first)


def test_router_conformance():
    router = GMoPE(num_features=4, num_classes=2, num_experts=3).encoder.router
    check_router(router, weights_sum=1.0)


def test_custom_router_object():
    router = DenseRouter(3 * 8 + 1, 2, temperature=0.5)
    experts = [GNN(8, 4, norm=False) for _ in range(2)]
    moe = PromptExpertMoE(experts, 8, 4, router=router)
    assert moe.router is router
    with pytest.raises(ValueError, match="d_model=25"):
        PromptExpertMoE(experts, 8, 4, router=DenseRouter(8, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_features": 0}, "num_features"),
        ({"num_experts": 0}, "num_experts"),
        ({"orth_weight": -1.0}, "orth_weight"),
        ({"balance_weight": float("nan")}, "balance_weight"),
        ({"router": "switch"}, "router"),
        ({"hops": -1}, "hops"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    base = {"num_features": 8, "num_classes": 2}
    with pytest.raises(ValueError, match=match):
        GMoPE(**{**base, **kwargs})


def test_bad_inputs_name_the_argument():
    model = GMoPE(num_features=8, num_classes=2, num_experts=2, hidden_channels=4)
    x, ei = _graph()
    with pytest.raises(ValueError, match=r"x must be \[N, in_channels=8\], got \(6, 7\)"):
        model(x[:, :7], ei)
    with pytest.raises(ValueError, match=r"edge_index must index nodes in \[0, 6\)"):
        model(x, ei + 10)
    with pytest.raises(ValueError, match=r"edge_index must be \[2, N_e\]"):
        model(x, ei[0])
