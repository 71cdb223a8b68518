import pytest
import torch

from domain_moe.vision.canvas import AnswerSpace
from domain_moe.vision.experts import ExpertPool, TimmExpert
from domain_moe.vision.heads import QuestionHead
from domain_moe.vision.models import ContextRouter, MoVA, MoVAdapter


def _mova(route_mode="router", live=False, top_k=2, threshold=0.5):
    torch.manual_seed(0)
    pool = base = None
    channels = [8, 12, 16]
    if live:
        pool = ExpertPool(
            [
                TimmExpert("test_resnet", 3, img_size=32),
                TimmExpert("test_efficientnet", 2, img_size=32),
                TimmExpert("test_byobnet", 3, img_size=32),
            ],
            grid=4,
        )
        channels = pool.channels
        base = TimmExpert("test_convnext", 1, img_size=32)
    d_base = 32 if live else 16
    router = ContextRouter(d_base, 4, 6, 10, num_experts=3, top_k=top_k, threshold=threshold, d_context=8)
    adapter = MoVAdapter(d_base, channels, num_tokens=16, d_context=8, num_blocks=1, num_heads=2, top_k=top_k)
    head = QuestionHead(d_base, 6, 10, AnswerSpace(10, 3).mask(), d_context=8, num_heads=2)
    return MoVA(router, adapter, head, base=base, pool=pool, grid=4, route_mode=route_mode)


def test_cached_forward_and_router_choice(tiny_batch):
    model = _mova(threshold=None)
    logits = model(tiny_batch)
    assert logits.shape == (6, 19)
    assert model.last_routes.sum(-1).eq(2).all()


def test_live_unrouted_experts_are_not_run(tiny_batch):
    model = _mova(live=True, threshold=None, top_k=1)
    seen = [0, 0, 0]
    for j, e in enumerate(model.pool.experts):
        e.register_forward_hook(lambda m, i, o, j=j: seen.__setitem__(j, seen[j] + i[0].shape[0]))
    batch = {k: tiny_batch[k] for k in ("image", "context", "argument")}
    with torch.no_grad():
        model.router.router.gate.bias.copy_(torch.tensor([-9.0, 9.0, -9.0]))
    model(batch)
    assert seen == [0, 6, 0]
    assert model.last_routes[:, 1].all()


def test_random_router_matches_k(tiny_batch):
    model = _mova(route_mode="random", top_k=2, threshold=0.5)
    learned = _mova(route_mode="router", top_k=2, threshold=0.5)
    learned(tiny_batch)
    torch.manual_seed(1)
    model(tiny_batch)
    assert torch.equal(model.last_routes.sum(-1), learned.last_routes.sum(-1))


def test_annotation_and_none_modes(tiny_batch):
    model = _mova(route_mode="annotation")
    with pytest.raises(ValueError, match="route_target"):
        model(tiny_batch)
    batch = dict(tiny_batch, route_target=torch.tensor([[1, 0, 0]] * 6))
    model(batch)
    assert model.last_routes.tolist() == [[True, False, False]] * 6
    none = _mova(route_mode="none")
    none(tiny_batch)
    assert not none.last_routes.any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="route_mode"):
        _mova(route_mode="sometimes")
