import math

import pytest
import torch
import torch.nn.functional as F

from domain_moe.core.moe import collect_aux
from domain_moe.rl.models import T2MIRLayer, contrastive_routing_accuracy, contrastive_routing_loss


def _layer(**kwargs):
    torch.manual_seed(0)
    return T2MIRLayer(16, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"token_moe": False}, {"task_moe": False}])
def test_output_width_is_concat_of_two_halves(kwargs):
    layer = _layer(**kwargs)
    y = layer(torch.randn(3, 7, 16))
    assert y.shape == (3, 7, 16)
    layer.eval()
    h = torch.randn(2, 4, 16)
    y = layer(h)
    torch.testing.assert_close(y[..., :8], layer.token(h))


@pytest.mark.parametrize("routing", ["token", "causal_mean"])
def test_future_tokens_never_change_earlier_outputs(routing):
    layer = _layer(task_routing=routing).eval()
    h = torch.randn(2, 9, 16)
    h2 = h.clone()
    h2[:, 5:] = torch.randn(2, 4, 16) * 3
    torch.testing.assert_close(layer(h)[:, :5], layer(h2)[:, :5])


def test_sequence_mean_routing_leaks_the_future():
    """The official hard router sees the whole sequence: shown here so the causal default is a real choice."""
    layer = _layer(task_routing="sequence_mean").eval()
    h = torch.randn(1, 9, 16)
    diffs = []
    for s in range(20):
        h2 = h.clone()
        h2[:, 5:] = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(s)) * 5
        diffs.append((layer(h)[:, :5] - layer(h2)[:, :5]).abs().max())
    assert max(diffs) > 1e-4


def test_causal_mean_routing_input():
    layer = _layer()
    h = torch.randn(2, 5, 16)
    u = layer.routing_input(h)
    torch.testing.assert_close(u[:, 3], h[:, :4].mean(1))


def test_ema_gate_gets_no_gradient_and_moves_by_tau():
    layer = _layer(ema_tau=0.1)
    torch.testing.assert_close(layer.ema_gate, layer.task_router.weight.detach())
    assert "ema_gate" not in dict(layer.named_parameters())
    layer(torch.randn(4, 6, 16))
    (layer.contrastive_loss() + layer.last_routing["q"].sum()).backward()
    assert layer.ema_gate.grad is None and not layer.ema_gate.requires_grad
    assert layer.task_router.weight.grad is not None
    before = layer.ema_gate.clone()
    with torch.no_grad():
        layer.task_router.weight.add_(1.0)
    layer.ema_update()
    torch.testing.assert_close(layer.ema_gate, before + 0.1 * (layer.task_router.weight - before))


def test_key_is_detached():
    layer = _layer()
    layer(torch.randn(4, 6, 16, requires_grad=True))
    assert not layer.last_routing["k"].requires_grad


def test_contrastive_loss_matches_hand_computation():
    torch.manual_seed(1)
    q, k, w = torch.randn(6, 4), torch.randn(6, 4), torch.randn(4, 4)
    l1 = q[:3] @ w @ k[3:].T
    l2 = q[3:] @ w @ k[:3].T
    want = 0.5 * (F.cross_entropy(l1, torch.arange(3)) + F.cross_entropy(l2, torch.arange(3)))
    torch.testing.assert_close(contrastive_routing_loss(q, k, w), want)


def test_contrastive_loss_minimal_when_views_match():
    torch.manual_seed(2)
    # Equal norms: the bilinear score of a view with itself is then the row maximum.
    tasks = F.normalize(torch.randn(8, 4), dim=1) * 3
    w = torch.eye(4)
    matched = contrastive_routing_loss(torch.cat([tasks, tasks]), torch.cat([tasks, tasks]), w)
    losses = []
    for s in range(10):
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(s))
        if (perm == torch.arange(8)).all():
            continue
        losses.append(contrastive_routing_loss(torch.cat([tasks, tasks]), torch.cat([tasks[perm], tasks[perm]]), w))
    assert matched < min(losses)
    assert contrastive_routing_accuracy(torch.cat([tasks, tasks]), torch.cat([tasks, tasks]), w) == 1.0


def test_contrastive_loss_falls_when_task_is_decodable():
    """Training the gate on views whose task is linearly decodable drives the loss well below chance."""
    torch.manual_seed(3)
    layer = _layer()
    centres = torch.randn(8, 16)
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    first = None
    for _ in range(150):
        views = centres.repeat(2, 1)[:, None, :] + 0.3 * torch.randn(16, 5, 16)
        layer(views)
        loss = layer.contrastive_loss()
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
        layer.ema_update()
    assert float(loss) < 0.5 * math.log(8) < first * 2


def test_balance_loss_collected_from_the_core_layer():
    layer = _layer()
    layer(torch.randn(2, 6, 16))
    aux = collect_aux(layer)
    assert aux > 0 and set(layer.token.last_aux.losses) == {"importance", "load"}


def test_bad_inputs():
    with pytest.raises(ValueError, match="even"):
        T2MIRLayer(15)
    with pytest.raises(ValueError, match="task_routing"):
        T2MIRLayer(16, task_routing="mean")
    with pytest.raises(ValueError, match=r"\[B, L, d_model=16\], got \(4, 16\)"):
        T2MIRLayer(16)(torch.randn(4, 16))
    with pytest.raises(ValueError, match="even B"):
        contrastive_routing_loss(torch.randn(3, 4), torch.randn(3, 4), torch.eye(4))
    with pytest.raises(ValueError, match="weight must be"):
        contrastive_routing_loss(torch.randn(4, 4), torch.randn(4, 4), torch.eye(3))
