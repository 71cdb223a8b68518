import pytest
import torch

from domain_moe.core import NullExpertRouter, losses
from domain_moe.testing import check_router


def _route(router, logits):
    """Route one-hot tokens whose logits over the ``E + m`` outputs are ``logits``."""
    num_tokens, num_experts = logits.shape[0], router.num_experts
    with torch.no_grad():
        router.weight.zero_()
        router.null_weight.zero_()
        router.weight[:, :num_tokens] = logits[:, :num_experts].T
        router.null_weight[:, :num_tokens] = logits[:, num_experts:].T
    return router(torch.eye(num_tokens, router.d_model))


@pytest.mark.parametrize(("top_k", "num_null"), [(2, None), (3, 2), (1, 1), (6, 2)])
def test_conformance(top_k, num_null):
    router = NullExpertRouter(8, 4, top_k, num_null=num_null)
    d = check_router(router, weights_sum=1.0)
    assert d.topk_idx.shape == (13, top_k)
    assert d.probs.shape == (13, 4 + router.num_null)


def test_renormalises_over_true_experts_only():
    router = NullExpertRouter(4, 3, top_k=3, num_null=2)
    probs = torch.tensor(
        [
            [0.30, 0.05, 0.25, 0.30, 0.10],  # picks 0, 3(null), 2 -> true {0, 2}
            [0.05, 0.10, 0.05, 0.40, 0.40],  # picks 3, 4 (null), 1 -> true {1}
            [0.02, 0.03, 0.05, 0.45, 0.45],  # picks 3, 4, 2 -> true {2}
        ]
    )
    d = _route(router, probs.log())
    valid = d.topk_idx >= 0
    assert [sorted(d.topk_idx[t][valid[t]].tolist()) for t in range(3)] == [[0, 2], [1], [2]]
    w = {(t, int(e)): float(d.topk_w.detach()[t, k]) for t in range(3) for k, e in enumerate(d.topk_idx[t]) if e >= 0}
    assert w[(0, 0)] == pytest.approx(0.30 / 0.55) and w[(0, 2)] == pytest.approx(0.25 / 0.55)
    assert w[(1, 1)] == pytest.approx(1.0) and w[(2, 2)] == pytest.approx(1.0)
    assert d.counts.tolist() == [1, 1, 2]
    assert d.extras["counts_with_null"].tolist() == [1, 1, 2, 3, 2]
    torch.testing.assert_close(d.extras["null_fraction"], torch.tensor(5 / 9))


def test_token_with_only_null_experts_gets_nothing():
    router = NullExpertRouter(4, 2, top_k=2, num_null=2)
    d = _route(router, torch.tensor([[0.0, 0.0, 5.0, 5.0], [5.0, 0.0, 0.0, 4.0]]))
    assert d.topk_idx[0].tolist() == [-1, -1]
    assert d.topk_w[0].tolist() == [0.0, 0.0]
    assert d.topk_idx[1].tolist() == [0, -1]
    torch.testing.assert_close(d.topk_w[1], torch.tensor([1.0, 0.0]))
    d.topk_w.sum().backward()
    assert torch.isfinite(router.weight.grad).all()


def test_aux_losses_use_null_aware_balance():
    router = NullExpertRouter(8, 4, top_k=3, num_null=2, balance_coef=0.5, z_coef=0.1)
    d = router(torch.randn(9, 8))
    aux = router.aux_losses(d)
    expected = losses.null_aware_balance(d.probs, d.extras["counts_with_null"], 2, 3)
    torch.testing.assert_close(aux["balance"], 0.5 * expected)
    torch.testing.assert_close(aux["z"], 0.1 * losses.z_loss(d.logits))
    assert d.extras["counts_with_null"].sum() == 9 * 3


def test_null_fraction_reports_mean_true_k():
    router = NullExpertRouter(8, 4, top_k=4, num_null=4)
    d = router(torch.randn(20, 8))
    mean_true_k = (d.topk_idx >= 0).sum(-1).float().mean()
    torch.testing.assert_close(mean_true_k, 4 * (1 - d.extras["null_fraction"]))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 9}, "top_k"),
        ({"num_null": 0}, "num_null"),
        ({"num_null": 1.5}, "num_null"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NullExpertRouter(8, 4, **kwargs)


def test_default_num_null_and_repr():
    router = NullExpertRouter(8, 4)
    assert router.num_null == 4
    assert "num_null=4" in repr(router)


@pytest.mark.parametrize(("top_k", "num_null"), [(3, 2), (2, 4)])
def test_moe_matches_naive(moe_matches_naive, top_k, num_null):
    moe_matches_naive(NullExpertRouter(8, 4, top_k, num_null=num_null))
