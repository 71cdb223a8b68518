import pytest
import torch

from domain_moe.rl.models import LAST_FFNS, TOKEN_LAYOUTS, ADTransformer, T2MIRLayer


def _inputs(batch=2, steps=12, state_dim=6, action_dim=5, horizon=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, steps, state_dim, generator=g),
        torch.randn(batch, steps, action_dim, generator=g),
        torch.randn(batch, steps, generator=g),
        (torch.arange(steps) % horizon).expand(batch, steps).clone(),
    )


def _model(last_ffn="t2mir", discrete=True, token_layout="sar"):
    torch.manual_seed(0)
    return ADTransformer(
        6,
        5,
        discrete,
        max_episode_steps=4,
        max_context_steps=12,
        d_model=16,
        last_ffn=last_ffn,
        token_layout=token_layout,
    )


@pytest.mark.parametrize("last_ffn", LAST_FFNS)
def test_shapes(last_ffn):
    assert _model(last_ffn)(*_inputs()).shape == (2, 12, 5)
    out = _model(last_ffn, discrete=False)(*_inputs())
    assert out.shape == (2, 12, 10) and out[..., :5].abs().max() <= 1


@pytest.mark.parametrize("token_layout", TOKEN_LAYOUTS)
@pytest.mark.parametrize("last_ffn", LAST_FFNS)
def test_causal_no_look_ahead(last_ffn, token_layout):
    """Changing step 7's action and reward and everything after never changes the predictions up to step 7."""
    model = _model(last_ffn, token_layout=token_layout).eval()
    s, a, r, t = _inputs()
    s2, a2, r2 = s.clone(), a.clone(), r.clone()
    a2[:, 7:] += 5.0
    r2[:, 7:] -= 3.0
    s2[:, 8:] = torch.randn(2, 4, 6)
    out, out2 = model(s, a, r, t), model(s2, a2, r2, t)
    torch.testing.assert_close(out[:, :8], out2[:, :8])
    assert (out[:, 8:] - out2[:, 8:]).abs().max() > 1e-4


def test_variants_differ_only_in_the_last_ffn():
    dense, t2mir = _model("dense"), _model("t2mir")
    assert type(dense.blocks[0].ffn) is type(t2mir.blocks[0].ffn)
    assert isinstance(t2mir.blocks[-1].ffn, T2MIRLayer)
    assert dense.contrastive_loss() is None


def test_context_longer_than_max():
    s, a, r, t = _inputs(steps=16)
    with pytest.raises(ValueError, match="16 steps is longer than max_context_steps=12"):
        _model()(s, a, r, t)


def test_action_dim_mismatch():
    s, a, r, t = _inputs(action_dim=3)
    with pytest.raises(ValueError, match=r"actions must be \[B, N, action_dim\] = \[2, 12, 5\], got \(2, 12, 3\)"):
        _model()(s, a, r, t)


def test_other_bad_inputs():
    s, a, r, t = _inputs()
    with pytest.raises(ValueError, match="state_dim=6"):
        _model()(s[..., :4], a, r, t)
    with pytest.raises(ValueError, match="timesteps must lie"):
        _model()(s, a, r, t + 4)
    with pytest.raises(ValueError, match="timesteps must be int64"):
        _model()(s, a, r, t.float())
    with pytest.raises(ValueError, match="token_layout"):
        ADTransformer(6, 5, token_layout="sa")
    with pytest.raises(ValueError, match="last_ffn"):
        ADTransformer(6, 5, last_ffn="moe")
    with pytest.raises(ValueError, match="state_dim must be a positive int"):
        ADTransformer(0, 5)


def test_reset_parameters_restarts_ema_as_copy():
    model = _model()
    layer = model.t2mir_layers()[0]
    with torch.no_grad():
        layer.ema_gate.zero_()
    model.reset_parameters()
    torch.testing.assert_close(layer.ema_gate, layer.task_router.weight.detach())


def test_step_layout_reads_the_previous_action_and_reward():
    """Step tokens hold (s_t, a_{t-1}, r_{t-1}): changing a_t changes predictions from t + 1 on, not at t."""
    model = _model(token_layout="step").eval()
    s, a, r, t = _inputs()
    a2 = a.clone()
    a2[:, 4] += 1.0
    out, out2 = model(s, a, r, t), model(s, a2, r, t)
    torch.testing.assert_close(out[:, :5], out2[:, :5])
    assert (out[:, 5] - out2[:, 5]).abs().max() > 1e-5
