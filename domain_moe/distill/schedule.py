"""An optional sample-admission curriculum per vertical (classical self-paced learning; not in the KC paper)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pace_quantile", "self_paced_weights"]


def pace_quantile(progress: float, q0: float = 0.5, rho: float = 0.5) -> float:
    """Admitted quantile ``q(t) = min(1, q0 + (1 - q0) * t / rho)`` at training progress ``t`` in ``[0, 1]``.

    With the defaults half of each vertical's samples (the easiest) enter at the start and all of them from
    mid-training on.

    Args:
        progress: ``t = step / total_steps``.
        q0: quantile admitted at ``t = 0`` (in ``(0, 1]``).
        rho: fraction of training after which every sample is admitted (``> 0``).

    Example:
        >>> pace_quantile(0.0), pace_quantile(0.25), pace_quantile(0.9)
        (0.5, 0.75, 1.0)
    """
    if not 0.0 < q0 <= 1.0:
        raise ValueError(f"q0 must be in (0, 1], got {q0!r}")
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho!r}")
    return min(1.0, q0 + (1.0 - q0) * max(float(progress), 0.0) / rho)


def self_paced_weights(losses: Tensor, vertical: Tensor, quantile: float) -> Tensor:
    """0/1 weights: a sample enters if its loss is at most the ``quantile`` of its vertical's losses in the batch.

    Each vertical is paced on its own, so a hard vertical (large losses) is not starved by an easy one.
    Deterministic given the losses; the quantile interpolates linearly (``torch.quantile``).

    Args:
        losses: per-sample losses (detached inside).
        vertical: vertical of every sample.
        quantile: admitted quantile in ``[0, 1]`` (1 admits everything).

    Shapes:
        - losses, vertical, output: ``[B]``

    Example:
        >>> import torch
        >>> self_paced_weights(torch.tensor([1.0, 4.0, 2.0, 3.0, 9.0]), torch.tensor([0, 0, 0, 0, 1]), 0.5).tolist()
        [1.0, 0.0, 1.0, 0.0, 1.0]
    """
    if losses.dim() != 1 or vertical.shape != losses.shape:
        raise ValueError(
            f"losses and vertical must have the same shape [B], got {tuple(losses.shape)} and {tuple(vertical.shape)}"
        )
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")
    values = losses.detach().float()
    if quantile >= 1.0:
        return torch.ones_like(values)
    weights = torch.zeros_like(values)
    for v in torch.unique(vertical).tolist():
        mask = vertical == v
        threshold = torch.quantile(values[mask], quantile)
        weights[mask] = (values[mask] <= threshold).float()
    return weights
