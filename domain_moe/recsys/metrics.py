"""Ranking metrics of multi-task recommendation: AUC (torchmetrics), user-grouped GAUC, MSE."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["GroupAUC", "auc", "gauc"]


def _rank_auc_terms(scores: Tensor, labels: Tensor, groups: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per group: (rank sum of positives, positives, negatives, rows), ranks within the group with ties averaged."""
    scores = scores.double().flatten()
    labels = labels.flatten() > 0.5
    groups = groups.long().flatten()
    _, g = torch.unique(groups, return_inverse=True)
    num_groups = int(g.max()) + 1 if g.numel() else 0
    # Sort by group, then by score: a stable sort on the score first, then a stable sort on the group.
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(g[order], stable=True)]
    g_s, s_s, y_s = g[order], scores[order], labels[order]
    n = g_s.numel()
    pos = torch.arange(n, dtype=torch.float64)
    size = torch.bincount(g_s, minlength=num_groups)
    start = torch.cumsum(size, 0) - size
    # Runs of equal (group, score) are ties: each member gets the run's mean position.
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = (g_s[1:] != g_s[:-1]) | (s_s[1:] != s_s[:-1])
    run = torch.cumsum(new_run.long(), 0) - 1
    run_len = torch.bincount(run).double()
    run_first = pos[new_run]
    mean_pos = run_first[run] + (run_len[run] - 1) / 2
    rank = mean_pos - start[g_s].double() + 1  # 1-based rank inside the group
    rank_pos = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, g_s, torch.where(y_s, rank, 0.0))
    n_pos = torch.bincount(g_s, weights=y_s.double(), minlength=num_groups)
    return rank_pos, n_pos, size.double() - n_pos, size.double()


def gauc(scores: Tensor, labels: Tensor, groups: Tensor) -> Tensor:
    """Group AUC: ``sum_u w_u AUC_u / sum_u w_u`` over groups (users) that have both classes.

    ``AUC_u`` is the Mann-Whitney statistic with ties counted one half, ``w_u`` the user's number of rows
    (impressions); users with a single class are skipped (their AUC is undefined), as in HoME and DIN.
    Computed for all users at once with one sort.

    Args:
        scores: predicted scores (any monotone transform of the probability).
        labels: 0/1 labels.
        groups: group (user) id per row.

    Returns:
        0-d float64 tensor; NaN when no user has both classes.

    Shapes:
        - scores, labels, groups: ``[N]``

    Example:
        >>> scores = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5])
        >>> float(gauc(scores, torch.tensor([0, 1, 0, 1, 1]), torch.tensor([0, 0, 1, 1, 2])))
        0.5
    """
    if not (scores.shape == labels.shape == groups.shape):
        raise ValueError(
            f"scores, labels and groups must have the same shape, got {tuple(scores.shape)}, "
            f"{tuple(labels.shape)} and {tuple(groups.shape)}"
        )
    rank_pos, n_pos, n_neg, size = _rank_auc_terms(scores, labels, groups)
    valid = (n_pos > 0) & (n_neg > 0)
    if not bool(valid.any()):
        return torch.tensor(float("nan"), dtype=torch.float64)
    auc_u = (rank_pos[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2) / (n_pos[valid] * n_neg[valid])
    weights = size[valid]
    return (auc_u * weights).sum() / weights.sum()


def auc(scores: Tensor, labels: Tensor) -> Tensor:
    """ROC AUC (Mann-Whitney, ties one half): the one-group case of :func:`gauc`; NaN with a single class.

    Example:
        >>> float(auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])))
        0.75
    """
    return gauc(scores, labels, torch.zeros_like(labels, dtype=torch.long))


class GroupAUC(Metric):
    """Torchmetrics wrapper of :func:`gauc` that accumulates scores, labels and groups over batches.

    Args:
        **kwargs: passed to ``torchmetrics.Metric`` (``sync_on_compute``, ...).

    Shapes:
        - update(scores, labels, groups): ``[B]`` each
        - compute(): 0-d

    Example:
        >>> metric = GroupAUC()
        >>> metric.update(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]), torch.tensor([7, 7]))
        >>> float(metric.compute())
        1.0
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, labels: Tensor, groups: Tensor) -> None:
        """Add a batch."""
        if not (scores.shape == labels.shape == groups.shape):
            raise ValueError(
                f"GroupAUC: scores, labels and groups must have the same shape, got {tuple(scores.shape)}, "
                f"{tuple(labels.shape)} and {tuple(groups.shape)}"
            )
        self.scores.append(scores.detach().flatten())
        self.labels.append(labels.detach().flatten())
        self.groups.append(groups.detach().flatten())

    def compute(self) -> Tensor:
        """GAUC of everything seen since the last reset."""

        def cat(x: Any) -> Tensor:
            return torch.cat(x) if isinstance(x, list) else x

        if isinstance(self.scores, list) and not self.scores:
            return torch.tensor(float("nan"))
        return gauc(cat(self.scores).cpu(), cat(self.labels).cpu(), cat(self.groups).cpu()).float()
