import pytest
import torch

from domain_moe.vision.models import StochasticExpertDrop


def test_eval_is_identity_and_train_is_unbiased():
    torch.manual_seed(0)
    drop = StochasticExpertDrop(3, p_start=0.6, p_end=0.6)
    keep, scale = drop.eval()(4)
    assert keep.all() and torch.equal(scale, torch.ones(4, 3))
    _, scale = drop.train()(20000)
    assert abs(scale.mean().item() - 1.0) < 0.02  # E[m / p] = 1


def test_schedule_and_bad_probability():
    drop = StochasticExpertDrop(2, 0.5, 0.9)
    drop.set_progress(0.5)
    assert drop.p == pytest.approx(0.7)
    drop.set_progress(3.0)
    assert drop.p == pytest.approx(0.9)
    with pytest.raises(ValueError, match="p_start"):
        StochasticExpertDrop(2, 0.0, 0.9)
