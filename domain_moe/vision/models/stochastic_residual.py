"""Per-expert stochastic residual connections: Bernoulli keep masks in training, the expectation in eval."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["StochasticExpertDrop"]


class StochasticExpertDrop(nn.Module):
    """Keep each expert's residual branch with probability ``p`` per sample (DropPath applied per expert).

    Astrea (Yang et al., arXiv 2503.09445) adds "probabilistically activated stochastic residual
    connections"; our reconstruction: ``X + sum_k (m_k / p) w_k A_k``, ``m_k ~ Bernoulli(p)``, with the
    identity path never dropped. In eval the scale ``m_k / p`` is replaced by its expectation 1, so the module
    is the identity (all kept, scale 1). ``p`` follows a linear schedule from ``p_start`` to ``p_end`` as
    :meth:`set_progress` moves from 0 to 1. A dropped expert's branch is not computed.

    Args:
        num_experts: experts ``K``.
        p_start: keep probability at the start of training.
        p_end: keep probability at the end.

    Shapes:
        - output: ``keep [B, K]`` (bool) and ``scale [B, K]`` (``m / p``)

    Example:
        >>> drop = StochasticExpertDrop(4).eval()
        >>> keep, scale = drop(3)
        >>> bool(keep.all()), bool((scale == 1).all())
        (True, True)
    """

    def __init__(self, num_experts: int, p_start: float = 0.5, p_end: float = 0.9) -> None:
        super().__init__()
        for name, p in (("p_start", p_start), ("p_end", p_end)):
            if not 0.0 < p <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {p!r}")
        self.num_experts = num_experts
        self.p_start = p_start
        self.p_end = p_end
        self.register_buffer("progress", torch.zeros(()))

    @property
    def p(self) -> float:
        """The current keep probability."""
        return self.p_start + (self.p_end - self.p_start) * float(self.progress)

    def set_progress(self, fraction: float) -> None:
        """Move along the schedule (``0`` = start, ``1`` = end; clamped)."""
        self.progress.fill_(min(max(float(fraction), 0.0), 1.0))

    def forward(self, batch_size: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Keep masks and residual scales for a batch; see the class docstring."""
        if not self.training:
            keep = torch.ones(batch_size, self.num_experts, dtype=torch.bool, device=device)
            return keep, keep.float()
        p = self.p
        keep = torch.rand(batch_size, self.num_experts, device=device) < p
        return keep, keep.float() / p

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"num_experts={self.num_experts}, p_start={self.p_start}, p_end={self.p_end}"
