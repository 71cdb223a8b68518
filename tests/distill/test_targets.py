import math

import pytest
import torch

from domain_moe.distill.targets import concentration_loss, concentration_targets

C2V = torch.tensor([0, 0, 0, 1, 1])  # vertical 0: classes 0-2, vertical 1: classes 3-4


def test_targets_zero_outside_vertical_and_top_k():
    probs = torch.tensor([[0.2, 0.7, 0.5, 0.9, 0.1], [0.3, 0.3, 0.3, 0.4, 0.8]])
    z = concentration_targets(probs, torch.tensor([0, 4]), C2V, top_k=2, hard_mix="none")
    torch.testing.assert_close(z, torch.tensor([[0.0, 0.7, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.4, 0.8]]))


def test_top_k_is_clamped_to_the_vertical():
    probs = torch.rand(4, 5)
    labels = torch.tensor([0, 1, 3, 4])
    big = concentration_targets(probs, labels, C2V, top_k=50, hard_mix="none")
    none = concentration_targets(probs, labels, C2V, top_k=None, hard_mix="none")
    torch.testing.assert_close(big, none)


def test_hard_mix_max_and_convex():
    probs = torch.tensor([[0.2, 0.7, 0.5, 0.9, 0.1]])
    y = torch.tensor([0])
    top = concentration_targets(probs, y, C2V, top_k=2, hard_mix="max")
    torch.testing.assert_close(top, torch.tensor([[1.0, 0.7, 0.5, 0.0, 0.0]]))
    mixed = concentration_targets(probs, y, C2V, top_k=None, hard_mix=0.25)
    torch.testing.assert_close(mixed, torch.tensor([[0.25 + 0.75 * 0.2, 0.75 * 0.7, 0.75 * 0.5, 0.0, 0.0]]))


def test_kd_loss_equals_hand_computation():
    logits = torch.tensor([[1.0, -2.0, 0.5, 3.0, 0.0], [0.0, 1.0, -1.0, 2.0, -0.5]])
    probs = torch.tensor([[0.6, 0.1, 0.3, 0.9, 0.9], [0.9, 0.9, 0.9, 0.2, 0.7]])
    labels = torch.tensor([2, 3])
    z = concentration_targets(probs, labels, C2V, top_k=2, hard_mix="max")
    # Sample 0 (vertical 0): top-2 of (0.6, 0.1, 0.3) -> classes 0, 2; hard label 2 -> 1.
    # Sample 1 (vertical 1): (0.2, 0.7) both kept; hard label 3 -> 1.
    hand_z = [[0.6, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.7]]
    torch.testing.assert_close(z, torch.tensor(hand_z))

    def sig(x):
        return 1.0 / (1.0 + math.exp(-x))

    total = 0.0
    for i in range(2):
        for j in range(5):
            s, t = sig(float(logits[i, j])), hand_z[i][j]
            total -= t * math.log(s) + (1 - t) * math.log(1 - s)
    assert float(concentration_loss(logits, z)) == pytest.approx(total / 2, rel=1e-6)
    per = concentration_loss(logits, z, reduction="none")
    assert per.shape == (2,) and float(per.mean()) == pytest.approx(total / 2, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"teacher_probs": torch.rand(2, 5, 1)}, r"teacher_probs must have shape \[B, N\]"),
        ({"labels": torch.tensor([0, 1, 2])}, r"labels must have shape \[B\]=\[2\]"),
        ({"class_to_vertical": torch.tensor([0, 1])}, r"class_to_vertical must have shape \[N\]=\[5\]"),
        ({"top_k": 0}, "top_k must be a positive int"),
        ({"hard_mix": 1.5}, "hard_mix must be"),
    ],
)
def test_target_bad_inputs(kwargs, match):
    args = {"teacher_probs": torch.rand(2, 5), "labels": torch.tensor([0, 3]), "class_to_vertical": C2V}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        concentration_targets(**args)


def test_loss_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        concentration_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        concentration_loss(torch.zeros(2, 3), torch.zeros(2, 3), reduction="sum")


def test_softmax_kd_loss_equals_hand_computation():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.2, 0.6, 0.2]])
    total = 0.0
    for i in range(2):
        lse = math.log(sum(math.exp(float(v)) for v in logits[i]))
        norm = float(targets[i].sum())
        total -= sum(float(targets[i, j]) / norm * (float(logits[i, j]) - lse) for j in range(3))
    assert float(concentration_loss(logits, targets, kind="softmax")) == pytest.approx(total / 2, rel=1e-6)
    with pytest.raises(ValueError, match="kind must be"):
        concentration_loss(logits, targets, kind="hinge")
