"""Switch Transformer (top-1) and GShard (top-2) routing with expert capacity."""

from __future__ import annotations

import torch

from domain_moe.core.routing.top_k import TopKRouter

__all__ = ["SwitchRouter"]


class SwitchRouter(TopKRouter):
    """Softmax top-1 routing with a capacity limit (Switch) or top-2 (GShard).

    Fedus et al., "Switch Transformers: Scaling to Trillion Parameter Models with Simple and
    Efficient Sparsity" (JMLR 2022); Lepikhin et al., "GShard" (ICLR 2021) for ``top_k=2``. The
    combine weight is the probability of the chosen expert (top-1) or the chosen probabilities
    renormalised to sum to 1 (top-2). Each expert takes at most ``C = ceil(capacity_factor * T * K /
    E)`` rows; the others are dropped (``-1``, the token passes through the residual only) by
    ``drop_policy``. The balance loss ``alpha * E * sum_i f_i P_i`` uses the loads *before*
    capacity, as in the paper; the router z-loss (ST-MoE) is off by default.

    A thin preset of :class:`TopKRouter`; every option not listed here keeps its ``TopKRouter``
    meaning.

    Args:
        d_model: token width ``D``.
        num_experts: routed experts ``E``.
        top_k: 1 (Switch) or 2 (GShard); any ``1 <= K <= E`` is accepted.
        capacity_factor: capacity factor ``cf`` (``None`` = dropless).
        drop_policy: ``"position"``, ``"score"`` or ``"random"`` (see
            :func:`~domain_moe.core.routing.base.apply_capacity`).
        jitter_eps: multiplicative input jitter in training (Switch used 1e-2 in some runs;
            0 = off).
        balance_coef: weight ``alpha`` of the balance loss.
        z_coef: weight of the router z-loss (ST-MoE uses 1e-3; 0 = off).
        device: parameter device.
        dtype: ignored for the gate (kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]``
        - decision.topk_idx, decision.topk_w: ``[T, K]``

    Example:
        >>> import torch
        >>> router = SwitchRouter(d_model=16, num_experts=4)
        >>> decision = router(torch.randn(8, 16))
        >>> decision.capacity, bool((decision.counts <= decision.capacity).all())
        (3, True)
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        top_k: int = 1,
        *,
        capacity_factor: float | None = 1.25,
        drop_policy: str = "position",
        jitter_eps: float = 0.0,
        balance_coef: float = 1e-2,
        z_coef: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            d_model,
            num_experts,
            top_k,
            score_fn="softmax",
            renorm=True,
            jitter_eps=jitter_eps,
            capacity_factor=capacity_factor,
            drop_policy=drop_policy,
            balance_coef=balance_coef,
            z_coef=z_coef,
            device=device,
            dtype=dtype,
        )
