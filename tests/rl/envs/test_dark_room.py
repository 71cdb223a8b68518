import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from domain_moe.rl.envs import DarkRoom


def test_check_env():
    check_env(DarkRoom(grid_size=5, episode_length=8), skip_render_check=True)


def test_task_options_and_reward():
    env = DarkRoom(grid_size=5, episode_length=4, tasks=[(2, 3), (0, 0)])
    obs, info = env.reset(seed=0, options={"task": 0})
    assert int(obs) == 12 and info["goal"].tolist() == [2, 3]
    obs, reward, terminated, truncated, _ = env.step(2)  # right: onto the goal
    assert int(obs) == 13 and reward == 1.0 and not terminated and not truncated
    _, reward, _, _, _ = env.step(0)  # staying keeps paying
    assert reward == 1.0
    _, reward, _, _, _ = env.step(4)
    assert reward == 0.0
    *_, truncated, _ = env.step(0)
    assert truncated
    _, info = env.reset(options={"goal": (4, 4)})
    assert info["goal"].tolist() == [4, 4]


def test_walls_clip():
    env = DarkRoom(grid_size=3, episode_length=5, start=(0, 0))
    env.reset(seed=0)
    obs, *_ = env.step(1)  # up from the top row
    assert int(obs) == 0


def test_plain_reset_draws_from_the_task_set():
    env = DarkRoom(grid_size=5, tasks=[(1, 1), (3, 3)])
    goals = {tuple(env.reset(seed=s)[1]["goal"].tolist()) for s in range(20)}
    assert goals == {(1, 1), (3, 3)}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid_size": 1}, "grid_size"),
        ({"episode_length": 0}, "episode_length"),
        ({"tasks": [(0, 9)]}, "tasks"),
        ({"tasks": np.zeros((2, 3))}, r"\[n, 2\]"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DarkRoom(**kwargs)


def test_bad_task_index_and_action():
    env = DarkRoom(grid_size=3, tasks=[(0, 0)])
    with pytest.raises(ValueError, match="options\\['task'\\]"):
        env.reset(options={"task": 3})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(7)
