"""MoVA's loss-driven routing annotations: an expert is useful for a sample when it lowers that sample's loss."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["routing_targets"]


def routing_targets(losses: Tensor, delta: float = 0.05, k_max: int = 2) -> Tensor:
    """Multi-hot routing labels ``r_ij = 1[L_ij < L_i0 - delta]``, at most ``k_max`` per sample ranked by gain.

    MoVA (Zong et al., NeurIPS 2024, §3.2) compares, per sample, the loss of a model on the base encoder alone
    (``L_i0``) with that of a model on expert ``j`` alone (``L_ij``); the margin ``delta`` (ours) keeps noise
    between two near-chance probes from counting as a gain. Losses should be cross-fitted (scored by probes
    that did not train on the sample).

    Args:
        losses: per-sample losses, column 0 the base, column ``j + 1`` expert ``j``.
        delta: required loss gain.
        k_max: most experts per sample.

    Returns:
        Bool labels ``[B, N]``.

    Shapes:
        - losses: ``[B, N + 1]``

    Example:
        >>> routing_targets(torch.tensor([[1.0, 0.5, 0.9, 1.2], [0.2, 0.3, 0.1, 0.0]]), delta=0.05, k_max=1)
        tensor([[ True, False, False],
                [False, False,  True]])
    """
    if losses.dim() != 2 or losses.shape[1] < 2:
        raise ValueError(f"losses must be [B, N + 1] with N >= 1, got shape {tuple(losses.shape)}")
    if k_max < 0:
        raise ValueError(f"k_max must be >= 0, got {k_max}")
    gain = losses[:, :1] - losses[:, 1:]
    useful = gain > delta
    n = gain.shape[1]
    if k_max >= n:
        return useful
    top = gain.masked_fill(~useful, float("-inf")).topk(k_max, dim=1).indices if k_max else None
    keep = torch.zeros_like(useful)
    if top is not None:
        keep.scatter_(1, top, True)
    return keep & useful
