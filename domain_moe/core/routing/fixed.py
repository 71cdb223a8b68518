"""Fixed routing: the expert of every token is given (by a label, a task id, a vertical), not learned."""

from __future__ import annotations

import torch
from torch import Tensor

from domain_moe.core.routing.base import count_assignments
from domain_moe.core.types import RoutingDecision

__all__ = ["fixed_decision"]


def fixed_decision(expert_idx: Tensor, num_experts: int, weight: Tensor | None = None) -> RoutingDecision:
    """A :class:`RoutingDecision` from given expert indices (weight 1 unless ``weight`` is given).

    Label-based routing, as the teacher selection of Knowledge Concentration (Gao et al., "Knowledge
    Concentration: Learning 100K Object Classifiers in a Single CNN", arXiv 1711.07607, 2017): the
    specialist of the ground-truth label's vertical, and only it, runs on a sample. Passing every expert
    per token (``expert_idx = arange(E).repeat(T, 1)``) gives dense, unweighted routing. ``-1`` means no
    expert. The decision has no logits, no probabilities and no auxiliary losses.

    Args:
        expert_idx: expert per token (``[T]``) or per slot (``[T, K]``), integer, ``-1`` for none.
        num_experts: ``E``.
        weight: combine weight per slot (same shape as ``expert_idx``), or ``None`` for 1.

    Returns:
        The decision (``topk_w`` is exactly 0 where ``topk_idx == -1``).

    Raises:
        TypeError: ``expert_idx`` is not an integer tensor.
        ValueError: wrong rank, an index outside ``[-1, E)`` or a ``weight`` of another shape.

    Shapes:
        - expert_idx, weight: ``[T]`` or ``[T, K]``
        - decision.topk_idx, decision.topk_w: ``[T, K]`` (``K = 1`` for a ``[T]`` input)

    Example:
        >>> import torch
        >>> d = fixed_decision(torch.tensor([2, 0, 2, -1]), num_experts=3)
        >>> d.topk_idx.squeeze(1).tolist(), d.counts.tolist(), d.topk_w.squeeze(1).tolist()
        ([2, 0, 2, -1], [1, 0, 2], [1.0, 1.0, 1.0, 0.0])
    """
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
        raise ValueError(f"num_experts must be a positive int, got {num_experts!r}")
    if not isinstance(expert_idx, Tensor) or expert_idx.is_floating_point() or expert_idx.is_complex():
        got = expert_idx.dtype if isinstance(expert_idx, Tensor) else type(expert_idx).__name__
        raise TypeError(f"expert_idx must be an integer tensor, got {got}")
    if expert_idx.dim() not in (1, 2):
        raise ValueError(f"expert_idx must have shape [T] or [T, K], got {tuple(expert_idx.shape)}")
    idx = expert_idx.long()
    if idx.dim() == 1:
        idx = idx.unsqueeze(1)
    if idx.numel() and not torch.compiler.is_compiling():
        low, high = int(idx.min()), int(idx.max())
        if low < -1 or high >= num_experts:
            raise ValueError(f"expert_idx must lie in [-1, {num_experts}), got values in [{low}, {high}]")
    if weight is None:
        w = torch.ones(idx.shape, dtype=torch.float32, device=idx.device)
    else:
        if not isinstance(weight, Tensor) or weight.shape != expert_idx.shape:
            got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise ValueError(f"weight must have expert_idx's shape {tuple(expert_idx.shape)}, got {got}")
        w = weight.reshape(idx.shape)
    w = torch.where(idx >= 0, w, w.new_zeros(()))
    return RoutingDecision(topk_idx=idx, topk_w=w, counts=count_assignments(idx, num_experts), num_experts=num_experts)
