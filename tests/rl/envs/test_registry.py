import gymnasium as gym
import pytest

from domain_moe.rl.envs import ENV_IDS, DarkRoom, PointRobot, make_env


def test_registered_ids_make_the_families():
    assert isinstance(make_env("domain_moe/DarkRoom-v0", grid_size=4), DarkRoom)
    assert isinstance(make_env("domain_moe/PointRobot-v0"), PointRobot)
    for env_id in ENV_IDS:
        assert env_id in gym.registry


def test_task_set_as_constructor_argument():
    env = make_env("domain_moe/DarkRoom-v0", grid_size=4, tasks=[(1, 2)])
    assert env.reset(seed=0)[1]["goal"].tolist() == [1, 2]


def test_unknown_env_id():
    with pytest.raises(ValueError, match=r"env_id must be one of .*got 'CartPole-v1'"):
        make_env("CartPole-v1")
