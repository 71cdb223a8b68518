import math

import pytest
import torch
import torch.nn.functional as F

from domain_moe.core import losses


def _close(a, b, tol=1e-6):
    assert float(torch.as_tensor(a).detach()) == pytest.approx(float(b), abs=tol, rel=tol)


# --- switch_balance ---------------------------------------------------------------------------


def test_switch_balance_uniform_is_one():
    probs = torch.full((8, 4), 0.25)
    _close(losses.switch_balance(probs, torch.tensor([2, 2, 2, 2]), 1), 1.0)
    _close(losses.switch_balance(probs, torch.tensor([4, 4, 4, 4]), 2), 1.0)


def test_switch_balance_collapse_is_num_experts():
    probs = torch.zeros(6, 4)
    probs[:, 1] = 1.0
    _close(losses.switch_balance(probs, torch.tensor([0, 6, 0, 0]), 1), 4.0)


def test_switch_balance_hand_value_and_gradient():
    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6]], requires_grad=True)
    counts = torch.tensor([1, 1])
    # E/(T K) * sum_i c_i mean_t p_ti = 2/2 * (0.55 + 0.45) = 1.
    loss = losses.switch_balance(probs, counts, 1)
    _close(loss, 1.0)
    loss.backward()
    # d/dp_ti = E/(T K) * c_i / T = 0.5.
    torch.testing.assert_close(probs.grad, torch.full((2, 2), 0.5))
    counts = torch.tensor([2, 0])
    _close(losses.switch_balance(probs.detach(), counts, 1), 2 * (1.0 * 0.55))


def test_switch_balance_variable_k_normalises_by_assignments():
    probs = torch.full((3, 3), 1 / 3)
    _close(losses.switch_balance(probs, torch.tensor([2, 2, 2]), None), 1.0)
    _close(losses.switch_balance(probs, torch.tensor([5, 0, 0]), None), 1.0)  # mean p is uniform
    probs = torch.tensor([[0.5, 0.5, 0.0]] * 3)
    # frac = (4/5, 1/5, 0), mean p = (0.5, 0.5, 0): 3 * (0.4 + 0.1) = 1.5
    _close(losses.switch_balance(probs, torch.tensor([4, 1, 0]), None), 1.5)
    _close(losses.switch_balance(probs, torch.tensor([0, 0, 0]), None), 0.0)


# --- z_loss -----------------------------------------------------------------------------------


def test_z_loss_hand_values():
    _close(losses.z_loss(torch.zeros(5, 4)), math.log(4) ** 2)
    logits = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]])
    # lse: log(1 + 3) = log 4; 1 + log 2.
    _close(losses.z_loss(logits), (math.log(4) ** 2 + (1 + math.log(2)) ** 2) / 2)
    assert losses.z_loss(torch.zeros(2, 3, dtype=torch.float16)).dtype == torch.float32


# --- importance_load_cv2 ----------------------------------------------------------------------


def test_importance_load_without_noise_reduces_to_counts():
    gates = torch.tensor([[0.6, 0.4, 0.0], [0.5, 0.0, 0.5]])
    clean = torch.randn(2, 3)
    importance, load = losses.importance_load_cv2(gates, clean, None, None, 2)
    imp = torch.tensor([1.1, 0.4, 0.5])
    _close(importance, imp.var() / imp.mean() ** 2, 1e-5)
    # counts (2, 1, 1): mean 4/3, unbiased variance 1/3 -> CV^2 = 3/16.
    _close(load, 3 / 16, 1e-6)


def test_importance_load_with_noise_hand_value():
    phi = lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    clean = torch.tensor([[0.5, 0.0, -1.0]])
    noisy = torch.tensor([[1.0, 0.0, -1.0]])
    std = torch.ones(1, 3)
    gates = torch.tensor([[1.0, 0.0, 0.0]])
    _, load = losses.importance_load_cv2(gates, clean, noisy, std, 1)
    # K=1: expert 0 is in, its threshold is the 2nd noisy logit (0); the others are out, their
    # threshold is the 1st (1.0).
    per_expert = torch.tensor([phi(0.5 - 0.0), phi(0.0 - 1.0), phi(-1.0 - 1.0)])
    _close(load, per_expert.var() / per_expert.mean() ** 2, 1e-5)


