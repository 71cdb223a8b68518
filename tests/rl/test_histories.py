import numpy as np
import pytest

from domain_moe.rl.envs import DarkRoom, sample_point_goals
from domain_moe.rl.histories import LearningHistories, generate_histories

DARK = "domain_moe/DarkRoom-v0"
POINT = "domain_moe/PointRobot-v0"
CASES = [
    (DARK, "noise", 12, {"grid_size": 5, "episode_length": 10}),
    (DARK, "q-learning", 40, {"grid_size": 5, "episode_length": 10}),
    (DARK, "psrl", 8, {"grid_size": 5, "episode_length": 10}),
    (POINT, "noise", 12, {}),
    (POINT, "reinforce", 40, {}),
]


def _goals(env_id):
    return DarkRoom.all_cells(5) if env_id == DARK else sample_point_goals(40, 0)


@pytest.mark.parametrize(("env_id", "source", "episodes", "kwargs"), CASES)
def test_reproducible_from_seed(env_id, source, episodes, kwargs):
    a = generate_histories(env_id, _goals(env_id), source, episodes, seed=3, env_kwargs=kwargs)
    b = generate_histories(env_id, _goals(env_id), source, episodes, seed=3, env_kwargs=kwargs)
    c = generate_histories(env_id, _goals(env_id), source, episodes, seed=4, env_kwargs=kwargs)
    for name in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.actions, c.actions)


@pytest.mark.parametrize(("env_id", "source", "episodes", "kwargs"), CASES)
def test_histories_improve(env_id, source, episodes, kwargs):
    h = generate_histories(env_id, _goals(env_id), source, episodes, seed=0, env_kwargs=kwargs)
    returns = h.returns().mean(0)
    assert returns[-3:].mean() > returns[:3].mean() + 0.5


def test_rewards_match_the_environment():
    """Replaying the recorded actions in the gymnasium env gives the recorded observations and rewards."""
    h = generate_histories(
        DARK, [(0, 1), (4, 4)], "noise", 3, seed=1, env_kwargs={"grid_size": 5, "episode_length": 10}
    )
    env = DarkRoom(grid_size=5, episode_length=10, tasks=h.goals)
    for task in range(2):
        for ep in range(3):
            obs, _ = env.reset(options={"task": task})
            for t in range(10):
                assert obs == h.observations[task, ep, t]
                obs, reward, *_ = env.step(int(h.actions[task, ep, t]))
                assert reward == h.rewards[task, ep, t]


def test_noise_source_ends_at_the_expert():
    h = generate_histories(
        DARK, DarkRoom.all_cells(5), "noise", 10, seed=0, env_kwargs={"grid_size": 5, "episode_length": 10}
    )
    # The last episode is noise-free: the optimal return from the centre is T - distance + 1.
    dist = np.abs(h.goals - 2).sum(1)
    np.testing.assert_array_equal(h.returns()[:, -1], np.where(dist == 0, 10, 10 - dist + 1))


def test_save_load_round_trip(tmp_path):
    h = generate_histories(POINT, sample_point_goals(3, 0), "reinforce", 4, seed=7)
    path = h.save(tmp_path / "hist.npz")
    back = LearningHistories.load(path)
    assert (back.env_id, back.source, back.seed) == (POINT, "reinforce", 7)
    np.testing.assert_array_equal(back.actions, h.actions)
    with pytest.raises(FileNotFoundError, match=r"missing\.npz"):
        LearningHistories.load(tmp_path / "missing.npz")


def test_bad_arguments():
    with pytest.raises(ValueError, match="source for domain_moe/DarkRoom-v0"):
        generate_histories(DARK, [(0, 0)], "reinforce")
    with pytest.raises(ValueError, match="env_id"):
        generate_histories("Pong-v5", [(0, 0)])


def test_posterior_sampling_exploits_once_the_goal_is_seen():
    """After the first rewarded step a task's later episodes all reach the goal (up to the epsilon noise)."""
    kw = {"grid_size": 5, "episode_length": 10}
    h = generate_histories(DARK, DarkRoom.all_cells(5), "psrl", 8, seed=0, env_kwargs=kw)
    found = h.rewards.sum(-1) > 0
    first = found.argmax(1)
    assert found.any(1).all()
    later = np.array([found[i, first[i] + 1 :].mean() if first[i] < 7 else 1.0 for i in range(len(found))])
    assert later.mean() > 0.9
    assert h.returns()[:, -1].mean() > 5
