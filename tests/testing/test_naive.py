import torch

from domain_moe.core import MLPExperts, MoE, SharedExperts, TopKRouter
from domain_moe.testing import naive_moe, naive_moe_forward


def test_naive_matches_hand_computation():
    layer = MoE(TopKRouter(4, 3, top_k=2), MLPExperts(3, 4, 8), shared=SharedExperts(4, 8)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    y, decision = naive_moe(layer, x)
    ref = layer.shared(x).clone()
    for t in range(3):
        for k in range(2):
            e = int(decision.topk_idx[t, k])
            ref[t] += decision.topk_w[t, k] * layer.experts.forward_expert(e, x[t : t + 1])[0]
    assert torch.allclose(y, ref)


def test_naive_skips_empty_slots():
    layer = MoE(TopKRouter(4, 2, top_k=1), MLPExperts(2, 4, 8))
    x = torch.randn(2, 4)
    decision = layer.router(x)
    decision = type(decision)(
        topk_idx=torch.full((2, 1), -1),
        topk_w=torch.zeros(2, 1),
        counts=torch.zeros(2, dtype=torch.long),
        num_experts=2,
    )
    assert torch.equal(naive_moe_forward(layer, x, decision), torch.zeros(2, 4))
