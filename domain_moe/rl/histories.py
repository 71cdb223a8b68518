"""Learning histories: per-task episode sequences that improve over time, the training data of AD.

Algorithm Distillation (Laskin et al., ICLR 2023) trains on the learning histories of a source RL
algorithm; T2MIR (Wu et al., NeurIPS 2025) uses the same backbone. Two kinds of source are generated here,
vectorised over tasks with numpy (seconds for hundreds of tasks):

* ``"noise"`` (AD-ε, "In-Context RL from Noise Distillation", Zisman et al., 2023): the task's expert with
  ε-greedy noise, ε annealed linearly from 1 over the first ``anneal_fraction`` of the episodes.
* a real learner per family: tabular Q-learning with optimistic initial values (``"q-learning"``) and
  posterior sampling over the goal cell (``"psrl"``, Thompson sampling with known dynamics, Osband et al.,
  2013: the DPT paper's reference learner on Dark Room) for Dark Room, and REINFORCE with a
  linear-Gaussian policy and a per-step baseline for Point-Robot (``"reinforce"``).

Everything is drawn from ``numpy.random.default_rng(seed)``; the seed, the source and the environment
options are stored with the arrays, so a ``.npz`` file says how to regenerate itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domain_moe.rl.envs import DARK_ROOM_MOVES, ENV_IDS, DarkRoom, PointRobot

__all__ = ["SOURCES", "LearningHistories", "generate_histories"]

#: Sources available per environment id.
SOURCES = {
    "domain_moe/DarkRoom-v0": ("noise", "q-learning", "psrl"),
    "domain_moe/PointRobot-v0": ("noise", "reinforce"),
}


@dataclass
class LearningHistories:
    """Episodes of a learner on a set of tasks, in the order it produced them.

    Attributes:
        env_id: the task family.
        source: how the histories were produced (``"noise"``, ``"q-learning"``, ``"reinforce"``).
        seed: the generator seed.
        goals: the task of each row.
        observations: what the agent saw at each step (before acting).
        actions: the action taken (an index for Dark Room, a vector for Point-Robot).
        rewards: the reward received.
        env_kwargs: the environment's constructor options (JSON-serialisable).

    Shapes:
        - goals: ``[n, 2]``
        - observations: ``[n, episodes, T]`` (Dark Room cells) or ``[n, episodes, T, 2]``
        - actions: ``[n, episodes, T]`` (Dark Room) or ``[n, episodes, T, 2]``
        - rewards: ``[n, episodes, T]``
    """

    env_id: str
    source: str
    seed: int
    goals: np.ndarray
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    env_kwargs: dict[str, Any]

    @property
    def num_tasks(self) -> int:
        """Tasks ``n``."""
        return int(self.goals.shape[0])

    @property
    def num_episodes(self) -> int:
        """Episodes per task."""
        return int(self.rewards.shape[1])

    @property
    def episode_length(self) -> int:
        """Steps per episode ``T``."""
        return int(self.rewards.shape[2])

    def returns(self) -> np.ndarray:
        """Return of every episode ``[n, episodes]``."""
        return self.rewards.sum(-1)

    def save(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` holding the arrays and the generation metadata."""
        path = Path(path)
        np.savez_compressed(
            path,
            goals=self.goals,
            observations=self.observations,
            actions=self.actions,
            rewards=self.rewards,
            meta=np.array(
                json.dumps(
                    {"env_id": self.env_id, "source": self.source, "seed": self.seed, "env_kwargs": self.env_kwargs}
                )
            ),
        )
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path) -> LearningHistories:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"LearningHistories.load: no file at {path}; write one with generate_histories(...).save()"
            )
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in ("goals", "observations", "actions", "rewards")}
        return cls(meta["env_id"], meta["source"], int(meta["seed"]), env_kwargs=meta["env_kwargs"], **arrays)


