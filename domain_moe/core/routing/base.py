"""The router interface and the helpers every router shares."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core.types import RoutingDecision

__all__ = ["DROP_POLICIES", "Router", "apply_capacity", "check_logits", "count_assignments"]

DROP_POLICIES = ("position", "score", "random")


def count_assignments(topk_idx: Tensor, num_experts: int) -> Tensor:
    """Assignments per expert, ignoring ``-1`` slots (a fixed-size ``scatter_add_``, no host sync).

    Shapes:
        - topk_idx: ``[T, K]``
        - output: ``[E]``
    """
    flat = topk_idx.reshape(-1).long()
    key = torch.where(flat < 0, torch.full_like(flat, num_experts), flat)
    counts = torch.zeros(num_experts + 1, dtype=torch.long, device=flat.device)
    counts.scatter_add_(0, key, torch.ones_like(key))
    return counts[:num_experts]


def check_logits(logits: Tensor, name: str = "router logits") -> None:
    """Raise on NaN logits: a NaN would silently route every token to expert 0.

    On CPU the check raises ``ValueError``; on CUDA it is an asynchronous device assert (no host sync);
    under ``torch.compile`` it is skipped.
    """
    if torch.compiler.is_compiling():
        return
    bad = torch.isnan(logits).any()
    if logits.device.type == "cpu":
        if bool(bad):
            raise ValueError(f"{name} contain NaN; check the input of the MoE layer for NaN/inf values")
    else:
        torch._assert_async(~bad, f"{name} contain NaN")


def apply_capacity(
    topk_idx: Tensor,
    topk_w: Tensor,
    capacity: int,
    num_experts: int,
    *,
    policy: str = "position",
    scores: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Drop assignments past ``capacity`` rows per expert (they become ``-1`` with weight 0).

    Priority decides who is dropped: ``"position"`` keeps first choices before second choices and, within
    a choice rank, earlier tokens (GShard); ``"score"`` keeps the highest router weights (Batch Prioritized
    Routing, V-MoE); ``"random"`` keeps a uniformly random subset (Random Token Selection, DeepSpeed).

    Args:
        topk_idx: experts per slot.
        topk_w: weights per slot.
        capacity: rows per expert ``C``.
        num_experts: ``E``.
        policy: one of :data:`DROP_POLICIES`.
        scores: priorities for ``"score"`` (defaults to ``topk_w``).
        generator: random generator for ``"random"``.

    Returns:
        ``(topk_idx, topk_w)`` with over-capacity slots cleared.

    Shapes:
        - topk_idx, topk_w, scores: ``[T, K]``
    """
    if policy not in DROP_POLICIES:
        raise ValueError(f"drop_policy must be one of {DROP_POLICIES}, got {policy!r}")
    num_tokens, top_k = topk_idx.shape
    # Slot-major order (slot 0 of every token first), so first choices beat second choices.
    idx_km = topk_idx.T.reshape(-1).long()
    key = torch.where(idx_km < 0, torch.full_like(idx_km, num_experts), idx_km)
    if policy == "position":
        order = torch.argsort(key, stable=True)
    else:
        if policy == "score":
            prio = (topk_w if scores is None else scores).detach().T.reshape(-1).float()
            pre = torch.argsort(-prio, stable=True)
        else:
            pre = torch.randperm(key.numel(), device=key.device, generator=generator)
        order = pre[torch.argsort(key[pre], stable=True)]
    counts = torch.zeros(num_experts + 1, dtype=torch.long, device=key.device)
    counts.scatter_add_(0, key, torch.ones_like(key))
    offsets = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(key.numel(), device=key.device) - offsets[key[order]]
    rank = torch.empty_like(rank_sorted).scatter_(0, order, rank_sorted)
    keep = (rank < capacity).view(top_k, num_tokens).T
    new_idx = torch.where(keep, topk_idx, torch.full_like(topk_idx, -1))
    new_w = torch.where(keep, topk_w, topk_w.new_zeros(()))
    return new_idx, new_w


class Router(nn.Module, ABC):
    """Base class of routers: maps tokens ``x[T, D]`` to a :class:`RoutingDecision`.

    Subclasses implement :meth:`forward` and, when they have auxiliary losses, :meth:`aux_losses`.
    The router linear runs in fp32 (the input is cast up) and the weights it returns are cast back to
    the input dtype by the layer, so downstream expert GEMMs keep the model's precision.

    Args:
        d_model: token width ``D``.
        num_experts: routed experts ``E``.

    Shapes:
        - x: ``[T, D]``
    """

    #: Backend the router would choose under ``"auto"`` (``"bmm"`` for uniform groups), or ``None``.
    preferred_backend: str | None = None
    #: Whether the router needs the sequence structure ``[B, L, D]`` of its input (Soft MoE).
    needs_sequences: bool = False

    def __init__(self, d_model: int, num_experts: int) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be a positive int, got {num_experts!r}")
        self.d_model = d_model
        self.num_experts = num_experts

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error for input the router cannot route.

        Raises:
            TypeError: non-floating-point input.
            ValueError: wrong rank, wrong width or no tokens.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__}: x must be floating point, got dtype {x.dtype}")
        if x.dim() != 2:
            raise ValueError(f"{type(self).__name__}: x must have shape [T, D], got {tuple(x.shape)}")
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"{type(self).__name__}: x must have width d_model={self.d_model}, got shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: x has no tokens (shape {tuple(x.shape)})")

    @staticmethod
    def fp32_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """``x @ weight.T + bias`` computed in fp32 (router precision matters more than its FLOPs)."""
        return F.linear(x.float(), weight.float(), None if bias is None else bias.float())

    def gate_logits(self, x: Tensor, *weights: Tensor) -> Tensor:
        """Validate ``x`` and return the fp32 gate logits ``x @ [W_1; W_2; ...]^T``, raising on NaN.

        The one entry point of every learned gate, so input checks, router precision and the NaN guard
        cannot drift apart between routers.

        Args:
            x: tokens.
            *weights: gate weights, their outputs concatenated in order.

        Shapes:
            - x: ``[T, D]``
            - weights: ``[E_i, D]``
            - output: ``[T, sum_i E_i]``
        """
        self.check_input(x)
        parts = [self.fp32_linear(x, w) for w in weights]
        logits = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        check_logits(logits)
        return logits

    @abstractmethod
    def forward(self, x: Tensor) -> RoutingDecision:
        """Route tokens.

        Args:
            x: tokens.

        Shapes:
            - x: ``[T, D]``
        """

    def aux_losses(self, decision: RoutingDecision) -> dict[str, Tensor]:
        """Weighted auxiliary losses of a decision this router made (none by default)."""
        return {}

    def capacity_for(self, num_tokens: int, top_k: int, capacity_factor: float) -> int:
        """Rows per expert ``C = ceil(capacity_factor * T * K / E)``, at least 1 and at most ``T``."""
        cap = math.ceil(capacity_factor * num_tokens * top_k / self.num_experts)
        return max(1, min(cap, num_tokens))

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"d_model={self.d_model}, num_experts={self.num_experts}"
