"""In-context evaluation: roll a frozen model on unseen tasks for several episodes, vectorised over tasks."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from domain_moe.rl.envs import ENV_IDS, make_env
from domain_moe.rl.features import encode_actions, encode_states, is_discrete

__all__ = ["in_context_returns"]


@torch.no_grad()
def in_context_returns(
    model: nn.Module,
    env_id: str,
    goals: Any,
    env_kwargs: dict[str, Any] | None = None,
    num_episodes: int = 8,
    context_episodes: int = 4,
    sample: bool = True,
    sort_context: bool = False,
    rollouts_per_task: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """Per-episode returns of ``model`` acting in context on ``goals``, with no parameter update.

    All ``len(goals) * rollouts_per_task`` environments run in one ``gymnasium.vector.SyncVectorEnv``.
    The context at step ``t`` of episode ``e`` is the model's own last ``context_episodes - 1`` episodes
    (ordered by return when ``sort_context``, as T2MIR-AD's evaluation does; chronological otherwise) plus
    the current episode so far, so it never exceeds the training length ``K T`` (Wu et al., 2025, re-feed
    ``K`` past episodes plus the current one; we keep the lengths equal). Actions are sampled from the
    head (categorical or Gaussian) or taken at its mode.

    Args:
        model: an :class:`~domain_moe.rl.models.ADTransformer` (put in eval mode here, restored after).
        env_id: the task family.
        goals: ``[n, 2]`` tasks.
        env_kwargs: environment options.
        num_episodes: in-context episodes.
        context_episodes: ``K`` of training.
        sample: sample actions (else the mode).
        sort_context: order the past episodes by return.
        rollouts_per_task: independent runs per goal.
        seed: seeds the environments and the action sampling.

    Returns:
        ``[n * rollouts_per_task, num_episodes]`` returns (row ``i`` is goal ``i % n``).
    """
    if env_id not in ENV_IDS:
        raise ValueError(f"in_context_returns: env_id must be one of {sorted(ENV_IDS)}, got {env_id!r}")
    env_kwargs = dict(env_kwargs or {})
    goals = np.asarray(goals)
    all_goals = np.concatenate([goals] * rollouts_per_task)
    n = len(all_goals)
    vec = gym.vector.SyncVectorEnv([lambda g=g: make_env(env_id, tasks=g[None], **env_kwargs) for g in all_goals])
    horizon = vec.envs[0].unwrapped.episode_length
    discrete = is_discrete(env_id)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    past: list[dict[str, np.ndarray]] = []
    returns = np.zeros((n, num_episodes), dtype=np.float64)
    try:
        for ep in range(num_episodes):
            obs, _ = vec.reset(seed=[seed * 100_003 + ep * 1009 + i for i in range(n)])
            cur: dict[str, list[np.ndarray]] = {"obs": [], "act": [], "rew": []}
            for _ in range(horizon):
                cur["obs"].append(np.asarray(obs))
                keep = past[-(context_episodes - 1) :] if context_episodes > 1 else []
                if sort_context:
                    keep = sorted(keep, key=lambda e: float(e["rew"].sum(1).mean()))
                obs_seq = [e["obs"] for e in keep] + [np.stack(cur["obs"], 1)]
                act_seq = [e["act"] for e in keep] + [np.stack([*cur["act"], _blank(cur["obs"][0], discrete)], 1)]
                rew_seq = [e["rew"] for e in keep] + [np.stack([*cur["rew"], np.zeros(n)], 1)]
                obs_all = np.concatenate(obs_seq, 1)
                steps = obs_all.shape[1]
                out = (
                    model(
                        torch.from_numpy(encode_states(env_id, obs_all, env_kwargs)).to(device),
                        torch.from_numpy(encode_actions(env_id, np.concatenate(act_seq, 1))).to(device),
                        torch.from_numpy(np.concatenate(rew_seq, 1).astype(np.float32)).to(device),
                        (torch.arange(steps) % horizon).expand(n, steps).to(device),
                    )[:, -1]
                    .float()
                    .cpu()
                )
                act = _act(out, discrete, sample, gen)
                obs, rew, _, _, _ = vec.step(act)
                cur["act"].append(act)
                cur["rew"].append(np.asarray(rew, dtype=np.float64))
            episode = {"obs": np.stack(cur["obs"], 1), "act": np.stack(cur["act"], 1), "rew": np.stack(cur["rew"], 1)}
            returns[:, ep] = episode["rew"].sum(1)
            past.append(episode)
    finally:
        vec.close()
        model.train(was_training)
    return returns


def _blank(obs: np.ndarray, discrete: bool) -> np.ndarray:
    """A placeholder for the not-yet-taken action (causal masking keeps it out of the prediction)."""
    return np.zeros(len(obs), dtype=np.int64) if discrete else np.zeros((len(obs), 2), dtype=np.float32)


def _act(out: torch.Tensor, discrete: bool, sample: bool, gen: torch.Generator) -> np.ndarray:
    if discrete:
        if sample:
            return torch.multinomial(out.softmax(-1), 1, generator=gen).squeeze(-1).numpy()
        return out.argmax(-1).numpy()
    mean, log_std = out.chunk(2, -1)
    if sample:
        mean = mean + log_std.exp() * torch.randn(mean.shape, generator=gen)
    return mean.clamp(-1.0, 1.0).numpy().astype(np.float32)
