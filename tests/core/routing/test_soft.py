import pytest
import torch
import torch.nn.functional as F

from domain_moe.core import MLPExperts, MoE, SoftMoERouter
from domain_moe.testing import check_router


@pytest.mark.parametrize(("slots", "normalize"), [(1, False), (2, False), (3, True)])
def test_conformance(slots, normalize):
    router = SoftMoERouter(8, 4, slots, normalize=normalize)
    assert router.needs_sequences and router.preferred_backend == "bmm"
    d = check_router(router, num_tokens=12, seq_len=4)
    assert d.is_soft
    assert d.dispatch_weights.shape == (3, 4, 4 * slots)
    assert d.topk_idx.shape == (12, 0) and d.topk_w.shape == (12, 0)
    assert d.counts.tolist() == [3 * slots] * 4
    assert d.capacity == 3 * slots


def test_dispatch_and_combine_are_the_two_softmaxes():
    router = SoftMoERouter(6, 2, slots_per_expert=2)
    x = torch.randn(2, 5, 6)
    d = router(x)
    logits = torch.einsum("bld,ds->bls", x, router.phi)
    torch.testing.assert_close(d.extras["slot_logits"], logits)
    torch.testing.assert_close(d.dispatch_weights, logits.softmax(1))  # over tokens
    torch.testing.assert_close(d.combine_weights, logits.softmax(-1))  # over slots
    torch.testing.assert_close(d.dispatch_weights.sum(1), torch.ones(2, 4))
    torch.testing.assert_close(d.combine_weights.sum(-1), torch.ones(2, 5))


def test_normalize_uses_unit_vectors_and_learned_scale():
    router = SoftMoERouter(6, 3, normalize=True)
    with torch.no_grad():
        router.scale.fill_(2.0)
    x = torch.randn(1, 4, 6) * 100.0
    d = router(x)
    expected = 2.0 * F.normalize(x, dim=-1) @ F.normalize(router.phi, dim=0)
    torch.testing.assert_close(d.extras["slot_logits"], expected)
    assert d.extras["slot_logits"].abs().max() <= 2.0 + 1e-5  # bounded by the scale
    assert SoftMoERouter(6, 3).scale is None


def test_sequences_are_routed_independently():
    router = SoftMoERouter(4, 2)
    a, b = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    both = router(torch.cat([a, b]))
    torch.testing.assert_close(both.dispatch_weights[1:], router(b).dispatch_weights)


def test_moe_accepts_flat_tokens_as_one_sequence():
    torch.manual_seed(0)
    layer = MoE(SoftMoERouter(8, 2), MLPExperts(2, 8, 16))
    x = torch.randn(5, 8)
    torch.testing.assert_close(layer(x), layer(x.unsqueeze(0)).squeeze(0))


def test_bad_input():
    router = SoftMoERouter(8, 2)
    with pytest.raises(ValueError, match=r"\[B, L, D\]"):
        router(torch.randn(5, 8))
    with pytest.raises(ValueError, match="d_model=8"):
        router(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match="no tokens"):
        router(torch.randn(2, 0, 8))
    with pytest.raises(TypeError, match="floating point"):
        router(torch.ones(2, 3, 8, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        router("x")


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_bad_slots_per_expert(value):
    with pytest.raises(ValueError, match="slots_per_expert"):
        SoftMoERouter(8, 2, value)


def test_no_aux_loss_and_repr():
    router = SoftMoERouter(8, 2, 3)
    assert router.aux_losses(router(torch.randn(1, 2, 8))) == {}
    assert "slots_per_expert=3" in repr(router)
    assert router.num_slots == 6


@pytest.mark.parametrize(("slots", "normalize"), [(1, False), (2, True)])
def test_moe_matches_naive(moe_matches_naive, slots, normalize):
    moe_matches_naive(SoftMoERouter(8, 4, slots, normalize=normalize), num_tokens=12, seq_len=4)
