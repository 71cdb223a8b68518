import pytest
import torch

from domain_moe.vision.zoo import BASE_SPEC, EXPERT_SPECS, build_base, build_pool


def test_default_pool_is_heterogeneous_and_frozen():
    pool = build_pool(grid=8)
    assert pool.names == list(EXPERT_SPECS)
    assert pool.channels == [192, 128, 32, 24]
    assert len({e.reduction for e in pool.experts}) == 3  # strides 16, 8, 4
    assert not any(p.requires_grad for p in pool.parameters())
    assert pool(torch.zeros(2, 1, 64, 64), 3).shape == (2, 64, 24)
    base = build_base()
    assert base.img_size == BASE_SPEC["img_size"] and base.channels == 64


def test_missing_checkpoint():
    with pytest.raises(FileNotFoundError, match="expert checkpoint not found"):
        build_pool({"detection": "/nonexistent/detection.pt"})