def generate_histories(
    env_id: str,
    goals: Any,
    source: str = "noise",
    num_episodes: int = 12,
    seed: int = 0,
    anneal_fraction: float = 0.8,
    env_kwargs: dict[str, Any] | None = None,
) -> LearningHistories:
    """Run a learner on every goal and record its episodes.

    Args:
        env_id: ``"domain_moe/DarkRoom-v0"`` or ``"domain_moe/PointRobot-v0"``.
        goals: the tasks ``[n, 2]``.
        source: one of :data:`SOURCES` for the environment.
        num_episodes: episodes per task.
        seed: generator seed; the same seed gives the same arrays.
        anneal_fraction: AD-ε only: fraction of the episodes over which ε falls from 1 to 0.
        env_kwargs: environment options (``grid_size``, ``episode_length``, ``reward``, ...).

    Returns:
        The histories.
    """
    if env_id not in ENV_IDS:
        raise ValueError(f"generate_histories: env_id must be one of {sorted(ENV_IDS)}, got {env_id!r}")
    if source not in SOURCES[env_id]:
        raise ValueError(f"generate_histories: source for {env_id} must be one of {SOURCES[env_id]}, got {source!r}")
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"generate_histories: num_episodes must be a positive int, got {num_episodes!r}")
    env_kwargs = dict(env_kwargs or {})
    rng = np.random.default_rng(seed)
    if env_id == "domain_moe/DarkRoom-v0":
        env = DarkRoom(tasks=goals, **env_kwargs)
        if source == "noise":
            arrays = _dark_room_noise(env, num_episodes, anneal_fraction, rng)
        elif source == "psrl":
            arrays = _dark_room_rollout(env, _PosteriorSampler(env, rng), num_episodes)
        else:
            arrays = _dark_room_q_learning(env, num_episodes, rng)
    else:
        env = PointRobot(tasks=goals, **env_kwargs)
        if source == "noise":
            arrays = _point_noise(env, num_episodes, anneal_fraction, rng)
        else:
            arrays = _point_reinforce(env, num_episodes, rng)
    return LearningHistories(env_id, source, int(seed), env.tasks.copy(), *arrays, env_kwargs=env_kwargs)


def _epsilons(num_episodes: int, anneal_fraction: float) -> np.ndarray:
    span = max(anneal_fraction * (num_episodes - 1), 1e-9)
    return np.clip(1.0 - np.arange(num_episodes) / span, 0.0, 1.0)


