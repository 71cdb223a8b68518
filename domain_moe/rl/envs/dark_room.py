"""Dark Room: a goal-reaching grid task family (Laskin et al., 2022; T2MIR, Wu et al., 2025)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["DARK_ROOM_MOVES", "DarkRoom"]

#: Row/column displacement of the five actions: stay, up, right, down, left.
DARK_ROOM_MOVES = np.array([[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1]], dtype=np.int64)


class DarkRoom(gym.Env):
    """A ``G x G`` grid with an invisible goal cell; the task is the goal.

    The agent starts in the centre cell (or ``start``), sees only its own cell index and earns 1 on every
    step that ends on the goal (staying on it keeps paying), with no termination and truncation after
    ``episode_length`` steps. This is the Dark Room of Algorithm Distillation (Laskin et al., ICLR 2023)
    used by T2MIR (Wu et al., "Mixture-of-Experts Meets In-Context Reinforcement Learning", NeurIPS 2025),
    shrunk so that CPU runs stay short.

    The task set is a constructor argument (``tasks``: goal cells as ``(row, col)``) so any split can be
    trained on and any other evaluated; ``reset(options={"task": i})`` picks task ``i`` of the set,
    ``reset(options={"goal": (row, col)})`` any cell, and a plain ``reset`` draws a task of the set with the
    environment's seeded generator.

    Args:
        grid_size: ``G``.
        episode_length: steps per episode ``T``.
        tasks: goal cells ``[n, 2]`` (default: every cell).
        start: start cell ``(row, col)`` (default: the centre).

    Example:
        >>> env = DarkRoom(grid_size=5, episode_length=10, tasks=[(0, 0)])
        >>> obs, info = env.reset(seed=0)
        >>> int(obs), info["goal"].tolist()
        (12, [0, 0])
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        grid_size: int = 7,
        episode_length: int = 15,
        tasks: Any = None,
        start: tuple[int, int] | None = None,
    ) -> None:
        if not isinstance(grid_size, (int, np.integer)) or grid_size < 2:
            raise ValueError(f"DarkRoom: grid_size must be an int >= 2, got {grid_size!r}")
        if not isinstance(episode_length, (int, np.integer)) or episode_length < 1:
            raise ValueError(f"DarkRoom: episode_length must be an int >= 1, got {episode_length!r}")
        self.grid_size = int(grid_size)
        self.episode_length = int(episode_length)
        self.tasks = self.all_cells(self.grid_size) if tasks is None else self._check_cells(tasks, "tasks")
        centre = self.grid_size // 2
        self.start = np.array([centre, centre] if start is None else start, dtype=np.int64)
        self._check_cells(self.start[None], "start")
        self.observation_space = spaces.Discrete(self.grid_size * self.grid_size)
        self.action_space = spaces.Discrete(len(DARK_ROOM_MOVES))
        self.goal = self.tasks[0].copy()
        self.pos = self.start.copy()
        self.t = 0

    @staticmethod
    def all_cells(grid_size: int) -> np.ndarray:
        """Every cell ``[G*G, 2]`` in row-major order."""
        rows, cols = np.divmod(np.arange(grid_size * grid_size), grid_size)
        return np.stack([rows, cols], axis=1).astype(np.int64)

    def _check_cells(self, cells: Any, name: str) -> np.ndarray:
        arr = np.asarray(cells, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
            raise ValueError(f"DarkRoom: {name} must be (row, col) cells of shape [n, 2], got shape {arr.shape}")
        if arr.min() < 0 or arr.max() >= self.grid_size:
            raise ValueError(
                f"DarkRoom: {name} must lie in [0, {self.grid_size}), got values in [{arr.min()}, {arr.max()}]"
            )
        return arr

    def encode(self, cells: np.ndarray) -> np.ndarray:
        """Cell ``(row, col)`` to observation index ``row * G + col``."""
        return cells[..., 0] * self.grid_size + cells[..., 1]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Start an episode on the task given by ``options`` (``"task"`` index or ``"goal"`` cell)."""
        super().reset(seed=seed)
        options = options or {}
        if "goal" in options:
            self.goal = self._check_cells(np.asarray(options["goal"])[None], "options['goal']")[0]
        elif "task" in options:
            task = int(options["task"])
            if not 0 <= task < len(self.tasks):
                raise ValueError(f"DarkRoom: options['task'] must be in [0, {len(self.tasks)}), got {task}")
            self.goal = self.tasks[task].copy()
        else:
            self.goal = self.tasks[int(self.np_random.integers(len(self.tasks)))].copy()
        self.pos = self.start.copy()
        self.t = 0
        return np.int64(self.encode(self.pos)), {"goal": self.goal.copy()}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Move (clipped at the walls); reward 1 when the new cell is the goal."""
        if not self.action_space.contains(action):
            raise ValueError(f"DarkRoom: action must be an int in [0, {self.action_space.n}), got {action!r}")
        self.pos = np.clip(self.pos + DARK_ROOM_MOVES[int(action)], 0, self.grid_size - 1)
        self.t += 1
        reward = float(np.array_equal(self.pos, self.goal))
        return np.int64(self.encode(self.pos)), reward, False, self.t >= self.episode_length, {"goal": self.goal.copy()}
