"""Every multi-task model: output shape, gradient flow, reset, task-name validation."""

import pytest
import torch

from domain_moe.recsys.models import CGC, PLE, HoME, MMoE, OMoE, SharedBottom

TASKS = ["click", "ev", "lv", "like", "comment"]
GROUPS = {"watch": ["ev", "lv"], "interact": ["like", "comment"]}
COMMON = {"cardinalities": [7, 5], "num_dense": 3, "embed_dim": 4}


def inputs(batch=16):
    return torch.randn(batch, 3), torch.stack([torch.randint(0, 7, (batch,)), torch.randint(0, 5, (batch,))], 1)


@pytest.mark.parametrize(
    "model",
    [
        SharedBottom(TASKS, **COMMON, d_hidden=[8, 6]),
        OMoE(TASKS, **COMMON, num_experts=3, d_hidden=6),
        MMoE(TASKS, **COMMON, num_experts=3, d_hidden=6),
        CGC(TASKS, **COMMON, num_specific=1, num_shared=2, d_hidden=6),
        PLE(TASKS, **COMMON, num_levels=3, num_specific=1, num_shared=2, d_hidden=6),
        HoME(TASKS, GROUPS, **COMMON, d_hidden=6),
    ],
    ids=lambda m: type(m).__name__,
)
def test_output_shape_gradients_and_reset(model):
    dense, sparse = inputs()
    out = model(dense, sparse)
    assert out.shape == (16, 5)
    out.sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    model.reset_parameters()


def test_task_names_are_validated():
    with pytest.raises(ValueError, match="unique"):
        MMoE(["a", "a"], num_dense=3)
    with pytest.raises(TypeError, match="string"):
        MMoE("ab", num_dense=3)
    with pytest.raises(ValueError, match="non-empty"):
        MMoE([], num_dense=3)
