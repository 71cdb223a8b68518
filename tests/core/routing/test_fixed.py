import pytest
import torch

from domain_moe.core.dispatch import build_plan, combine
from domain_moe.core.experts import ModuleListExperts
from domain_moe.core.routing.fixed import fixed_decision


def test_counts_weights_and_none_slots():
    d = fixed_decision(torch.tensor([[0, 1], [1, -1], [1, 1]]), num_experts=3)
    assert d.counts.tolist() == [1, 4, 0]
    assert d.topk_w.tolist() == [[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    assert d.logits is None and d.probs is None


def test_given_weights_are_kept_and_zeroed_on_none():
    w = torch.tensor([0.5, 2.0, 3.0])
    d = fixed_decision(torch.tensor([1, -1, 0]), num_experts=2, weight=w)
    assert d.topk_w.squeeze(1).tolist() == [0.5, 0.0, 3.0]


def test_dispatch_runs_each_token_through_its_expert_only():
    torch.manual_seed(0)
    experts = ModuleListExperts([torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)], d_model=4, d_out=3)
    x = torch.randn(5, 4)
    idx = torch.tensor([1, 0, 0, 1, 1])
    d = fixed_decision(idx, 2)
    plan = build_plan(d.topk_idx, d.topk_w, 2)
    y = combine(experts(x, plan, "torch_loop"), d.topk_w, plan)
    oracle = torch.stack([experts.experts[int(e)](x[i]) for i, e in enumerate(idx)])
    torch.testing.assert_close(y, oracle)


@pytest.mark.parametrize(
    ("idx", "kwargs", "err", "match"),
    [
        (torch.tensor([0.0, 1.0]), {}, TypeError, "integer tensor"),
        (torch.tensor([[[0]]]), {}, ValueError, r"\[T\] or \[T, K\]"),
        (torch.tensor([0, 3]), {}, ValueError, r"\[-1, 3\).*\[0, 3\]"),
        (torch.tensor([0, -2]), {}, ValueError, r"\[-2, 0\]"),
        (torch.tensor([0, 1]), {"weight": torch.ones(3)}, ValueError, "weight must have"),
    ],
)
def test_bad_inputs(idx, kwargs, err, match):
    with pytest.raises(err, match=match):
        fixed_decision(idx, 3, **kwargs)


def test_bad_num_experts():
    with pytest.raises(ValueError, match="num_experts"):
        fixed_decision(torch.tensor([0]), 0)
