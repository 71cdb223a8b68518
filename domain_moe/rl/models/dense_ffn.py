"""The dense feed-forward block of the AD baselines, and the width that matches T2MIR's active parameters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DenseFFN", "matched_dense_hidden"]


def matched_dense_hidden(d_model: int, d_hidden: int, top_k: int) -> int:
    """Hidden width of a dense ``d -> d_ff -> d`` FFN with the active weights of a T2MIR layer.

    Each T2MIR branch runs ``top_k`` experts ``d -> d_hidden -> d/2`` per token, so the layer's active
    weights are ``2 * top_k * (d * d_hidden + d_hidden * d / 2) = 3 * top_k * d * d_hidden``; a dense FFN has
    ``2 * d * d_ff``. Equal at ``d_ff = 3 * top_k * d_hidden / 2`` (T2MIR, Wu et al., 2025, sizes its dense
    layer this way: ``6d`` for ``d_hidden = 2d`` and ``top_k = 2``).

    Example:
        >>> matched_dense_hidden(32, 64, 2)
        192
    """
    if (3 * top_k * d_hidden) % 2:
        raise ValueError(
            f"matched_dense_hidden: 3 * top_k * d_hidden must be even, got top_k={top_k}, d_hidden={d_hidden}"
        )
    del d_model  # the matched width does not depend on it; kept for a uniform signature
    return 3 * top_k * d_hidden // 2


class DenseFFN(nn.Module):
    """Position-wise feed-forward block ``y = W2 act(W1 x + b1) + b2``.

    The FFN of the Algorithm Distillation transformer (Laskin et al., 2023) and of the dense baselines of
    T2MIR (Wu et al., 2025): ``AD-dense`` (``d_hidden = 4 d``) and ``AD-dense-matched`` (the width of
    :func:`matched_dense_hidden`).

    Args:
        d_model: input width ``D``.
        d_hidden: hidden width ``H``.
        d_out: output width (default ``D``).
        dropout: dropout after the activation.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[..., D]``
        - output: ``[..., D_out]``

    Example:
        >>> ffn = DenseFFN(8, 32)
        >>> ffn(torch.randn(2, 3, 8)).shape
        torch.Size([2, 3, 8])
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        d_out: int | None = None,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(d_model, d_hidden, **dd)
        self.fc2 = nn.Linear(d_hidden, d_model if d_out is None else d_out, **dd)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        """``nn.Linear`` initialisation of both layers."""
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        return self.fc2(self.dropout(F.gelu(self.fc1(x))))
