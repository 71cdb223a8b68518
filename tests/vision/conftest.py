"""Vision tests: skipped without timm or Lightning; one thread (tiny models on shared CPUs); small fixtures."""

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("lightning")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def canvases():
    """48 canvases from generated items (no files), seed 0."""
    from domain_moe.vision.canvas import make_canvases
    from domain_moe.vision.data import synthetic_items

    items, labels = synthetic_items(200, seed=0)
    return make_canvases(items, labels, 48, canvas_size=64, max_items=3, num_classes=10, seed=0)


@pytest.fixture
def tiny_batch(canvases):
    """A canvas batch of 6 with cached-style tokens for 3 experts of widths 8, 12, 16 on a 4x4 grid."""
    gen = torch.Generator().manual_seed(0)
    batch = {k: v[:6] for k, v in canvases.as_dict().items()}
    batch["base_tokens"] = torch.randn(6, 16, 16, generator=gen)
    batch["expert_tokens"] = [torch.randn(6, 16, c, generator=gen) for c in (8, 12, 16)]
    return batch
