import pytest
import torch

from domain_moe.recsys.models import PLE, HoME

TASKS = ["click", "ev", "lv", "like", "comment"]
GROUPS = {"watch": ["ev", "lv"], "interact": ["like", "comment"]}
COMMON = {"cardinalities": [7, 5], "num_dense": 3, "embed_dim": 4}


def inputs(batch=16):
    return torch.randn(batch, 3), torch.stack([torch.randint(0, 7, (batch,)), torch.randint(0, 5, (batch,))], 1)


def test_home_hierarchy_mask_gates_and_gradients():
    model = HoME(TASKS, GROUPS, **COMMON, d_hidden=6)
    meta, top = model.levels
    names = top.expert_names
    like = TASKS.index("like")
    allowed = {"like_expert", "interact_expert", "global0", "global1"}
    assert [n for n, keep in zip(names, top.scope[like].tolist()) if keep] == [n for n in names if n in allowed]
    click = TASKS.index("click")  # a global task: its own experts and the global ones
    assert {n for n, keep in zip(names, top.scope[click].tolist()) if keep} == {"click_expert", "global0", "global1"}
    assert meta.gate_names == ["watch", "interact", "global"]
    assert bool(meta.scope[2].all()) and not bool(meta.scope[0, meta.expert_owner.index(1)])
    dense, sparse = inputs()
    model.train()
    out = model(dense, sparse)
    w = top.moe.last_weights
    torch.testing.assert_close(w.sum(-1), torch.ones(len(TASKS), 16))
    assert torch.equal(w.masked_select(~top.scope.unsqueeze(1)), torch.zeros(int((~top.scope).sum()) * 16))
    # The like task's loss reaches neither the watch group's experts nor other tasks' experts.
    out[:, like].sum().backward()
    grad = top.moe.experts.weight.grad
    for e, n in enumerate(names):
        if n in allowed:
            assert grad[e].abs().sum() > 0, n
        else:
            assert torch.equal(grad[e], torch.zeros_like(grad[e])), n


def test_home_with_its_pieces_off_equals_ple():
    kwargs = {"num_dense": 6, "d_hidden": 5, "tower_hidden": [4]}
    ple = PLE(["a", "b", "c"], num_levels=2, num_specific=1, num_shared=2, **kwargs)
    home = HoME(
        ["a", "b", "c"], None, num_shared_meta=2, num_group_meta=1, num_global_experts=2, num_group_experts=0,
        num_task_experts=1, expert_norm=None, activation="relu", hierarchy_mask=True, feature_gate=False,
        self_gate=False, **kwargs,
    )
    home.load_state_dict(ple.state_dict())
    x = torch.randn(10, 6)
    torch.testing.assert_close(home(x), ple(x), rtol=0, atol=0)


def test_home_feature_gates_start_at_one():
    model = HoME(TASKS, GROUPS, **COMMON, d_hidden=6)
    x = torch.randn(8, model.embedding.d_out)
    assert torch.equal(model.levels[0].feature_gate.gates(x), torch.ones(model.levels[0].num_experts, 8, x.shape[1]))


def test_home_switches_change_the_modules():
    full = HoME(TASKS, GROUPS, **COMMON, d_hidden=6)
    assert full.levels[0].moe.experts.norm == "batch" and full.levels[0].moe.experts.activation == "silu"
    assert full.levels[1].feature_gate is not None and full.levels[1].self_gate is not None
    bare = HoME(TASKS, GROUPS, **COMMON, d_hidden=6, expert_norm=None, activation="relu", hierarchy_mask=False,
                feature_gate=False, self_gate=False)
    assert bool(bare.levels[1].scope.all()) and bare.levels[1].feature_gate is None and bare.levels[1].self_gate is None


def test_home_self_gate_is_sigmoid_over_the_single_own_expert():
    model = HoME(TASKS, GROUPS, **COMMON, d_hidden=6)
    top = model.levels[1]
    assert top.self_gate.score_fn == "auto"
    assert top.self_gate.scope.sum(1).tolist() == [1] * len(TASKS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task_groups": {"g": ["nope"]}}, r"unknown task 'nope'"),
        ({"task_groups": {"g": ["ev"], "h": ["ev"]}}, "more than one group"),
        ({"task_groups": {"g": "ev"}}, "non-empty list"),
        ({"num_task_experts": -1}, "num_task_experts"),
    ],
)
def test_home_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HoME(TASKS, **{"num_dense": 3, **kwargs})