def test_importance_load_is_differentiable_and_zero_when_balanced():
    clean = torch.zeros(4, 2, requires_grad=True)
    noisy = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    std = torch.ones(4, 2, requires_grad=True)
    gates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    importance, load = losses.importance_load_cv2(gates, clean, noisy, std, 1)
    _close(importance, 0.0)
    _close(load, 0.0)
    clean2 = torch.tensor([[2.0, 0.0]] * 4, requires_grad=True)
    _, load2 = losses.importance_load_cv2(gates, clean2, noisy, std, 1)
    load2.backward()
    assert load2 > 0 and clean2.grad.abs().sum() > 0 and std.grad.abs().sum() > 0


def test_cv2_of_single_expert_is_zero():
    importance, load = losses.importance_load_cv2(torch.ones(3, 1), torch.zeros(3, 1), None, None, 1)
    _close(importance, 0.0)
    _close(load, 0.0)


# --- entropy ----------------------------------------------------------------------------------


def test_entropy_hand_values():
    _close(losses.entropy(torch.full((3, 5), 0.2)), math.log(5))
    _close(losses.entropy(torch.tensor([[1.0, 0.0, 0.0]])), 0.0)
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    _close(losses.entropy(p), math.log(2) / 2)
    probs = torch.tensor([[0.9, 0.1]], requires_grad=True)
    losses.entropy(probs).backward()
    assert torch.isfinite(probs.grad).all()


# --- seq_balance ------------------------------------------------------------------------------


def test_seq_balance_hand_value():
    # Two sequences of L=2 over E=2 experts, K=1.
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.9, 0.1]])
    idx = torch.tensor([[0], [1], [0], [0]])
    # Sequence 1: f = 2/(1*2) * (1, 1) = (1, 1), P = (0.5, 0.5) -> 1.
    # Sequence 2: f = (2, 0), P = (0.9, 0.1) -> 1.8. Mean 1.4.
    _close(losses.seq_balance(probs, idx, seq_len=2, top_k=1), 1.4)


def test_seq_balance_ignores_empty_slots_and_normalises_scores():
    # Sigmoid-like scores (rows do not sum to 1) are normalised per token.
    probs = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    idx = torch.tensor([[0, -1], [1, -1]])
    # f = 2/(2*2) * (1, 1) = (0.5, 0.5); P = (0.5, 0.5) -> 0.5
    _close(losses.seq_balance(probs, idx, seq_len=2, top_k=2), 0.5)


def test_seq_balance_bad_seq_len():
    with pytest.raises(ValueError, match="seq_len"):
        losses.seq_balance(torch.rand(5, 2), torch.zeros(5, 1, dtype=torch.long), seq_len=2, top_k=1)


# --- null_aware_balance -----------------------------------------------------------------------


def test_null_aware_balance_pools_null_experts():
    # E=2 true + m=2 null experts, T=2, K=1.
    probs = torch.tensor([[0.4, 0.2, 0.4, 0.0], [0.4, 0.2, 0.3, 0.1]])
    counts = torch.tensor([1, 0, 1, 0])
    # frac (0.5, 0, 0.5, 0) -> nulls pooled to (0.25, 0.25); mean p (0.4, 0.2, 0.35, 0.05) ->
    # nulls pooled to (0.2, 0.2). Loss 4 * (0.5*0.4 + 0 + 2 * 0.25*0.2) = 1.2 (unpooled: 1.5).
    _close(losses.null_aware_balance(probs, counts, 2, 1), 1.2)
    # Without null experts it is the Switch loss.
    probs3 = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    _close(
        losses.null_aware_balance(probs3, torch.tensor([2, 0]), 0, 1),
        losses.switch_balance(probs3, torch.tensor([2, 0]), 1),
    )


