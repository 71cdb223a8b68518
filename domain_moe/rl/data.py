"""LightningDataModule of multi-episode context windows cut from learning histories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from domain_moe.rl.contexts import ContextSampler
from domain_moe.rl.envs import ENV_IDS
from domain_moe.rl.features import action_dim, is_discrete, state_dim
from domain_moe.rl.histories import LearningHistories, generate_histories
from domain_moe.rl.tasksets import split_tasks

__all__ = ["ContextBatches", "ICRLDataModule"]


class ContextBatches(IterableDataset):
    """``num_batches`` batches of paired context views per epoch, seeded by ``(seed, epoch)``.

    Batches come out whole (``DataLoader(batch_size=None)``), so no shuffling breaks the view pairing.
    """

    def __init__(self, sampler: ContextSampler, tasks_per_batch: int, num_batches: int, seed: int) -> None:
        self.sampler, self.tasks_per_batch, self.num_batches, self.seed = sampler, tasks_per_batch, num_batches, seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(self.num_batches):
            yield self.sampler.sample(self.tasks_per_batch, rng)


class ICRLDataModule(L.LightningDataModule):
    """Learning histories of a task family's training tasks, served as context windows; held-out goals for test.

    ``setup()`` splits the family's tasks (:func:`~domain_moe.rl.tasksets.split_tasks`), then loads the
    histories from ``history_path`` when that ``.npz`` exists or generates them
    (:func:`~domain_moe.rl.histories.generate_histories`, saved to ``history_path`` when given). The training
    loader yields ``2 * tasks_per_batch`` context views of ``context_episodes`` episodes per batch (two views
    per task, the layout of T2MIR's contrastive routing loss). The test loader yields the evaluation goals
    (``eval_tasks`` if given, else the held-out split) for :class:`~domain_moe.rl.tasks.InContextRLTask`'s
    in-context evaluation.

    After ``setup()``: ``state_dim``, ``action_dim``, ``discrete_actions``, ``max_episode_steps``,
    ``max_context_steps``, ``train_goals``, ``test_goals``, ``histories``.

    Args:
        env_id: ``"domain_moe/DarkRoom-v0"`` or ``"domain_moe/PointRobot-v0"``.
        env_kwargs: environment options (``grid_size``, ``episode_length``, ``reward``, ``goal_sampler``).
        num_train_tasks: training goals.
        num_test_tasks: held-out goals.
        task_seed: seed of the split.
        source: history source (``"noise"`` or the family's learner, see ``histories.SOURCES``).
        num_episodes: episodes per training task.
        histories_per_task: independent learning histories per training goal (more histories of the same
            goals: more varied contexts without more tasks; the two views of a task may come from different
            histories).
        history_seed: seed of the histories.
        history_path: ``.npz`` to load (or to write after generating).
        context_episodes: episodes per context view ``K``.
        window: ``"consecutive"`` or ``"sorted"`` (see ``contexts.WINDOWS``).
        tasks_per_batch: distinct tasks per batch (``B / 2``).
        batches_per_epoch: training batches per epoch.
        eval_tasks: goals for ``test`` (``[n, 2]``), overriding the held-out split.
        seed: seed of the batch sampling.
    """

    def __init__(
        self,
        env_id: str = "domain_moe/DarkRoom-v0",
        env_kwargs: dict[str, Any] | None = None,
        num_train_tasks: int = 39,
        num_test_tasks: int = 10,
        task_seed: int = 0,
        source: str = "noise",
        num_episodes: int = 12,
        histories_per_task: int = 1,
        history_seed: int = 0,
        history_path: str | None = None,
        context_episodes: int = 4,
        window: str = "consecutive",
        tasks_per_batch: int = 16,
        batches_per_epoch: int = 100,
        eval_tasks: list[list[float]] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if env_id not in ENV_IDS:
            raise ValueError(f"ICRLDataModule: env_id must be one of {sorted(ENV_IDS)}, got {env_id!r}")
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.num_train_tasks, self.num_test_tasks, self.task_seed = num_train_tasks, num_test_tasks, task_seed
        self.source, self.num_episodes, self.history_seed = source, num_episodes, history_seed
        if not isinstance(histories_per_task, int) or histories_per_task < 1:
            raise ValueError(f"ICRLDataModule: histories_per_task must be an int >= 1, got {histories_per_task!r}")
        self.histories_per_task = histories_per_task
        self.history_path = history_path
        self.context_episodes, self.window = context_episodes, window
        self.tasks_per_batch, self.batches_per_epoch = tasks_per_batch, batches_per_epoch
        self.eval_tasks = None if eval_tasks is None else np.asarray(eval_tasks)
        self.seed = seed
        # Known before setup: the CLI links these into the model at instantiation.
        self.state_dim = state_dim(env_id, self.env_kwargs)
        self.action_dim = action_dim(env_id)
        self.discrete_actions = is_discrete(env_id)
        default_length = 15 if self.discrete_actions else 20
        self.max_episode_steps = int(self.env_kwargs.get("episode_length", default_length))
        self.max_context_steps = context_episodes * self.max_episode_steps
        self.histories: LearningHistories | None = None
        self.sampler: ContextSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        """Split the tasks and load or generate the histories."""
        if self.histories is not None:
            return
        self.train_goals, self.test_goals = split_tasks(
            self.env_id, self.num_train_tasks, self.num_test_tasks, self.task_seed, self.env_kwargs
        )
        path = None if self.history_path is None else Path(self.history_path)
        if path is not None and path.is_file():
            histories = LearningHistories.load(path)
            rows = self.num_train_tasks * self.histories_per_task
            if histories.env_id != self.env_id or histories.num_tasks != rows:
                raise ValueError(
                    f"ICRLDataModule: {path} holds {histories.num_tasks} histories of {histories.env_id}, expected "
                    f"{rows} of {self.env_id}"
                )
            self.train_goals = histories.goals[:: self.histories_per_task]
        else:
            histories = generate_histories(
                self.env_id,
                np.repeat(self.train_goals, self.histories_per_task, axis=0),
                self.source,
                self.num_episodes,
                self.history_seed,
                env_kwargs=self.env_kwargs,
            )
            if path is not None:
                histories.save(path)
        if histories.episode_length != self.max_episode_steps:
            raise ValueError(
                f"ICRLDataModule: histories have episodes of {histories.episode_length} steps, expected "
                f"{self.max_episode_steps}"
            )
        self.histories = histories
        task_ids = np.repeat(np.arange(self.num_train_tasks), self.histories_per_task)
        self.sampler = ContextSampler(histories, self.context_episodes, self.window, task_ids=task_ids)

    @property
    def goals_for_test(self) -> np.ndarray:
        """The goals ``test`` evaluates on."""
        return self.test_goals if self.eval_tasks is None else self.eval_tasks

    def train_dataloader(self) -> DataLoader:
        """Paired context views; ``batch_size=None`` keeps each batch whole."""
        assert self.sampler is not None, "call setup() first"
        return DataLoader(
            ContextBatches(self.sampler, self.tasks_per_batch, self.batches_per_epoch, self.seed), batch_size=None
        )

    def test_dataloader(self) -> DataLoader:
        """One item: the evaluation goals."""
        goals = torch.as_tensor(np.asarray(self.goals_for_test, dtype=np.float32))
        return DataLoader([{"goals": goals}], batch_size=None)
