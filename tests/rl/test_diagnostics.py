import math

import numpy as np
import torch

from domain_moe.rl.contexts import ContextSampler
from domain_moe.rl.diagnostics import normalized_mutual_information, routing_health
from domain_moe.rl.envs import DarkRoom
from domain_moe.rl.histories import generate_histories
from domain_moe.rl.models import ADTransformer


def test_nmi_extremes():
    labels = np.repeat(np.arange(4), 25)
    assert normalized_mutual_information(labels, labels * 3 + 1) == 1.0
    rng = np.random.default_rng(0)
    assert normalized_mutual_information(labels, rng.integers(4, size=100)) < 0.1
    assert normalized_mutual_information(labels, np.zeros(100)) == 0.0
    # Hand value: X uniform on {0, 1}, Y = X except one flip out of four.
    x, y = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0])
    p = np.array([[0.5, 0.0], [0.25, 0.25]])
    px, py = p.sum(1), p.sum(0)
    mi = sum(p[i, j] * math.log(p[i, j] / (px[i] * py[j])) for i in range(2) for j in range(2) if p[i, j] > 0)
    hx, hy = -(px * np.log(px)).sum(), -(py * np.log(py)).sum()
    assert math.isclose(normalized_mutual_information(x, y), mi / math.sqrt(hx * hy))


def test_routing_health_ranges():
    torch.manual_seed(0)
    kwargs = {"grid_size": 5, "episode_length": 4}
    hist = generate_histories("domain_moe/DarkRoom-v0", DarkRoom.all_cells(5)[:6], "noise", 4, 0, env_kwargs=kwargs)
    model = ADTransformer(12, 5, True, 4, 8, d_model=16)
    health = routing_health(model, ContextSampler(hist, 2), views_per_task=4)
    assert 0 < health["token_entropy_ratio"] <= 1
    assert 0 <= health["task_nmi"] <= 1 and 0 <= health["contrastive_acc"] <= 1
    assert routing_health(ADTransformer(12, 5, True, 4, 8, d_model=16, last_ffn="dense"), ContextSampler(hist, 2)) == {}