def test_null_aware_balance_is_one_when_uniform():
    probs = torch.full((6, 5), 0.2)
    _close(losses.null_aware_balance(probs, torch.tensor([2, 2, 2, 2, 4]), 2, 2), 1.0)


# --- symmetric_kl -----------------------------------------------------------------------------


def test_symmetric_kl_hand_values():
    a = torch.randn(3, 4)
    _close(losses.symmetric_kl(a, a), 0.0)
    _close(losses.symmetric_kl(a, a + 5.0), 0.0, 1e-5)  # logits are shift invariant
    p = torch.tensor([[0.5, 0.5]]).log()
    q = torch.tensor([[0.25, 0.75]]).log()
    kl_pq = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_qp = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    _close(losses.symmetric_kl(p, q), kl_pq + kl_qp)
    _close(losses.symmetric_kl(q, p), kl_pq + kl_qp)


# --- orthogonality ----------------------------------------------------------------------------


def test_orthogonality_hand_values():
    _close(losses.orthogonality(torch.eye(3)), 0.0)
    _close(losses.orthogonality(torch.diag(torch.tensor([2.0, 3.0]))), 0.0)  # normalised
    pair = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # Normalised: off-diagonals 1/sqrt(2) -> (2 * 1/2) / 2^2 = 0.25.
    _close(losses.orthogonality(pair), 0.25)
    # Raw: P P^T - I = [[0, 1], [1, 1]] -> 3 / 4.
    _close(losses.orthogonality(pair, normalize=False), 0.75)


# --- info_nce ---------------------------------------------------------------------------------


def test_info_nce_perfectly_separated_pairs_near_zero():
    q = torch.eye(4) * 3.0
    assert losses.info_nce(q, q.clone()) < 1e-4
    # A random pairing is much worse than the aligned one.
    assert losses.info_nce(q, q.flip(0)) > 5.0


def test_info_nce_bilinear_hand_value():
    q = torch.eye(2)
    w = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    # logits = (q W) k^T = [[2, 0], [0, 0]]: row 0 -> log(1 + e^-2), row 1 -> log 2.
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    _close(losses.info_nce(q, q, temperature=1.0, weight=w), expected)


def test_info_nce_queue_negatives():
    q = torch.eye(2)
    neg = torch.tensor([[1.0, 0.0]])
    # Cosine logits row 0: [1, 0 | 1]; row 1: [0, 1 | 0]; tau = 1.
    row0 = -math.log(math.e / (math.e + 1 + math.e))
    row1 = -math.log(math.e / (1 + math.e + 1))
    _close(losses.info_nce(q, q, negatives=neg, temperature=1.0), (row0 + row1) / 2)
    ref = F.cross_entropy(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 1]))
    _close(losses.info_nce(q, q, negatives=neg, temperature=1.0), ref)


def test_info_nce_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        losses.info_nce(torch.eye(2), torch.eye(2), temperature=0.0)


def test_importance_cv2_zero_for_uniform_and_hand_value():
    from domain_moe.core.losses import importance_cv2

    assert importance_cv2(torch.full((5, 4), 0.25)).item() == 0.0
    w = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # totals [2, 0]: var 2 (unbiased), mean^2 1
    torch.testing.assert_close(importance_cv2(w), torch.tensor(2.0))


def test_symmetric_info_nce_by_hand_and_masking():
    import torch.nn.functional as F

    from domain_moe.core.losses import symmetric_info_nce

    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.5
    row = -torch.log_softmax(sim, 1).diag().mean()
    col = -torch.log_softmax(sim, 0).diag().mean()
    torch.testing.assert_close(symmetric_info_nce(a, b, 0.5), (row + col) / 2)
    same = torch.zeros(4, 4, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True
    masked = sim.clone()
    masked[0, 1] = masked[1, 0] = float("-inf")
    expected = (-torch.log_softmax(masked, 1).diag().mean() - torch.log_softmax(masked, 0).diag().mean()) / 2
    torch.testing.assert_close(symmetric_info_nce(a, b, 0.5, same=same), expected)
    with pytest.raises(ValueError, match="same must be a bool"):
        symmetric_info_nce(a, b, 0.5, same=same.float())
