import numpy as np
import pytest
import torch
from torch import nn

from domain_moe.rl.evaluation import in_context_returns
from domain_moe.rl.models import ADTransformer


class _Stay(nn.Module):
    """Always the 'stay' action (index 0); records the context lengths it was shown."""

    discrete_actions = True

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.lengths = []

    def forward(self, states, actions, rewards, timesteps):
        self.lengths.append(states.shape[1])
        out = torch.full((*states.shape[:2], 5), -10.0)
        out[..., 0] = 10.0
        return out


def test_returns_shape_and_oracle_values():
    model = _Stay()
    goals = np.array([[3, 3], [0, 0]])  # the centre of 7x7 is (3, 3): staying there pays every step
    out = in_context_returns(
        model,
        "domain_moe/DarkRoom-v0",
        goals,
        {"grid_size": 7, "episode_length": 5},
        num_episodes=3,
        context_episodes=2,
        rollouts_per_task=2,
    )
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out[[0, 2]], 5.0)
    np.testing.assert_array_equal(out[[1, 3]], 0.0)
    # K - 1 past episodes plus the current one: never more than K T steps.
    assert max(model.lengths) == 10 and model.lengths[:5] == [1, 2, 3, 4, 5]


def test_seeded_and_restores_mode():
    torch.manual_seed(0)
    model = ADTransformer(2, 2, False, 20, 60, d_model=16)
    model.train()
    kwargs = {"num_episodes": 2, "context_episodes": 3, "seed": 3}
    a = in_context_returns(model, "domain_moe/PointRobot-v0", [[0.5, 0.5]], **kwargs)
    b = in_context_returns(model, "domain_moe/PointRobot-v0", [[0.5, 0.5]], **kwargs)
    np.testing.assert_array_equal(a, b)
    assert model.training


def test_unknown_env():
    with pytest.raises(ValueError, match="env_id"):
        in_context_returns(_Stay(), "domain_moe/Maze-v0", [[0, 0]])
