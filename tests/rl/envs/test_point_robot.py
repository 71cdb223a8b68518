import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from domain_moe.rl.envs import PointRobot, sample_point_goals


@pytest.mark.parametrize("reward", ["dense", "sparse"])
def test_check_env(reward):
    check_env(PointRobot(reward=reward), skip_render_check=True)


def test_dynamics_and_dense_reward():
    env = PointRobot(episode_length=3, tasks=[(0.5, 0.0)])
    obs, info = env.reset(seed=0, options={"task": 0})
    assert np.all(np.abs(obs) <= 0.1)
    new, reward, _, truncated, _ = env.step(np.array([2.0, -0.5], dtype=np.float32))  # clipped to [1, -0.5]
    np.testing.assert_allclose(new, obs + 0.1 * np.array([1.0, -0.5]), atol=1e-6)
    assert reward == pytest.approx(-np.linalg.norm(new - np.array([0.5, 0.0])), abs=1e-6)
    assert not truncated


def test_sparse_reward():
    env = PointRobot(tasks=[(0.0, 0.0)], reward="sparse", goal_radius=0.5)
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == 1.0


def test_goal_samplers():
    square = sample_point_goals(100, 0, "square")
    assert square.shape == (100, 2) and np.abs(square).max() <= 1
    circle = sample_point_goals(100, 0, "half_circle")
    np.testing.assert_allclose(np.linalg.norm(circle, axis=1), 1.0, atol=1e-5)
    assert (circle[:, 1] >= 0).all()
    with pytest.raises(ValueError, match="sampler"):
        sample_point_goals(3, 0, "ring")


def test_bad_inputs():
    with pytest.raises(ValueError, match="reward"):
        PointRobot(reward="shaped")
    env = PointRobot()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(2,\)"):
        env.step(np.zeros(3, dtype=np.float32))
