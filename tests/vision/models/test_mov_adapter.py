import pytest
import torch

from domain_moe.vision.models import MoVAdapter, MoVAdapterBlock


def _tokens(batch, routes):
    out = {}
    for j, t in enumerate(batch["expert_tokens"]):
        idx = routes[:, j].nonzero().squeeze(1)
        if idx.numel():
            out[j] = (idx, t[idx])
    return out


def _randomise_cross(block):
    for c in block.cross:
        torch.nn.init.normal_(c.attn.out_proj.weight, std=0.5)


def test_identity_at_initialisation(tiny_batch):
    adapter = MoVAdapter(16, [8, 12, 16], num_tokens=16, d_context=4, num_blocks=2, num_heads=2)
    routes = torch.ones(6, 3, dtype=torch.bool)
    x = tiny_batch["base_tokens"]
    torch.testing.assert_close(adapter(x, _tokens(tiny_batch, routes), routes, torch.randn(6, 4)), x)


def test_routed_set_mask_and_empty_route(tiny_batch):
    torch.manual_seed(0)
    block = MoVAdapterBlock(16, [8, 12, 16], d_context=4, num_heads=2, top_k=2)
    _randomise_cross(block)
    torch.nn.init.normal_(block.gate.weight)
    routes = torch.tensor([[True, False, True], [False, True, False], [False, False, False]] * 2)
    x = tiny_batch["base_tokens"]
    y = block(x, _tokens(tiny_batch, routes), routes, torch.randn(6, 4))
    w = block.last_weights
    assert (w[~routes] == 0).all()
    torch.testing.assert_close(w.sum(-1), routes.any(-1).float())
    # No routed expert: the block (its self-attention and MLP start at zero) returns the base tokens.
    assert torch.equal(y[2], x[2]) and torch.equal(y[5], x[5])
    assert not torch.allclose(y[0], x[0])


def test_unselected_experts_not_computed_and_no_gradient(tiny_batch):
    torch.manual_seed(0)
    block = MoVAdapterBlock(16, [8, 12, 16], d_context=4, num_heads=2, top_k=2)
    _randomise_cross(block)
    calls = [0, 0, 0]
    for j, c in enumerate(block.cross):
        c.register_forward_hook(lambda m, i, o, j=j: calls.__setitem__(j, calls[j] + len(i[0])))
    routes = torch.tensor([[True, False, False], [True, False, True]] * 3)
    y = block(tiny_batch["base_tokens"], _tokens(tiny_batch, routes), routes, torch.randn(6, 4))
    y.sum().backward()
    assert calls == [6, 0, 3]  # expert 1 never called, expert 2 only on its three samples
    assert all(p.grad is None for p in block.cross[1].parameters())
    assert block.cross[0].attn.out_proj.weight.grad.abs().sum() > 0


def test_uniform_gate_weights(tiny_batch):
    block = MoVAdapterBlock(16, [8, 12, 16], d_context=4, num_heads=2, top_k=2, uniform_gate=True)
    routes = torch.tensor([[True, True, False], [False, False, True], [False, False, False]] * 2)
    block(tiny_batch["base_tokens"], _tokens(tiny_batch, routes), routes, torch.randn(6, 4))
    assert block.last_weights[0].tolist() == [0.5, 0.5, 0.0] and block.last_weights[1].tolist() == [0, 0, 1.0]


def test_cross_attention_key_padding_mask():
    from domain_moe.vision.models import ExpertCrossAttention

    torch.manual_seed(0)
    attn = ExpertCrossAttention(8, 4, num_heads=2)
    torch.nn.init.normal_(attn.attn.out_proj.weight)
    x, f = torch.randn(2, 3, 8), torch.randn(2, 5, 4)
    mask = torch.tensor([[False, False, True, True, True]] * 2)
    masked = attn(x, f, key_padding_mask=mask)
    f2 = f.clone()
    f2[:, 2:] = torch.randn(2, 3, 4)  # masked keys do not matter
    torch.testing.assert_close(attn(x, f2, key_padding_mask=mask), masked)
    assert not torch.allclose(attn(x, f2), attn(x, f))


def test_bad_routes(tiny_batch):
    adapter = MoVAdapter(16, [8, 12, 16], num_tokens=16, d_context=4, num_blocks=1, num_heads=2)
    with pytest.raises(ValueError, match="allowed must be bool"):
        adapter(tiny_batch["base_tokens"], {}, torch.ones(6, 2, dtype=torch.bool), torch.randn(6, 4))
    routes = torch.ones(6, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="expert 0 is routed"):
        adapter(tiny_batch["base_tokens"], {}, routes, torch.randn(6, 4))
