import copy

import pytest
import torch

from domain_moe.vision.canvas import AnswerSpace
from domain_moe.vision.heads import QuestionHead
from domain_moe.vision.models import Astrea, MomentumEncoder, StochasticExpertDrop


def _astrea(**kw):
    torch.manual_seed(0)
    head = QuestionHead(16, 6, 10, AnswerSpace(10, 3).mask(), d_context=8, num_heads=2)
    return Astrea(16, [8, 12, 16], head, num_classes=10, num_heads=2, queue_size=8, **kw)


def test_allocator_weights_on_the_simplex(tiny_batch):
    model = _astrea()
    model(tiny_batch)
    w = model.last_weights
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    uniform = _astrea(allocator="uniform")
    uniform(tiny_batch)
    torch.testing.assert_close(uniform.last_weights, torch.full((6, 3), 1 / 3))
    assert "balance" not in uniform.last_aux


def test_stochastic_residual_is_identity_in_eval(tiny_batch):
    drop = StochasticExpertDrop(3, 0.5, 0.9).eval()
    keep, scale = drop(5)
    assert keep.all() and torch.equal(scale, torch.ones(5, 3))
    model = _astrea().eval()
    for a in model.fusion.adapters:
        torch.nn.init.normal_(a.attn.out_proj.weight, std=0.3)
    out1, out2 = model(tiny_batch), model(tiny_batch)
    assert torch.equal(out1, out2)
    # The eval fusion is the deterministic X + sum_k w_k A_k(X, g_k(F_k)).
    fused, w, context, base, experts = model.fuse(tiny_batch)
    manual = base + sum(
        w[:, k, None, None] * model.fusion.adapters[k](base, model.fusion.embed(k, experts[k])) for k in range(3)
    )
    torch.testing.assert_close(fused, manual)


def test_stochastic_residual_training_masks_and_schedule():
    torch.manual_seed(0)
    drop = StochasticExpertDrop(4, 0.5, 0.9).train()
    keep, scale = drop(4000)
    assert abs(keep.float().mean().item() - 0.5) < 0.03
    torch.testing.assert_close(scale[keep], torch.full_like(scale[keep], 2.0))
    drop.set_progress(1.0)
    assert drop.p == pytest.approx(0.9)


def test_dropped_experts_are_not_computed(tiny_batch):
    model = _astrea().eval()
    calls = [0, 0, 0]
    for k, a in enumerate(model.fusion.adapters):
        a.register_forward_hook(lambda m, i, o, k=k: calls.__setitem__(k, calls[k] + 1))
    model(tiny_batch, drop_experts=[1])
    assert calls == [1, 0, 1]


def test_ema_gets_no_gradient_and_moves_by_one_minus_m(tiny_batch):
    model = _astrea(moco_momentum=0.9).train()
    out = model(tiny_batch)
    (out.logsumexp(-1).mean() + model.aux_loss()).backward()
    ema = model.momentum.ema
    assert all(p.grad is None and not p.requires_grad for p in ema.parameters())
    online = torch.nn.ModuleList([model.fusion, model.moco_head])
    with torch.no_grad():
        for p in online.parameters():
            p.add_(0.1)
    before = [p.clone() for p in ema.parameters()]
    model.momentum_update()
    for p_m, b, p in zip(ema.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(p_m, b + 0.1 * (p - b))


def test_queue_is_fifo():
    enc = MomentumEncoder(torch.nn.Linear(2, 2), d_key=2, momentum=0.5, queue_size=3)
    assert enc.negatives() is None
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    enc.enqueue(keys)
    enc.enqueue(torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))
    # 4 keys into 3 slots: the oldest ([1, 0]) is overwritten by the newest ([0, -1]).
    assert enc.queue.tolist() == [[0.0, -1.0], [0.0, 1.0], [-1.0, 0.0]]
    assert enc.negatives().shape == (3, 2)


def test_moco_and_balance_losses_present_in_training(tiny_batch):
    model = _astrea().train()
    model(tiny_batch)
    assert set(model.last_aux) == {"balance", "moco", "moco_acc"}
    off = _astrea(moco=False, stochastic_residual=False).train()
    off(tiny_batch)
    assert set(off.last_aux) == {"balance"} and off.momentum is None and off.drop is None


def test_progressive_prealignment_freezes_earlier_projectors(tiny_batch):
    model = _astrea()
    loss = model.prealign_loss(2, tiny_batch, aligned=[0, 1])
    loss.backward()
    assert model.fusion.projectors[2].weight.grad.abs().sum() > 0
    assert model.fusion.projectors[0].weight.grad is None and model.fusion.projectors[1].weight.grad is None
    # Hand check of the anchors: the normalised mean of the class embeddings.
    presence = tiny_batch["presence"][:1]
    expected = model.anchor_table[presence[0].bool()].sum(0)
    torch.testing.assert_close(model.anchors(presence)[0], expected / expected.norm())


def test_deepcopy_and_eval_determinism(tiny_batch):
    model = _astrea().eval()
    twin = copy.deepcopy(model)
    assert torch.equal(model(tiny_batch), twin(tiny_batch))


def _describing_astrea(**kw):
    from domain_moe.vision.canvas import caption_vocab_size
    from domain_moe.vision.models import Describer

    return _astrea(describer=Describer(16, caption_vocab_size(10), d_hidden=16, d_embed=8), **kw)


def test_describe_losses_join_training_and_reach_the_fusion(tiny_batch):
    model = _describing_astrea(moco=False).train()
    for a in model.fusion.adapters:
        torch.nn.init.normal_(a.attn.out_proj.weight, std=0.3)
    model(tiny_batch)
    assert {"caption", "retrieval"} <= set(model.last_aux)
    model.aux_loss().backward()
    # The describe losses train the describe context, the describer and (through the fusion) the adapters.
    assert model.describe_context.grad is not None and model.describe_context.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.adapters.parameters())
    no_caption = {k: v for k, v in tiny_batch.items() if k != "caption"}
    model(no_caption)
    assert "caption" not in model.last_aux


def test_describe_uses_its_own_context_and_is_deterministic_in_eval(tiny_batch):
    model = _describing_astrea().eval()
    torch.nn.init.normal_(model.describe_context)
    out1 = model.describe(tiny_batch, 5)
    out2 = model.describe(tiny_batch, 5)
    assert out1["caption"].shape == (6, 5) and out1["image_embedding"].shape == (6, 8)
    assert torch.equal(out1["caption"], out2["caption"])
    _, w_describe, *_ = model.fuse(tiny_batch, describe=True)
    _, w_question, *_ = model.fuse(tiny_batch)
    assert not torch.allclose(w_describe, w_question)


def test_describe_needs_a_describer(tiny_batch):
    with pytest.raises(ValueError, match="needs an Astrea built with a describer"):
        _astrea().describe(tiny_batch, 5)
    from domain_moe.vision.models import Describer

    with pytest.raises(ValueError, match="describer must be d_model=16 wide"):
        _astrea(describer=Describer(8, 13))
