import pytest
import torch
from torch import nn

from domain_moe.core.dispatch import build_plan
from domain_moe.core.experts import ModuleListExperts
from domain_moe.testing import check_experts


def test_conformance_heterogeneous():
    experts = ModuleListExperts(
        [nn.Linear(6, 4), nn.Sequential(nn.Linear(6, 32), nn.GELU(), nn.Linear(32, 4)), nn.Linear(6, 4, bias=False)],
        d_model=6,
        d_out=4,
    )
    check_experts(experts)


def test_empty_expert_is_not_called():
    class Exploding(nn.Module):
        def forward(self, x):
            raise AssertionError("called with no rows")

    experts = ModuleListExperts([nn.Linear(4, 4), Exploding()], d_model=4)
    plan = build_plan(torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1), 2)
    assert experts(torch.randn(3, 4), plan, "torch_loop").shape == (3, 4)


def test_batchnorm_expert_with_no_rows():
    experts = ModuleListExperts([nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)) for _ in range(2)], d_model=4)
    plan = build_plan(torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1), 2)
    experts.train()
    assert experts(torch.randn(3, 4), plan, "torch_loop").shape == (3, 4)


@pytest.mark.parametrize(
    ("modules", "error", "match"),
    [([], ValueError, "at least one"), ([nn.Linear(2, 2), "relu"], TypeError, r"experts\[1\]")],
)
def test_bad_arguments(modules, error, match):
    with pytest.raises(error, match=match):
        ModuleListExperts(modules, d_model=2)


def test_wrong_output_width_names_the_expert():
    experts = ModuleListExperts([nn.Linear(4, 4), nn.Linear(4, 3)], d_model=4)
    plan = build_plan(torch.tensor([[0], [1]]), torch.ones(2, 1), 2)
    with pytest.raises(ValueError, match=r"experts\[1\].*d_out=4"):
        experts(torch.randn(2, 4), plan, "torch_loop")


def test_repr():
    experts = ModuleListExperts([nn.Identity()], d_model=3)
    assert "num_experts=1, d_model=3, d_out=3, row_wise=True" in repr(experts)
