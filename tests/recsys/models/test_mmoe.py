import pytest
import torch

from domain_moe.recsys.models import MMoE, OMoE


def test_mmoe_matches_the_paper_equation():
    """y_k = h_k(sum_i softmax(W_k x)_i f_i(x)) with single-layer ReLU experts f_i."""
    model = MMoE(["a", "b"], num_dense=6, num_experts=3, d_hidden=4, tower_hidden=[])
    x = torch.randn(5, 6)
    experts = model.moe.moe.experts
    f = torch.stack([torch.relu(x @ experts.weight[e].T + experts.bias[e]) for e in range(3)])
    for k in range(2):
        g = torch.softmax(x @ model.moe.moe.gate.weight[k].T, -1)
        h = (g.T.unsqueeze(-1) * f).sum(0)
        torch.testing.assert_close(model(x)[:, k], model.towers.towers[k](h).squeeze(-1))


def test_omoe_uses_one_gate_for_all_tasks():
    model = OMoE(["a", "b", "c"], num_dense=4, num_experts=3, d_hidden=4)
    model(torch.randn(6, 4))
    assert model.moe.num_gates == 1 and model.moe.moe.last_weights.shape == (1, 6, 3)


def test_bad_expert_count():
    with pytest.raises(ValueError, match="num_experts"):
        MMoE(["a"], num_dense=3, num_experts=0)
