import pytest
import torch

from domain_moe.vision.models import MomentumEncoder


def test_update_and_eval_mode():
    online = torch.nn.Linear(3, 3)
    enc = MomentumEncoder(online, d_key=3, momentum=0.75, queue_size=4)
    enc.train()
    assert not enc.ema.training
    before = enc.ema.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    enc.update(online)
    torch.testing.assert_close(enc.ema.weight, 0.75 * before + 0.25 * online.weight)
    out = enc(torch.randn(2, 3))
    assert not out.requires_grad


def test_bad_arguments():
    with pytest.raises(ValueError, match="momentum"):
        MomentumEncoder(torch.nn.Linear(2, 2), 2, momentum=1.0)
    with pytest.raises(ValueError, match="queue_size"):
        MomentumEncoder(torch.nn.Linear(2, 2), 2, queue_size=0)
