import math

import pytest
import torch

from domain_moe.core import TopKRouter
from domain_moe.core.balancing import BiasBalancer, all_reduce_counts, load_statistics


def test_update_sign_rule_uncentred():
    bias = torch.zeros(4)
    BiasBalancer(rate=0.1, centered=False).update(bias, torch.tensor([3, 1, 1, 1]))
    # mean load 1.5: the over-loaded expert goes down, the others up, by exactly the rate.
    torch.testing.assert_close(bias, torch.tensor([-0.1, 0.1, 0.1, 0.1]))


def test_update_centred_keeps_zero_mean():
    bias = torch.zeros(4)
    BiasBalancer(rate=0.1, centered=True).update(bias, torch.tensor([3, 1, 1, 1]))
    torch.testing.assert_close(bias, torch.tensor([-0.15, 0.05, 0.05, 0.05]))
    assert abs(float(bias.sum())) < 1e-6


def test_update_balanced_load_is_a_fixed_point():
    bias = torch.tensor([0.3, -0.3])
    BiasBalancer(rate=0.1).update(bias, torch.tensor([5, 5]))
    torch.testing.assert_close(bias, torch.tensor([0.3, -0.3]))
    # Equal to the mean: sign 0, no move (here expert 1 only).
    bias = torch.zeros(3)
    BiasBalancer(rate=1.0, centered=False).update(bias, torch.tensor([4, 2, 0]))
    torch.testing.assert_close(bias, torch.tensor([-1.0, 0.0, 1.0]))


def test_step_updates_routers_and_clears_accumulator():
    model = torch.nn.ModuleList([TopKRouter(4, 3, top_k=1, bias_balancing=True), TopKRouter(4, 3)])
    balancer = BiasBalancer(rate=0.5, centered=False)
    assert not balancer.step(model)  # nothing accumulated yet
    with torch.no_grad():
        model[0].load_accum.copy_(torch.tensor([6, 0, 0]))
    assert balancer.step(model)
    torch.testing.assert_close(model[0].selection_bias, torch.tensor([-0.5, 0.5, 0.5]))
    assert model[0].load_accum.sum() == 0
    assert not balancer.step(model)  # cleared: a second step without tokens is skipped


def test_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        BiasBalancer(rate=0.0)


def test_skewed_router_becomes_balanced():
    torch.manual_seed(0)
    router = TopKRouter(8, 4, top_k=1, bias_balancing=True)
    u = torch.randn(8)
    u = u / u.norm()
    x = torch.randn(64, 8) + 1.5 * u  # a fixed batch that leans towards u ...
    with torch.no_grad():
        router.weight.normal_(std=0.3)
        router.weight[0] += 1.5 * u  # ... which expert 0 prefers
    router.train()
    before = load_statistics(router(x).counts)
    router.load_accum.zero_()
    assert before["max_over_mean"] > 2.5
    balancer = BiasBalancer(rate=1e-2)
    for _ in range(300):
        router(x)
        balancer.step(router)
    after = load_statistics(router(x).counts)
    assert after["max_over_mean"] < 1.5
    assert after["unused"] == 0
    assert after["cv"] < before["cv"] / 3
    assert router.selection_bias[0] == router.selection_bias.min()  # the crowded expert was pushed down
    assert abs(float(router.selection_bias.sum())) < 1e-4  # centred updates


def test_load_statistics_values():
    stats = load_statistics(torch.tensor([2, 2, 0, 4]))
    assert float(stats["max_over_mean"]) == pytest.approx(2.0)
    assert float(stats["min_over_mean"]) == pytest.approx(0.0)
    # population std sqrt(2), mean 2
    assert float(stats["cv"]) == pytest.approx(math.sqrt(2) / 2)
    assert float(stats["unused"]) == pytest.approx(0.25)
    single = load_statistics(torch.tensor([5]))
    assert float(single["cv"]) == 0.0 and float(single["max_over_mean"]) == pytest.approx(1.0)


def test_all_reduce_counts_without_distributed_is_identity():
    counts = torch.tensor([1, 2, 3])
    assert torch.equal(all_reduce_counts(counts), counts)
