import pytest
import torch

from domain_moe.core.routing import RandomSubsetRouter
from domain_moe.testing import check_router


def test_conformance():
    check_router(RandomSubsetRouter(8, 5, top_k=2), weights_sum=1.0, check_gradient=False)


def test_matched_k_distinct_and_uniform():
    router = RandomSubsetRouter(4, 4, top_k=3)
    k = torch.tensor([0, 1, 2, 3] * 500)
    d = router(torch.randn(2000, 4), k)
    assert torch.equal((d.topk_idx >= 0).sum(-1), k)
    rows = d.topk_idx[k == 3]
    assert all(len(set(r.tolist())) == 3 for r in rows[:50])
    torch.testing.assert_close(d.topk_w.sum(-1)[k > 0], torch.ones(int((k > 0).sum())))
    counts = d.counts.float()
    assert (counts / counts.mean() - 1).abs().max() < 0.1


def test_seeded_generator_is_deterministic():
    a = RandomSubsetRouter(4, 6, top_k=2, generator=torch.Generator().manual_seed(3))(torch.randn(9, 4))
    b = RandomSubsetRouter(4, 6, top_k=2, generator=torch.Generator().manual_seed(3))(torch.randn(9, 4))
    assert torch.equal(a.topk_idx, b.topk_idx)


def test_bad_num_selected():
    router = RandomSubsetRouter(4, 4, top_k=2)
    with pytest.raises(ValueError, match="num_selected must lie"):
        router(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_selected must be an int tensor"):
        router(torch.randn(2, 4), torch.tensor([0.0, 1.0]))
