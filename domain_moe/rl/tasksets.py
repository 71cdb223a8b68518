"""Task sets: the split of a family's tasks into training and held-out ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from domain_moe.rl.envs import ENV_IDS, DarkRoom, sample_point_goals

__all__ = ["draw_eval_tasks", "split_tasks"]


def split_tasks(
    env_id: str, num_train: int, num_test: int, seed: int = 0, env_kwargs: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint training and held-out goals.

    Dark Room shuffles every cell with ``seed``: the first ``num_test`` are held out, the next ``num_train``
    train. Point-Robot draws ``num_train + num_test`` goals with ``seed`` (``goal_sampler`` from
    ``env_kwargs``).

    Returns:
        ``(train_goals [num_train, 2], test_goals [num_test, 2])``.
    """
    if env_id not in ENV_IDS:
        raise ValueError(f"split_tasks: env_id must be one of {sorted(ENV_IDS)}, got {env_id!r}")
    env_kwargs = env_kwargs or {}
    if env_id == "domain_moe/DarkRoom-v0":
        cells = DarkRoom.all_cells(int(env_kwargs.get("grid_size", 7)))
        if num_train + num_test > len(cells):
            raise ValueError(
                f"split_tasks: num_train + num_test must be <= {len(cells)} cells, got {num_train} + {num_test}"
            )
        cells = cells[np.random.default_rng(seed).permutation(len(cells))]
        return cells[num_test : num_test + num_train], cells[:num_test]
    goals = sample_point_goals(num_train + num_test, seed, env_kwargs.get("goal_sampler", "square"))
    return goals[num_test:], goals[:num_test]


def draw_eval_tasks(
    env_id: str, n: int, seed: int, train_goals: np.ndarray, env_kwargs: dict[str, Any] | None = None
) -> np.ndarray:
    """``n`` goals never used in training, drawn with ``seed``.

    Dark Room draws cells outside ``train_goals`` (without replacement when there are enough); Point-Robot
    draws fresh goals from a generator keyed on ``seed`` (distinct from the training ones with probability 1).
    """
    env_kwargs = env_kwargs or {}
    rng = np.random.default_rng([seed, 7919])
    if env_id == "domain_moe/DarkRoom-v0":
        cells = DarkRoom.all_cells(int(env_kwargs.get("grid_size", 7)))
        used = {tuple(g) for g in np.asarray(train_goals).tolist()}
        pool = np.array([c for c in cells.tolist() if tuple(c) not in used], dtype=np.int64)
        if len(pool) == 0:
            raise ValueError("draw_eval_tasks: every Dark Room cell is a training goal; hold some out")
        return pool[rng.choice(len(pool), size=n, replace=n > len(pool))]
    if env_id == "domain_moe/PointRobot-v0":
        return sample_point_goals(n, int(rng.integers(2**31)), env_kwargs.get("goal_sampler", "square"))
    raise ValueError(f"draw_eval_tasks: env_id must be one of {sorted(ENV_IDS)}, got {env_id!r}")