def dark_room_expert(pos: np.ndarray, goal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An optimal Dark Room action per row; the tie between a vertical and a horizontal move is random.

    Randomising the tie lets both decisions appear in the data (a fixed "vertical first" rule leaves the
    horizontal one rarely exercised).
    """
    diff = goal - pos
    vertical = np.where(diff[:, 0] < 0, 1, 3)
    horizontal = np.where(diff[:, 1] > 0, 2, 4)
    pick_vertical = rng.random(len(pos)) < 0.5
    act = np.where((diff[:, 0] != 0) & ((diff[:, 1] == 0) | pick_vertical), vertical, horizontal)
    return np.where((diff == 0).all(1), 0, act)


def _dark_room_rollout(env: DarkRoom, policy: Any, num_episodes: int) -> tuple[np.ndarray, ...]:
    n, horizon = len(env.tasks), env.episode_length
    obs = np.zeros((n, num_episodes, horizon), np.int64)
    acts = np.zeros((n, num_episodes, horizon), np.int64)
    rews = np.zeros((n, num_episodes, horizon), np.float32)
    for ep in range(num_episodes):
        pos = np.repeat(env.start[None], n, 0)
        for t in range(horizon):
            obs[:, ep, t] = env.encode(pos)
            act = policy(ep, t, pos)
            new = np.clip(pos + DARK_ROOM_MOVES[act], 0, env.grid_size - 1)
            acts[:, ep, t] = act
            rews[:, ep, t] = (new == env.tasks).all(1)
            if hasattr(policy, "update"):
                policy.update(ep, t, pos, act, rews[:, ep, t], new)
            pos = new
    return obs, acts, rews


def _dark_room_noise(env: DarkRoom, num_episodes: int, anneal_fraction: float, rng: np.random.Generator):
    eps = _epsilons(num_episodes, anneal_fraction)
    n = len(env.tasks)

    def policy(ep: int, t: int, pos: np.ndarray) -> np.ndarray:
        random = rng.integers(len(DARK_ROOM_MOVES), size=n)
        return np.where(rng.random(n) < eps[ep], random, dark_room_expert(pos, env.tasks, rng))

    return _dark_room_rollout(env, policy, num_episodes)


class _QLearner:
    """Tabular Q-learning with optimistic initial values, one table per task (Watkins & Dayan, 1992)."""

    def __init__(
        self, env: DarkRoom, rng: np.random.Generator, lr: float = 0.5, gamma: float = 0.9, epsilon: float = 0.05
    ) -> None:
        self.env, self.rng, self.lr, self.gamma, self.epsilon = env, rng, lr, gamma, epsilon
        # Optimism (the largest discounted return) drives systematic exploration of untried actions.
        self.q = np.full((len(env.tasks), env.grid_size**2, len(DARK_ROOM_MOVES)), 1.0 / (1.0 - gamma))
        self.rows = np.arange(len(env.tasks))

    def __call__(self, ep: int, t: int, pos: np.ndarray) -> np.ndarray:
        q = self.q[self.rows, self.env.encode(pos)]
        greedy = (q + 1e-6 * self.rng.random(q.shape)).argmax(1)
        random = self.rng.integers(q.shape[1], size=len(q))
        return np.where(self.rng.random(len(q)) < self.epsilon, random, greedy)

    def update(self, ep: int, t: int, pos: np.ndarray, act: np.ndarray, rew: np.ndarray, new: np.ndarray) -> None:
        s, s2 = self.env.encode(pos), self.env.encode(new)
        target = rew + self.gamma * self.q[self.rows, s2].max(1)
        self.q[self.rows, s, act] += self.lr * (target - self.q[self.rows, s, act])


class _PosteriorSampler:
    """Posterior sampling over the goal cell (Thompson sampling with known dynamics; Osband et al., 2013).

    The posterior is uniform over the cells not yet ruled out (arrived at without reward). The agent walks
    to a sampled cell and samples again when it is ruled out; once a reward is seen the posterior is the
    goal and the agent goes there and stays. ``epsilon`` random actions widen the states in the data.
    """

    def __init__(self, env: DarkRoom, rng: np.random.Generator, epsilon: float = 0.1) -> None:
        n, cells = len(env.tasks), env.grid_size**2
        self.env, self.rng, self.epsilon = env, rng, epsilon
        self.possible = np.ones((n, cells), dtype=bool)
        self.found = np.full(n, -1)
        self.target = np.full(n, -1)
        self.rows = np.arange(n)

    def _resample(self, mask: np.ndarray) -> None:
        for i in np.flatnonzero(mask):
            if self.found[i] >= 0:
                self.target[i] = self.found[i]
            else:
                self.target[i] = self.rng.choice(np.flatnonzero(self.possible[i]))

    def __call__(self, ep: int, t: int, pos: np.ndarray) -> np.ndarray:
        here = self.env.encode(pos)
        # A new episode restarts the walk to a fresh sample; within one the target stands until ruled out.
        stale = (self.target < 0) | (t == 0) | ~self.possible[self.rows, np.maximum(self.target, 0)]
        self._resample(stale | ((here == self.target) & (self.found < 0)))
        target = np.stack(np.divmod(self.target, self.env.grid_size), 1)
        act = dark_room_expert(pos, target, self.rng)
        random = self.rng.integers(len(DARK_ROOM_MOVES), size=len(pos))
        return np.where(self.rng.random(len(pos)) < self.epsilon, random, act)

    def update(self, ep: int, t: int, pos: np.ndarray, act: np.ndarray, rew: np.ndarray, new: np.ndarray) -> None:
        cell = self.env.encode(new)
        hit = rew > 0
        self.found[hit] = cell[hit]
        self.possible[self.rows[~hit], cell[~hit]] = False
        self.possible[hit] = False
        self.possible[self.rows[hit], cell[hit]] = True


def _dark_room_q_learning(env: DarkRoom, num_episodes: int, rng: np.random.Generator):
    return _dark_room_rollout(env, _QLearner(env, rng), num_episodes)


def _point_rollout(env: PointRobot, policy: Any, num_episodes: int, rng: np.random.Generator):
    n, horizon = len(env.tasks), env.episode_length
    obs = np.zeros((n, num_episodes, horizon, 2), np.float32)
    acts = np.zeros((n, num_episodes, horizon, 2), np.float32)
    rews = np.zeros((n, num_episodes, horizon), np.float32)
    for ep in range(num_episodes):
        pos = rng.uniform(-0.1, 0.1, size=(n, 2)).astype(np.float32)
        for t in range(horizon):
            obs[:, ep, t] = pos
            act = np.clip(policy(ep, t, pos), -1.0, 1.0).astype(np.float32)
            pos = (pos + 0.1 * act).astype(np.float32)
            acts[:, ep, t] = act
            rews[:, ep, t] = env.reward(pos, env.tasks)
        if hasattr(policy, "update"):
            policy.update(obs[:, ep], acts[:, ep], rews[:, ep])
    return obs, acts, rews


def _point_noise(env: PointRobot, num_episodes: int, anneal_fraction: float, rng: np.random.Generator):
    eps = _epsilons(num_episodes, anneal_fraction)
    n = len(env.tasks)

    def policy(ep: int, t: int, pos: np.ndarray) -> np.ndarray:
        expert = np.clip((env.tasks - pos) / 0.1, -1.0, 1.0)
        random = rng.uniform(-1.0, 1.0, size=(n, 2))
        return np.where((rng.random(n) < eps[ep])[:, None], random, expert)

    return _point_rollout(env, policy, num_episodes, rng)


class _Reinforce:
    """REINFORCE (Williams, 1992) with a per-task linear-Gaussian policy ``a ~ N(W [s, 1], sigma^2)``.

    The baseline is a running mean of the return-to-go per time step; sigma shrinks geometrically so the
    later episodes exploit what the earlier ones found.
    """

    def __init__(
        self, env: PointRobot, rng: np.random.Generator, lr: float = 0.1, sigma: float = 0.6, sigma_decay: float = 0.95
    ) -> None:
        n = len(env.tasks)
        self.rng, self.lr, self.sigma, self.sigma_decay = rng, lr, sigma, sigma_decay
        self.w = np.zeros((n, 2, 3))
        self.baseline = np.zeros((n, env.episode_length))
        self.mean = np.zeros((n, 2))

    def __call__(self, ep: int, t: int, pos: np.ndarray) -> np.ndarray:
        feat = np.concatenate([pos, np.ones((len(pos), 1))], 1)
        self.mean = np.clip(np.einsum("nij,nj->ni", self.w, feat), -1.0, 1.0)
        return self.mean + self.sigma * self.rng.standard_normal(self.mean.shape)

    def update(self, obs: np.ndarray, acts: np.ndarray, rews: np.ndarray) -> None:
        to_go = np.flip(np.cumsum(np.flip(rews, 1), 1), 1)
        adv = to_go - self.baseline
        self.baseline += 0.5 * (to_go - self.baseline)
        # Per-task advantage scaling keeps the step size independent of the distance to the goal.
        adv = adv / (np.abs(adv).mean(1, keepdims=True) + 1e-6)
        feat = np.concatenate([obs, np.ones((*obs.shape[:2], 1))], 2)
        mean = np.clip(np.einsum("nij,ntj->nti", self.w, feat), -1.0, 1.0)
        # (a - mean) / sigma is the score times sigma^2 / sigma: a step size that does not explode as sigma decays.
        score = (acts - mean) / self.sigma
        grad = np.einsum("nt,nti,ntj->nij", adv, score, feat) / obs.shape[1]
        self.w += self.lr * np.clip(grad, -10.0, 10.0)
        self.sigma = max(self.sigma * self.sigma_decay, 0.05)


def _point_reinforce(env: PointRobot, num_episodes: int, rng: np.random.Generator):
    return _point_rollout(env, _Reinforce(env, rng), num_episodes, rng)
