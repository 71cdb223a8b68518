"""Momentum contrast: an EMA copy of a module and a FIFO queue of its keys (MoCo, He et al., CVPR 2020)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MomentumEncoder"]


class MomentumEncoder(nn.Module):
    """An exponential moving average of ``module`` that never receives gradients, plus a key queue.

    ``theta_m <- m * theta_m + (1 - m) * theta`` after each optimizer step (:meth:`update`); keys of the
    momentum branch enter a FIFO queue of ``queue_size`` rows (:meth:`enqueue`) that serves as extra
    negatives. Astrea (Yang et al., arXiv 2503.09445) uses momentum contrast for long-range dependency
    modelling; here it covers only the trainable fusion modules, never the frozen experts.

    Args:
        module: the online module to track (copied at construction).
        d_key: key width.
        momentum: ``m`` in ``[0, 1)``.
        queue_size: queue rows.

    Shapes:
        - keys: ``[B, d_key]``; queue: ``[queue_size, d_key]``

    Example:
        >>> online = nn.Linear(4, 4)
        >>> ema = MomentumEncoder(online, d_key=4, momentum=0.9, queue_size=8)
        >>> all(not p.requires_grad for p in ema.ema.parameters())
        True
    """

    def __init__(self, module: nn.Module, d_key: int, momentum: float = 0.999, queue_size: int = 4096) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.momentum = momentum
        self.queue_size = queue_size
        self.ema = copy.deepcopy(module)
        self.ema.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, d_key), dim=-1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> MomentumEncoder:
        """Keep the EMA copy in eval mode (no dropout noise in the keys)."""
        super().train(mode)
        self.ema.eval()
        return self

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One EMA step towards ``module``'s current parameters (and copy its buffers)."""
        for p_m, p in zip(self.ema.parameters(), module.parameters(), strict=True):
            p_m.mul_(self.momentum).add_(p.detach(), alpha=1.0 - self.momentum)
        for b_m, b in zip(self.ema.buffers(), module.buffers(), strict=True):
            b_m.copy_(b)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` into the queue, overwriting the oldest rows (FIFO)."""
        keys = F.normalize(keys.detach().float(), dim=-1)
        n = keys.shape[0]
        if n >= self.queue_size:
            self.queue.copy_(keys[-self.queue_size :])
            self.pointer.zero_()
        else:
            idx = (self.pointer + torch.arange(n, device=keys.device)) % self.queue_size
            self.queue[idx] = keys
            self.pointer.copy_((self.pointer + n) % self.queue_size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.queue_size))

    def negatives(self) -> Tensor | None:
        """The filled part of the queue (``None`` before the first enqueue)."""
        n = int(self.filled)
        if n == 0:
            return None
        return self.queue if n == self.queue_size else self.queue[:n]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the EMA copy without gradients."""
        with torch.no_grad():
            return self.ema(*args, **kwargs)
