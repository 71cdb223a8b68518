import pytest
import torch

from domain_moe.rl.models import DenseFFN, T2MIRLayer, matched_dense_hidden


def test_matched_width_equals_t2mir_active_weights():
    d, h, k = 32, 64, 2
    dense = DenseFFN(d, matched_dense_hidden(d, h, k))
    layer = T2MIRLayer(d, d_hidden=h, top_k=k)
    dense_active = dense.fc1.weight.numel() + dense.fc2.weight.numel()
    per_expert = layer.token.experts.w1[0].numel() + layer.token.experts.w2[0].numel()
    per_task_expert = layer.task_experts.w1[0].numel() + layer.task_experts.w2[0].numel()
    assert dense_active == k * per_expert + k * per_task_expert
    assert matched_dense_hidden(d, h, k) == 6 * d


def test_dense_ffn_shapes():
    assert DenseFFN(8, 16, d_out=4)(torch.randn(3, 5, 8)).shape == (3, 5, 4)


def test_odd_width_rejected():
    with pytest.raises(ValueError, match="even"):
        matched_dense_hidden(8, 3, 1)
