import pytest
import torch

from domain_moe.recsys.models import CGC, PLE, MMoE


def test_cgc_without_specific_experts_is_mmoe():
    mmoe = MMoE(["a", "b"], num_dense=6, num_experts=3, d_hidden=4)
    cgc = CGC(["a", "b"], num_dense=6, num_specific=0, num_shared=3, d_hidden=4)
    state = {k.replace("moe.", "levels.0.", 1) if k.startswith("moe.") else k: v for k, v in mmoe.state_dict().items()}
    cgc.load_state_dict(state)
    x = torch.randn(9, 6)
    torch.testing.assert_close(cgc(x), mmoe(x))


def test_cgc_and_ple_scopes_mask_other_tasks_experts():
    ple = PLE(["a", "b", "c"], num_dense=4, num_levels=2, num_specific=2, num_shared=1, d_hidden=4)
    first, last = ple.levels
    # 3 tasks x 2 specific + 1 shared; task gates see their own two + the shared one, the shared gate all.
    expected = torch.tensor([[o == g or o == -1 for o in [0, 0, 1, 1, 2, 2, -1]] for g in range(3)])
    assert torch.equal(first.scope[:3], expected) and bool(first.scope[3].all())
    assert torch.equal(last.scope, expected) and last.num_gates == 3
    ple(torch.randn(8, 4))
    w = last.moe.last_weights
    assert torch.equal(w.masked_select(~expected.unsqueeze(1)), torch.zeros(int((~expected).sum()) * 8))
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 8))
    # Level 2: task b's experts read task b's level-1 output, the shared expert reads the shared gate's output.
    assert last.expert_inputs == [0, 0, 1, 1, 2, 2, 3]


def test_deeper_levels_use_the_expert_width():
    # DeepCTR-Torch's pitfall: the shared gate above level 1 must read d_hidden, not the raw input width.
    ple = PLE(["a", "b"], num_dense=9, num_levels=3, num_specific=1, num_shared=1, d_hidden=5)
    assert [lvl.d_model for lvl in ple.levels] == [9, 5, 5]
    assert ple(torch.randn(4, 9)).shape == (4, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_specific"):
        PLE(["a"], num_dense=3, num_specific=0, num_shared=0)
    with pytest.raises(ValueError, match="num_levels"):
        PLE(["a"], num_dense=3, num_levels=0)
