import pytest
import torch

from domain_moe.vision.annotations import routing_targets


def test_rule_on_a_hand_made_loss_table():
    losses = torch.tensor(
        [
            [1.00, 0.90, 0.97, 0.50],  # gains 0.10, 0.03, 0.50 -> experts 2 and 0 (0.03 < delta)
            [0.50, 0.60, 0.70, 0.80],  # no gain -> none
            [1.00, 0.10, 0.20, 0.30],  # all useful, keep the two best: 0 and 1
        ]
    )
    r = routing_targets(losses, delta=0.05, k_max=2)
    assert r.tolist() == [[True, False, True], [False, False, False], [True, True, False]]
    assert routing_targets(losses, delta=0.0, k_max=3)[0].tolist() == [True, True, True]
    assert routing_targets(losses, delta=0.05, k_max=0).sum() == 0


def test_bad_shape():
    with pytest.raises(ValueError, match="losses must be"):
        routing_targets(torch.zeros(3, 1))
