import torch

from domain_moe.core.dispatch import build_plan
from domain_moe.core.types import MoEAux, RoutingDecision


def test_routing_decision_properties():
    d = RoutingDecision(
        topk_idx=torch.tensor([[0, 1], [1, -1]]),
        topk_w=torch.tensor([[0.5, 0.5], [1.0, 0.0]]),
        counts=torch.tensor([1, 2]),
        num_experts=2,
    )
    assert d.top_k == 2 and d.num_tokens == 2 and not d.is_soft


def test_plan_properties():
    plan = build_plan(torch.tensor([[2], [-1], [0]]), torch.ones(3, 1), 3)
    assert plan.num_experts == 3 and plan.num_rows == 3
    assert int(plan.valid_rows) == 2
    assert plan.row_expert().tolist() == [0, 2, 3]


def test_moe_aux_total_and_load():
    aux = MoEAux(
        losses={"a": torch.tensor(1.0), "b": torch.tensor(2.0)},
        counts=torch.tensor([1, 3]),
        num_tokens=4,
        dropped_fraction=torch.tensor(0.0),
        mean_k=torch.tensor(1.0),
    )
    assert float(aux.total) == 3.0
    assert aux.load.tolist() == [0.25, 0.75]
    empty = MoEAux(
        losses={},
        counts=torch.tensor([0, 0]),
        num_tokens=0,
        dropped_fraction=torch.tensor(0.0),
        mean_k=torch.tensor(0.0),
    )
    assert float(empty.total) == 0.0 and empty.load.tolist() == [0.0, 0.0]
