"""Point-Robot: 2-D goal reaching with continuous actions (T2MIR, Wu et al., 2025)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["PointRobot", "sample_point_goals"]

GOAL_SAMPLERS = ("square", "half_circle")
REWARDS = ("dense", "sparse")


def sample_point_goals(num_tasks: int, seed: int, sampler: str = "square") -> np.ndarray:
    """Goals of the Point-Robot family: uniform in ``[-1, 1]^2`` or on the upper unit half circle.

    Args:
        num_tasks: goals to draw.
        seed: generator seed.
        sampler: ``"square"`` or ``"half_circle"``.

    Returns:
        ``[num_tasks, 2]`` float32 goals.
    """
    if sampler not in GOAL_SAMPLERS:
        raise ValueError(f"sample_point_goals: sampler must be one of {GOAL_SAMPLERS}, got {sampler!r}")
    rng = np.random.default_rng(seed)
    if sampler == "square":
        return rng.uniform(-1.0, 1.0, size=(num_tasks, 2)).astype(np.float32)
    angle = rng.uniform(0.0, math.pi, size=num_tasks)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


class PointRobot(gym.Env):
    """A point in the plane moved by bounded velocity commands toward an unseen goal; the task is the goal.

    Dynamics as in T2MIR's Point-Robot (Wu et al., NeurIPS 2025): ``s_0 ~ U[-0.1, 0.1]^2``,
    ``s' = s + 0.1 clip(a, -1, 1)``; the dense reward is ``-||s' - g||``, the sparse one
    ``1[||s' - g|| < goal_radius]``. Truncation after ``episode_length`` steps.

    The task set is a constructor argument (``tasks``: goals ``[n, 2]``, default 50 square goals of seed 0);
    ``reset(options={"task": i})`` picks task ``i``, ``reset(options={"goal": g})`` any goal, and a plain
    ``reset`` draws a task of the set with the environment's seeded generator.

    Args:
        episode_length: steps per episode ``T``.
        tasks: goals ``[n, 2]`` (default: ``sample_point_goals(50, 0, goal_sampler)``).
        goal_sampler: ``"square"`` or ``"half_circle"`` (used only for the default task set).
        reward: ``"dense"`` or ``"sparse"``.
        goal_radius: sparse-reward radius.

    Example:
        >>> env = PointRobot(tasks=[(0.5, 0.5)])
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, info["goal"].tolist()
        ((2,), [0.5, 0.5])
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        episode_length: int = 20,
        tasks: Any = None,
        goal_sampler: str = "square",
        reward: str = "dense",
        goal_radius: float = 0.2,
    ) -> None:
        if not isinstance(episode_length, (int, np.integer)) or episode_length < 1:
            raise ValueError(f"PointRobot: episode_length must be an int >= 1, got {episode_length!r}")
        if reward not in REWARDS:
            raise ValueError(f"PointRobot: reward must be one of {REWARDS}, got {reward!r}")
        self.episode_length = int(episode_length)
        self.reward_type = reward
        self.goal_radius = float(goal_radius)
        self.tasks = sample_point_goals(50, 0, goal_sampler) if tasks is None else self._check_goals(tasks, "tasks")
        # 0.1 per step from |s_0| <= 0.1: the reachable square bounds the observations.
        bound = 0.1 + 0.1 * self.episode_length
        self.observation_space = spaces.Box(-bound, bound, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.goal = self.tasks[0].copy()
        self.pos = np.zeros(2, dtype=np.float32)
        self.t = 0

    @staticmethod
    def _check_goals(goals: Any, name: str) -> np.ndarray:
        arr = np.asarray(goals, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
            raise ValueError(f"PointRobot: {name} must be goals of shape [n, 2], got shape {arr.shape}")
        return arr

    def reward(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Reward of arriving at ``pos`` for ``goal`` (any leading shape)."""
        dist = np.linalg.norm(pos - goal, axis=-1)
        if self.reward_type == "dense":
            return -dist
        return (dist < self.goal_radius).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Start an episode on the task given by ``options`` (``"task"`` index or ``"goal"``)."""
        super().reset(seed=seed)
        options = options or {}
        if "goal" in options:
            self.goal = self._check_goals(np.asarray(options["goal"])[None], "options['goal']")[0]
        elif "task" in options:
            task = int(options["task"])
            if not 0 <= task < len(self.tasks):
                raise ValueError(f"PointRobot: options['task'] must be in [0, {len(self.tasks)}), got {task}")
            self.goal = self.tasks[task].copy()
        else:
            self.goal = self.tasks[int(self.np_random.integers(len(self.tasks)))].copy()
        self.pos = self.np_random.uniform(-0.1, 0.1, size=2).astype(np.float32)
        self.t = 0
        return self.pos.copy(), {"goal": self.goal.copy()}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Move by ``0.1 * clip(action, -1, 1)``."""
        act = np.asarray(action, dtype=np.float32)
        if act.shape != (2,):
            raise ValueError(f"PointRobot: action must have shape (2,), got {act.shape}")
        self.pos = (self.pos + 0.1 * np.clip(act, -1.0, 1.0)).astype(np.float32)
        self.t += 1
        reward = float(self.reward(self.pos, self.goal))
        return self.pos.copy(), reward, False, self.t >= self.episode_length, {"goal": self.goal.copy()}
