"""Multi-episode context windows cut from learning histories, laid out for the contrastive routing loss."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from domain_moe.rl.features import encode_actions, encode_states, is_discrete
from domain_moe.rl.histories import LearningHistories

__all__ = ["WINDOWS", "ContextSampler"]

#: ``"consecutive"``: K adjacent episodes at a random offset (AD's learning-history order);
#: ``"sorted"``: K random episodes ordered by return (T2MIR-AD's ``sort_data``).
WINDOWS = ("consecutive", "sorted")


class ContextSampler:
    """Draws batches of ``B/2`` tasks x 2 independent context views from learning histories.

    Rows ``b`` and ``b + B/2`` are two views (different windows) of the same task, which is the batch
    layout of T2MIR's contrastive task-routing loss (Wu et al., 2025). Tasks in a half are distinct when the
    pool is large enough, so in-batch negatives are never the same task.

    Args:
        histories: the source episodes.
        context_episodes: episodes per view ``K``.
        window: one of :data:`WINDOWS`.
        task_ids: the task of each history row (``[n]`` ints), for several independent histories per task;
            default: every row is its own task. A batch then holds distinct tasks, each view drawn from a
            random history of its task (the two views of a task may come from different histories), and
            ``task`` is this id.
    """

    def __init__(
        self,
        histories: LearningHistories,
        context_episodes: int,
        window: str = "consecutive",
        task_ids: np.ndarray | None = None,
    ) -> None:
        if window not in WINDOWS:
            raise ValueError(f"ContextSampler: window must be one of {WINDOWS}, got {window!r}")
        if not 1 <= context_episodes <= histories.num_episodes:
            raise ValueError(
                f"ContextSampler: context_episodes must be in [1, {histories.num_episodes}], got {context_episodes}"
            )
        self.histories, self.context_episodes, self.window = histories, context_episodes, window
        env_id, kwargs = histories.env_id, histories.env_kwargs
        self.states = encode_states(env_id, histories.observations, kwargs)
        self.actions = encode_actions(env_id, histories.actions)
        self.targets = histories.actions
        self.discrete = is_discrete(env_id)
        self.episode_returns = histories.returns()
        rows = np.arange(histories.num_tasks)
        self.task_ids = rows if task_ids is None else np.asarray(task_ids, dtype=np.int64)
        if self.task_ids.shape != rows.shape:
            raise ValueError(
                f"ContextSampler: task_ids must have one entry per history row ({len(rows)}), "
                f"got shape {self.task_ids.shape}"
            )
        self.unique_tasks = np.unique(self.task_ids)
        self.rows_of = {int(t): np.flatnonzero(self.task_ids == t) for t in self.unique_tasks}

    def episodes(self, task: int, rng: np.random.Generator) -> np.ndarray:
        """Episode indices of one view of ``task``."""
        k, num = self.context_episodes, self.histories.num_episodes
        if self.window == "consecutive":
            start = int(rng.integers(num - k + 1))
            return np.arange(start, start + k)
        chosen = rng.choice(num, size=k, replace=False)
        return chosen[np.argsort(self.episode_returns[task, chosen], kind="stable")]

    def sample(self, tasks_per_batch: int, rng: np.random.Generator) -> dict[str, Tensor]:
        """One batch of ``2 * tasks_per_batch`` views.

        Returns:
            ``states [B, N, S]``, ``actions [B, N, A]`` (inputs), ``targets`` (``[B, N]`` int64 or
            ``[B, N, A]``), ``rewards [B, N]``, ``timesteps [B, N]``, ``task [B]`` with ``N = K T``.
        """
        num_tasks = len(self.unique_tasks)
        tasks = self.unique_tasks[rng.choice(num_tasks, size=tasks_per_batch, replace=tasks_per_batch > num_tasks)]
        tasks = np.concatenate([tasks, tasks])
        if len(self.unique_tasks) == len(self.task_ids):  # one history per task: no draw (keeps the stream)
            rows = np.array([self.rows_of[int(t)][0] for t in tasks])
        else:
            rows = np.array([rng.choice(self.rows_of[int(t)]) for t in tasks])
        eps = np.stack([self.episodes(int(r), rng) for r in rows])
        batch = self.gather(rows, eps)
        batch["task"] = torch.from_numpy(tasks.astype(np.int64))
        return batch

    def gather(self, tasks: np.ndarray, episodes: np.ndarray) -> dict[str, Tensor]:
        """The views of given tasks and episode indices ``[B, K]`` as model inputs."""
        horizon = self.histories.episode_length
        rows = tasks[:, None]

        def flat(arr: np.ndarray) -> np.ndarray:
            picked = arr[rows, episodes]
            return picked.reshape(len(tasks), -1, *picked.shape[3:])

        steps = episodes.shape[1] * horizon
        return {
            "states": torch.from_numpy(flat(self.states)),
            "actions": torch.from_numpy(flat(self.actions)),
            "targets": torch.from_numpy(flat(self.targets)),
            "rewards": torch.from_numpy(flat(self.histories.rewards).astype(np.float32)),
            "timesteps": torch.arange(horizon).repeat(episodes.shape[1]).expand(len(tasks), steps).clone(),
            "task": torch.from_numpy(tasks.astype(np.int64)),
        }
