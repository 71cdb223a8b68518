import pytest
import torch

from domain_moe.vision.models import ExpertCrossAttention


def test_zero_initialised_output_and_width_check():
    attn = ExpertCrossAttention(8, 4, num_heads=2)
    assert torch.equal(attn(torch.randn(2, 3, 8), torch.randn(2, 5, 4)), torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match="expert tokens must be"):
        attn(torch.randn(2, 3, 8), torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="divisible"):
        ExpertCrossAttention(10, 4, num_heads=4)


def test_attends_over_expert_tokens_like_the_oracle():
    torch.manual_seed(0)
    attn = ExpertCrossAttention(8, 4, num_heads=1)
    torch.nn.init.normal_(attn.attn.out_proj.weight)
    x, f = torch.randn(1, 2, 8), torch.randn(1, 3, 4)
    q = attn.norm_q(x) @ attn.attn.q_proj_weight.T + attn.attn.in_proj_bias[:8]
    k = attn.norm_kv(f) @ attn.attn.k_proj_weight.T + attn.attn.in_proj_bias[8:16]
    v = attn.norm_kv(f) @ attn.attn.v_proj_weight.T + attn.attn.in_proj_bias[16:]
    w = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, -1)
    expected = attn.attn.out_proj(w @ v)
    torch.testing.assert_close(attn(x, f), expected)


def _shuffled_keys_change(attn: ExpertCrossAttention) -> float:
    torch.manual_seed(1)
    torch.nn.init.normal_(attn.attn.out_proj.weight)
    x, f = torch.randn(2, 16, 8), torch.randn(2, 16, 4)
    perm = torch.randperm(16)
    return float((attn(x, f) - attn(x, f[:, perm])).abs().max())


def test_rope_makes_keys_carry_their_grid_position():
    # Without positions on the keys, attention is blind to where an expert token sits on the grid:
    # shuffling the expert tokens leaves every output unchanged.
    attn = ExpertCrossAttention(8, 4, num_heads=2)
    assert attn.rope
    assert _shuffled_keys_change(attn) > 1e-3
    attn.rope = False
    assert _shuffled_keys_change(attn) < 1e-5


def test_rope_is_relative_and_matches_the_oracle_without_rotation(monkeypatch):
    from domain_moe.vision.models import cross_attention

    torch.manual_seed(0)
    q = torch.randn(1, 1, 4, 8)
    # A query and key with the same content at the same cell score like unrotated vectors (relative rotation).
    rotated = cross_attention.rope_2d(q, 2, 2)
    torch.testing.assert_close((rotated * rotated).sum(-1), (q * q).sum(-1))
    # With the rotation switched off the custom path is exactly multi-head attention.
    attn = ExpertCrossAttention(8, 4, num_heads=2)
    torch.nn.init.normal_(attn.attn.out_proj.weight)
    x, f, mask = torch.randn(2, 4, 8), torch.randn(2, 9, 4), torch.zeros(2, 9, dtype=torch.bool)
    mask[0, :3] = True
    monkeypatch.setattr(cross_attention, "rope_2d", lambda t, side, ref, base=100.0: t)
    expected = attn.attn(attn.norm_q(x), attn.norm_kv(f), attn.norm_kv(f), key_padding_mask=mask)[0]
    torch.testing.assert_close(attn(x, f, mask), expected)
    with pytest.raises(ValueError, match="divisible by 4"):
        ExpertCrossAttention(12, 4, num_heads=2)
