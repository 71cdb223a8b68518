import pytest
import torch
import torch.nn.functional as F

from domain_moe.core.experts import SharedExperts


def test_sum_of_shared_experts_equals_one_wide_ffn():
    shared = SharedExperts(8, 4, num_shared=3, bias=False, activation="relu")
    x = torch.randn(5, 8)
    w1 = shared.fc1.weight.view(3, 4, 8)
    w2 = shared.fc2.weight.view(8, 3, 4)
    ref = sum(F.relu(x @ w1[i].T) @ w2[:, i].T for i in range(3))
    assert torch.allclose(shared(x), ref, atol=1e-6)


def test_gated_and_shapes():
    shared = SharedExperts(8, 4, num_shared=2, d_out=6, gated=True, activation="silu")
    assert shared.fc1.weight.shape == (16, 8)
    assert shared(torch.randn(3, 8)).shape == (3, 6)
    assert "gated=True" in repr(shared)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_shared"):
        SharedExperts(8, 4, num_shared=0)
