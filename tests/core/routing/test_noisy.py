import pytest
import torch
import torch.nn.functional as F

from domain_moe.core import NoisyTopKRouter, losses
from domain_moe.testing import check_router


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_conformance(top_k):
    router = NoisyTopKRouter(8, 4, top_k=top_k)
    check_router(router, weights_sum=1.0)
    if top_k < 4:  # with K = E every expert is always in: the load loss is the constant counts CV^2
        # The zero-initialised noise head still learns (softplus'(0) = 1/2), through the load loss.
        router.train()
        router.aux_losses(router(torch.randn(16, 8)))["load"].backward()
        assert router.noise_weight.grad is not None and router.noise_weight.grad.abs().sum() > 0


def test_eval_is_deterministic_and_softmax_over_kept():
    router = NoisyTopKRouter(4, 4, top_k=2).eval()
    with torch.no_grad():
        router.weight.zero_()
        router.weight[:, 0] = torch.tensor([1.0, 3.0, 0.0, 2.0])
    d = router(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert d.topk_idx.tolist() == [[1, 3]]
    torch.testing.assert_close(d.topk_w, torch.tensor([[3.0, 2.0]]).softmax(-1))
    assert set(d.extras) == {"clean_logits"}


def test_training_noise_std_is_softplus_and_seeded():
    router = NoisyTopKRouter(6, 5, top_k=2, noise_epsilon=0.0)
    with torch.no_grad():
        router.noise_weight.normal_()
    x = torch.randn(7, 6)
    torch.manual_seed(3)
    d = router(x)
    torch.manual_seed(3)
    again = router(x)
    assert torch.equal(d.topk_idx, again.topk_idx)
    clean = x @ router.weight.T
    torch.testing.assert_close(d.extras["clean_logits"], clean)
    torch.testing.assert_close(d.extras["noise_std"], F.softplus(x @ router.noise_weight.T))
    torch.manual_seed(3)
    noise = torch.randn(7, 5)
    torch.testing.assert_close(d.extras["noisy_logits"], clean + noise * d.extras["noise_std"])
    # Selection and weights come from the noisy logits.
    top = d.extras["noisy_logits"].topk(2, dim=-1)
    assert torch.equal(d.topk_idx, top.indices)
    torch.testing.assert_close(d.topk_w, top.values.softmax(-1))


def test_noise_epsilon_floor():
    router = NoisyTopKRouter(4, 3, top_k=1, noise_epsilon=0.5)
    d = router(torch.randn(5, 4))
    # Zero-initialised noise head: std = softplus(0) + eps everywhere.
    torch.testing.assert_close(d.extras["noise_std"], torch.full((5, 3), 0.5 + torch.log(torch.tensor(2.0)).item()))


def test_aux_losses_use_importance_load_cv2():
    router = NoisyTopKRouter(8, 4, top_k=2, importance_coef=0.5, load_coef=2.0)
    x = torch.randn(16, 8)
    d = router(x)
    aux = router.aux_losses(d)
    gates = torch.zeros(16, 4).scatter(1, d.topk_idx, d.topk_w)
    imp, load = losses.importance_load_cv2(
        gates, d.extras["clean_logits"], d.extras["noisy_logits"], d.extras["noise_std"], 2
    )
    torch.testing.assert_close(aux["importance"], 0.5 * imp)
    torch.testing.assert_close(aux["load"], 2.0 * load)
    # The smooth load loss is differentiable w.r.t. the gate and the noise head.
    aux["load"].backward()
    assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0
    assert router.noise_weight.grad is not None and router.noise_weight.grad.abs().sum() > 0


def test_aux_losses_in_eval_fall_back_to_counts():
    router = NoisyTopKRouter(8, 4, top_k=1, importance_coef=0.0).eval()
    d = router(torch.randn(12, 8))
    aux = router.aux_losses(d)
    assert set(aux) == {"load"}
    counts = d.counts.float()
    torch.testing.assert_close(aux["load"], 1e-2 * counts.var() / (counts.mean() ** 2 + 1e-10))
    off = NoisyTopKRouter(8, 4, importance_coef=0.0, load_coef=0.0)
    assert off.aux_losses(off(torch.randn(3, 8))) == {}


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"top_k": 0}, "top_k"), ({"top_k": 5}, "top_k"), ({"noise_epsilon": -1.0}, "noise_epsilon")],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        NoisyTopKRouter(8, 4, **kwargs)


def test_repr():
    assert "top_k=2" in repr(NoisyTopKRouter(8, 4))


@pytest.mark.parametrize("training", [True, False])
def test_moe_matches_naive(moe_matches_naive, training):
    router = NoisyTopKRouter(8, 4, top_k=2)
    with torch.no_grad():
        router.noise_weight.normal_()
    moe_matches_naive(router.train(training))
