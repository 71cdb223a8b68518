"""Knowledge Concentration's soft targets and sigmoid cross-entropy (Gao et al., arXiv 1711.07607, §3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["concentration_loss", "concentration_targets"]


def concentration_targets(
    teacher_probs: Tensor,
    labels: Tensor,
    class_to_vertical: Tensor,
    top_k: int | None = None,
    hard_mix: str | float = "max",
) -> Tensor:
    """Soft targets ``z*``: the selected teacher's top-K sigmoid outputs on its vertical, 0 elsewhere.

    The teacher is the specialist of the label's vertical (Gao et al., 2017, §3.2); ``teacher_probs`` holds its
    sigmoid outputs scattered into the ``N`` classes. Entries outside the label's vertical and outside the top-K
    (``K`` clamped to the vertical's size) are set to 0. The hard label is mixed in (our choice, so the true
    class is never lost when it falls outside the top-K): ``"max"`` gives ``max(z, z*)``, a float ``a`` gives
    ``a * z + (1 - a) * z*``, ``"none"`` keeps ``z*``.

    Args:
        teacher_probs: the selected teacher's probabilities per class.
        labels: ground-truth classes.
        class_to_vertical: vertical of every class.
        top_k: classes kept per sample (``None``: all of the vertical).
        hard_mix: ``"max"``, ``"none"`` or a weight in ``[0, 1]`` of the hard label.

    Returns:
        The targets, in ``[0, 1]``.

    Shapes:
        - teacher_probs, output: ``[B, N]``
        - labels: ``[B]``
        - class_to_vertical: ``[N]``

    Example:
        >>> import torch
        >>> p = torch.tensor([[0.9, 0.5, 0.2, 0.7]])
        >>> concentration_targets(p, torch.tensor([2]), torch.tensor([0, 1, 0, 0]), top_k=2).tolist()
        [[0.8999999761581421, 0.0, 1.0, 0.699999988079071]]
    """
    if teacher_probs.dim() != 2:
        raise ValueError(f"teacher_probs must have shape [B, N], got {tuple(teacher_probs.shape)}")
    batch, num_classes = teacher_probs.shape
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape [B]=[{batch}], got {tuple(labels.shape)}")
    if class_to_vertical.shape != (num_classes,):
        raise ValueError(f"class_to_vertical must have shape [N]=[{num_classes}], got {tuple(class_to_vertical.shape)}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    c2v = class_to_vertical.to(labels.device)
    in_vertical = c2v.unsqueeze(0) == c2v[labels].unsqueeze(1)
    soft = torch.where(in_vertical, teacher_probs, teacher_probs.new_zeros(()))
    if top_k is not None and top_k < num_classes:
        # Out-of-vertical entries are 0, so with K >= N_v the top-K keeps the whole vertical (the clamp).
        keep = torch.zeros_like(in_vertical)
        keep.scatter_(1, soft.topk(top_k, dim=1).indices, True)
        soft = torch.where(keep & in_vertical, soft, soft.new_zeros(()))
    hard = F.one_hot(labels, num_classes).to(soft.dtype)
    if hard_mix == "max":
        return torch.maximum(soft, hard)
    if hard_mix == "none":
        return soft
    if isinstance(hard_mix, bool) or not isinstance(hard_mix, (int, float)) or not 0.0 <= hard_mix <= 1.0:
        raise ValueError(f"hard_mix must be 'max', 'none' or a float in [0, 1], got {hard_mix!r}")
    return hard_mix * hard + (1.0 - hard_mix) * soft


def concentration_loss(logits: Tensor, targets: Tensor, reduction: str = "mean", kind: str = "bce") -> Tensor:
    """Sigmoid cross-entropy summed over classes: ``-sum_j [z_j log s(x_j) + (1 - z_j) log(1 - s(x_j))]``.

    The teacher and student loss of Gao et al. (2017, §3.1-3.2), averaged over the batch (``"mean"``) or per
    sample (``"none"``). ``kind="softmax"`` (our variant for single-label data, where a small student trains
    far faster with a softmax) is the cross-entropy ``-sum_j p_j log softmax(x)_j`` with the targets
    normalised to a distribution ``p = z / sum(z)``.

    Shapes:
        - logits, targets: ``[B, N]``
        - output: ``[]`` (``"mean"``) or ``[B]`` (``"none"``)

    Example:
        >>> import torch
        >>> round(float(concentration_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))), 4)  # 2 log 2
        1.3863
    """
    if logits.shape != targets.shape or logits.dim() != 2:
        raise ValueError(
            f"logits and targets must have the same shape [B, N], got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if kind == "bce":
        per_sample = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none").sum(1)
    elif kind == "softmax":
        p = targets.to(logits.dtype)
        p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
        per_sample = -(p * logits.log_softmax(1)).sum(1)
    else:
        raise ValueError(f"kind must be 'bce' or 'softmax', got {kind!r}")
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
