import math

import pytest
import torch

from domain_moe.recsys.diagnostics import ExpertHealth, plot_expert_health
from domain_moe.recsys.models import PLE, HoME, MMoE, SharedBottom


def test_statistics_match_a_direct_computation_over_batches():
    model = PLE(["a", "b"], num_dense=5, num_levels=1, num_specific=1, num_shared=2, d_hidden=4)
    health = ExpertHealth(model)
    outs, weights = [], []
    for _ in range(3):
        model(torch.randn(20, 5))
        health.update()
        layer = model.levels[0]
        outs.append(layer.moe.last_expert_outputs)
        weights.append(layer.moe.last_weights)
    result = health.compute()["levels.0"]
    out = torch.cat(outs, 1).double()  # [E, 60, H]
    w = torch.cat(weights, 1).double()  # [G, 60, E]
    torch.testing.assert_close(result.zero_rate, (out == 0).double().mean((1, 2)))
    torch.testing.assert_close(result.out_mean, out.mean((1, 2)))
    torch.testing.assert_close(result.out_std, out.flatten(1).std(1, unbiased=False))
    mass = w.mean(1)
    torch.testing.assert_close(result.gate_mass, mass)
    # Experts: a0, b0, shared0, shared1. Own mass of task a is its gate's weight on a0.
    torch.testing.assert_close(result.own_mass, torch.stack([mass[0, 0], mass[1, 1]]))
    shared = mass[:, 2:]
    torch.testing.assert_close(result.shared_share, shared / shared.sum(0))
    assert result.summary["max_shared_share"] == pytest.approx(float((shared / shared.sum(0)).max()))
    assert result.summary["max_global_share"] == result.summary["max_shared_share"]  # CGC: shared = in every scope


def test_global_share_ignores_group_shared_experts():
    model = HoME(["a", "b", "c"], {"g": ["b", "c"]}, num_dense=4, d_hidden=4, num_group_experts=1)
    health = ExpertHealth(model)
    model(torch.randn(32, 4))
    health.update()
    top = health.compute()["levels.1"]
    # g_expert serves only b and c (2 of 3 gates); the global experts serve all three.
    in_all = [i for i, n in enumerate(n for n, o in zip(top.expert_names, top.expert_owner) if o < 0) if "global" in n]
    assert top.summary["max_global_share"] == pytest.approx(float(top.shared_share[:, in_all].max()))


def test_dead_relu_experts_are_flagged_as_collapsed():
    model = MMoE(["a", "b"], num_dense=4, num_experts=3, d_hidden=4)
    with torch.no_grad():
        model.moe.moe.experts.bias[1].fill_(-100.0)  # expert 1 never fires
    health = ExpertHealth(model)
    model(torch.randn(50, 4))
    health.update()
    result = health.compute()["moe"]
    assert result.zero_rate[1] == 1.0 and result.summary["collapsed_experts"] >= 1
    assert all(math.isnan(v) for v in result.own_mass.tolist())  # MMoE has no task-specific experts


def test_swish_batchnorm_experts_have_no_zero_activations():
    model = HoME(["a", "b", "c"], {"g": ["b", "c"]}, num_dense=4, d_hidden=6)
    health = ExpertHealth(model)
    model(torch.randn(64, 4))
    health.update()
    assert all(h.summary["max_zero_rate"] == 0.0 for h in health.compute().values())


def test_models_without_gates_and_plots(tmp_path):
    assert ExpertHealth(SharedBottom(["a"], num_dense=3, d_hidden=4)).compute() == {}
    model = HoME(["a", "b"], None, num_dense=4, d_hidden=4)
    health = ExpertHealth(model)
    model(torch.randn(16, 4))
    health.update()
    path = plot_expert_health(health.compute(), tmp_path / "sub" / "h.png", title="t")
    assert path.is_file() and path.stat().st_size > 1000
