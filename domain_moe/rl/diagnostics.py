"""Routing health of a trained T2MIR model: token-expert usage, task-routing consistency, contrastive accuracy."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from domain_moe.rl.contexts import ContextSampler
from domain_moe.rl.models.t2mir_layer import T2MIRLayer, contrastive_routing_accuracy

__all__ = ["normalized_mutual_information", "routing_health"]


def normalized_mutual_information(labels: np.ndarray, clusters: np.ndarray) -> float:
    """``I(X; Y) / sqrt(H(X) H(Y))`` of two discrete labelings (0 when either is constant).

    Example:
        >>> normalized_mutual_information(np.array([0, 0, 1, 1]), np.array([5, 5, 7, 7]))
        1.0
    """
    _, x = np.unique(labels, return_inverse=True)
    _, y = np.unique(clusters, return_inverse=True)
    joint = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(joint, (x, y), 1.0)
    joint /= joint.sum()
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(px, py)[nz])).sum())
    hx = float(-(px[px > 0] * np.log(px[px > 0])).sum())
    hy = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    return 0.0 if hx <= 0 or hy <= 0 else mi / math.sqrt(hx * hy)


@torch.no_grad()
def routing_health(
    model: nn.Module, sampler: ContextSampler, views_per_task: int = 8, seed: int = 0
) -> dict[str, float]:
    """Routing statistics on context views of the sampler's tasks (use held-out tasks' histories).

    * ``token_entropy_ratio``: entropy of the token-MoE load over all tokens divided by ``log E`` (1 is
      perfectly balanced; the health bar is 0.8);
    * ``task_nmi``: NMI between the task and the top-1 task expert of each view's last token (whose
      causal-mean routing input summarises the whole context);
    * ``contrastive_acc``: contrastive top-1 accuracy of pairs of views (chance ``1 / num_tasks``).

    Missing branches give no entry.
    """
    layers = [m for m in model.modules() if isinstance(m, T2MIRLayer)]
    if not layers:
        return {}
    layer = layers[-1]
    rng = np.random.default_rng(seed)
    num_tasks = sampler.histories.num_tasks
    was_training = model.training
    model.eval()
    token_counts = np.zeros(layer.num_experts)
    tasks_seen, experts_seen = [], []
    acc = []
    try:
        for _ in range(views_per_task // 2):
            batch = sampler.sample(num_tasks, rng)
            model(batch["states"], batch["actions"], batch["rewards"], batch["timesteps"])
            routing = layer.last_routing
            if "token_idx" in routing:
                token_counts += np.bincount(routing["token_idx"].reshape(-1).numpy(), minlength=layer.num_experts)
            if "task_idx" in routing:
                experts_seen.append(routing["task_idx"][:, -1, 0].numpy())
                tasks_seen.append(batch["task"].numpy())
                acc.append(float(contrastive_routing_accuracy(routing["q"], routing["k"], layer.contrastive_matrix)))
    finally:
        model.train(was_training)
    out: dict[str, float] = {}
    if token_counts.sum() > 0:
        p = token_counts / token_counts.sum()
        out["token_entropy_ratio"] = float(-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(layer.num_experts))
    if experts_seen:
        out["task_nmi"] = normalized_mutual_information(np.concatenate(tasks_seen), np.concatenate(experts_seen))
        out["contrastive_acc"] = float(np.mean(acc))
    return out
