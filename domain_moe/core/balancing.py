"""Auxiliary-loss-free load balancing (DeepSeek-V3) and load statistics."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["BiasBalancer", "all_reduce_counts", "load_statistics"]


def all_reduce_counts(counts: Tensor) -> Tensor:
    """Sum per-expert counts over the default process group (a no-op without ``torch.distributed``).

    Balancing on the global batch rather than each rank's share matters when per-rank batches are small.

    Shapes:
        - counts: ``[E]``
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        counts = counts.clone()
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts


def load_statistics(counts: Tensor) -> dict[str, Tensor]:
    """Summary statistics of a per-expert load vector.

    Returns:
        ``max_over_mean`` (1 = perfectly balanced), ``min_over_mean``, ``cv`` (coefficient of variation)
        and ``unused`` (fraction of experts with zero load).

    Shapes:
        - counts: ``[E]``
    """
    c = counts.detach().float()
    mean = c.mean().clamp_min(1e-12)
    return {
        "max_over_mean": c.max() / mean,
        "min_over_mean": c.min() / mean,
        "cv": c.std(unbiased=False) / mean if c.numel() > 1 else c.new_zeros(()),
        "unused": (c == 0).float().mean(),
    }


class BiasBalancer:
    """The update rule of auxiliary-loss-free balancing (Wang et al., 2024, arXiv 2408.15664).

    Routers built with ``bias_balancing=True`` select experts on ``score + b`` and accumulate the loads
    they select in a ``load_accum`` buffer. After each optimizer step, :meth:`step` moves each bias by
    ``rate * sign(mean_load - load_i)`` (under-loaded experts become more attractive), optionally
    centred so the biases keep zero mean, and clears the accumulator. Loads are summed over the DDP
    group first. The rule is applied once per optimizer step, not per micro-batch.

    Args:
        rate: update speed ``gamma`` (1e-3 in DeepSeek-V3).
        centered: subtract the mean update so the biases do not drift together.

    Example:
        >>> from domain_moe.core import TopKRouter
        >>> router = TopKRouter(8, 4, top_k=1, bias_balancing=True)
        >>> _ = router(torch.randn(16, 8))
        >>> BiasBalancer(rate=0.01).step(router)
        True
    """

    def __init__(self, rate: float = 1e-3, centered: bool = True) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self.rate = rate
        self.centered = centered

    def update(self, bias: Tensor, counts: Tensor) -> None:
        """Move ``bias`` in place from the loads ``counts``.

        Shapes:
            - bias, counts: ``[E]``
        """
        load = counts.float()
        delta = self.rate * torch.sign(load.mean() - load)
        if self.centered:
            delta = delta - delta.mean()
        bias.add_(delta.to(bias.dtype))

    @torch.no_grad()
    def step(self, module: nn.Module) -> bool:
        """Update every balancing router inside ``module`` and clear its accumulated loads.

        Returns:
            Whether any router was updated (routers that saw no tokens since the last step are skipped).
        """
        updated = False
        for router in module.modules():
            bias = getattr(router, "selection_bias", None)
            accum = getattr(router, "load_accum", None)
            if not isinstance(bias, Tensor) or not isinstance(accum, Tensor):
                continue
            counts = all_reduce_counts(accum)
            if int(counts.sum()) == 0:
                continue
            self.update(bias, counts)
            accum.zero_()
            updated = True
        return updated
