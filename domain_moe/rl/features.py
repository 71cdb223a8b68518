"""Model inputs from raw observations and actions of the task families."""

from __future__ import annotations

from typing import Any

import numpy as np

from domain_moe.rl.envs import DARK_ROOM_MOVES, ENV_IDS

__all__ = ["action_dim", "encode_actions", "encode_states", "is_discrete", "state_dim"]


def _grid(env_kwargs: dict[str, Any]) -> int:
    return int(env_kwargs.get("grid_size", 7))


def _check(env_id: str) -> None:
    if env_id not in ENV_IDS:
        raise ValueError(f"env_id must be one of {sorted(ENV_IDS)}, got {env_id!r}")


def is_discrete(env_id: str) -> bool:
    """Whether the family has discrete actions."""
    _check(env_id)
    return env_id == "domain_moe/DarkRoom-v0"


def state_dim(env_id: str, env_kwargs: dict[str, Any] | None = None) -> int:
    """Width of :func:`encode_states`' output."""
    _check(env_id)
    return 2 + 2 * _grid(env_kwargs or {}) if is_discrete(env_id) else 2


def action_dim(env_id: str) -> int:
    """Action width (the number of actions when discrete)."""
    _check(env_id)
    return len(DARK_ROOM_MOVES) if is_discrete(env_id) else 2


def encode_states(env_id: str, obs: np.ndarray, env_kwargs: dict[str, Any] | None = None) -> np.ndarray:
    """Dark Room cells to ``[row, col]`` scaled to ``[-1, 1]`` plus one-hot row and column; Point-Robot as is.

    The linear coordinates let the model compare a cell with a remembered goal (the sign of the difference
    is the move); the one-hots let it recognise a cell exactly. Categorical cell embeddings alone are hard
    to turn into directions.

    Shapes:
        - obs: ``[...]`` (Dark Room cell indices) or ``[..., 2]``
        - output: ``[..., state_dim]`` float32
    """
    _check(env_id)
    if not is_discrete(env_id):
        return np.asarray(obs, dtype=np.float32)
    grid = _grid(env_kwargs or {})
    row, col = np.divmod(np.asarray(obs, dtype=np.int64), grid)
    coords = np.stack([row, col], -1).astype(np.float32) * (2.0 / max(grid - 1, 1)) - 1.0
    eye = np.eye(grid, dtype=np.float32)
    return np.concatenate([coords, eye[row], eye[col]], -1)


def encode_actions(env_id: str, actions: np.ndarray) -> np.ndarray:
    """Dark Room action indices to one-hot; Point-Robot actions as is (float32).

    Shapes:
        - actions: ``[...]`` (indices) or ``[..., 2]``
        - output: ``[..., action_dim]``
    """
    _check(env_id)
    if not is_discrete(env_id):
        return np.asarray(actions, dtype=np.float32)
    return np.eye(len(DARK_ROOM_MOVES), dtype=np.float32)[np.asarray(actions, dtype=np.int64)]
