"""Task families as gymnasium environments, registered under ``domain_moe/<Name>-v0``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from domain_moe.rl.envs.dark_room import DARK_ROOM_MOVES, DarkRoom
from domain_moe.rl.envs.point_robot import PointRobot, sample_point_goals

__all__ = ["DARK_ROOM_MOVES", "ENV_IDS", "DarkRoom", "PointRobot", "make_env", "register_envs", "sample_point_goals"]

#: Registered ids and their entry points.
ENV_IDS = {
    "domain_moe/DarkRoom-v0": "domain_moe.rl.envs.dark_room:DarkRoom",
    "domain_moe/PointRobot-v0": "domain_moe.rl.envs.point_robot:PointRobot",
}


def register_envs() -> None:
    """Register the task families with gymnasium (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, disable_env_checker=True)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` for the task families, with a clear error for an unknown id.

    Args:
        env_id: one of :data:`ENV_IDS`.
        **kwargs: constructor arguments (``tasks``, ``episode_length``, ...).

    Returns:
        The environment (unwrapped: the task families truncate on their own).
    """
    if env_id not in ENV_IDS:
        raise ValueError(f"make_env: env_id must be one of {sorted(ENV_IDS)}, got {env_id!r}")
    register_envs()
    return gym.make(env_id, **kwargs).unwrapped


register_envs()
