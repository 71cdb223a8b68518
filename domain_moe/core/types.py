"""Data passed between routers, the dispatcher and experts.

A router decides, the dispatcher moves rows, experts compute. The three are joined by the small
dataclasses in this file, so each part can be swapped, tested, logged and plotted alone.

Shape glossary (used in every ``Shapes:`` section of the package):

* ``T`` tokens (rows of the flattened input), ``D`` model width, ``H`` expert hidden width,
  ``D_out`` expert output width (``D`` unless stated otherwise).
* ``E`` routed experts, ``K`` slots per token (the top-k, or the most experts a variable-k router can
  give one token), ``A = T * K`` assignment slots, ``C`` capacity (rows per expert).
* ``B`` batch, ``L`` sequence length, ``N`` graph nodes, ``S`` slots per expert (Soft MoE).

Index tensors are ``int64`` (what ``torch.gather``/``index_select`` take without a copy); ``-1`` in an
index means "no expert" (an unused top-p slot, a capacity drop, a null expert).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["DispatchPlan", "MoEAux", "RoutingDecision"]


@dataclass(frozen=True)
class RoutingDecision:
    """What a router decided for one batch of tokens.

    Token-choice routers fill ``topk_idx``/``topk_w``; expert choice fills them too (slot ``e`` of a token
    holds expert ``e`` when that expert picked the token, else ``-1``), so one plan builder serves all.
    Soft MoE instead sets ``dispatch_weights``/``combine_weights`` and leaves ``topk_idx`` empty.

    Attributes:
        topk_idx: chosen expert per slot, ``-1`` for no expert.
        topk_w: combine weight per slot, exactly ``0`` where ``topk_idx == -1``; differentiable
            w.r.t. the router parameters.
        counts: assignments per expert after capacity (integer, no gradient).
        num_experts: ``E``.
        logits: router logits in fp32 (for z-loss and diagnostics), or ``None``.
        probs: router probabilities in fp32 (for balance losses), or ``None``.
        dispatch_weights: Soft MoE only, softmax over tokens of each slot.
        combine_weights: Soft MoE only, softmax over slots of each token.
        capacity: a host-side bound on the rows any expert receives, when the router enforces one
            (Switch capacity, expert choice); the ``bmm`` backend sizes its buffer with it.
        extras: router-specific tensors the router's own losses need (noise std, thresholds, ...).

    Shapes:
        - topk_idx, topk_w: ``[T, K]``
        - counts: ``[E]``
        - logits, probs: ``[T, E]`` (``[T, E + m]`` for AdaMoE's ``m`` null experts)
        - dispatch_weights, combine_weights: ``[B, L, E * S]``
    """

    topk_idx: Tensor
    topk_w: Tensor
    counts: Tensor
    num_experts: int
    logits: Tensor | None = None
    probs: Tensor | None = None
    dispatch_weights: Tensor | None = None
    combine_weights: Tensor | None = None
    capacity: int | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def is_soft(self) -> bool:
        """Whether this is a Soft MoE decision (dense slot mixing instead of sparse dispatch)."""
        return self.dispatch_weights is not None

    @property
    def top_k(self) -> int:
        """Slots per token ``K``."""
        return int(self.topk_idx.shape[-1])

    @property
    def num_tokens(self) -> int:
        """Tokens ``T``."""
        return int(self.topk_idx.shape[0])


@dataclass(frozen=True)
class DispatchPlan:
    """Assignments sorted by expert, built on the device without a host sync.

    Grouped rows ``r`` in ``[offsets[e], offsets[e + 1])`` belong to expert ``e``; rows from
    ``offsets[E]`` up to ``A`` are the trash bucket (dropped or null assignments) and are masked by
    every consumer. Buffers are sized by the host bound ``A = T * K``: indices are padded, data never is.

    Attributes:
        expert_offsets: exclusive prefix sum of the per-expert row counts.
        sorted_token: source token of each grouped row (trash rows point at token 0).
        sorted_weight: router weight of each grouped row (0 for trash rows).
        row_of_slot: grouped row of each ``(token, slot)``, ``-1`` for a slot without expert.
        slot_of_row: flat ``(token, slot)`` index of each grouped row (the inverse permutation;
            trash rows point at the dropped slots they came from).
        counts: rows per expert.
        num_tokens: ``T``.
        top_k: ``K``.

    Shapes:
        - expert_offsets: ``[E + 1]``
        - sorted_token, sorted_weight, slot_of_row: ``[A]``
        - row_of_slot: ``[T, K]``
        - counts: ``[E]``
    """

    expert_offsets: Tensor
    sorted_token: Tensor
    sorted_weight: Tensor
    row_of_slot: Tensor
    slot_of_row: Tensor
    counts: Tensor
    num_tokens: int
    top_k: int

    @property
    def num_experts(self) -> int:
        """Experts ``E``."""
        return int(self.expert_offsets.shape[0]) - 1

    @property
    def num_rows(self) -> int:
        """Host bound on grouped rows ``A = T * K`` (valid rows are ``expert_offsets[-1]``)."""
        return int(self.sorted_token.shape[0])

    @property
    def valid_rows(self) -> Tensor:
        """Number of non-trash rows, as a 0-d device tensor (no sync)."""
        return self.expert_offsets[-1]

    def row_expert(self) -> Tensor:
        """Expert of each grouped row, ``E`` for trash rows.

        Shapes:
            - output: ``[A]``
        """
        rows = torch.arange(self.num_rows, device=self.expert_offsets.device)
        return torch.searchsorted(self.expert_offsets[1:], rows, right=True)


@dataclass
class MoEAux:
    """Auxiliary losses and routing statistics of one MoE call, kept on the layer (``last_aux``).

    Attributes:
        losses: named auxiliary losses, already multiplied by their coefficients; each is a 0-d
            tensor that backpropagates into the router.
        counts: rows per expert after capacity.
        num_tokens: tokens routed in the call.
        dropped_fraction: fraction of the router's selected assignments removed by capacity (the
            tokens then pass through the residual only); 0 for dropless routers.
        mean_k: average number of real experts per token (below ``K`` for top-p routing, null experts
            and capacity drops).
        router_entropy: mean entropy of the router distribution (nats), or ``None``.

    Shapes:
        - counts: ``[E]``
    """

    losses: dict[str, Tensor]
    counts: Tensor
    num_tokens: int
    dropped_fraction: Tensor
    mean_k: Tensor
    router_entropy: Tensor | None = None

    @property
    def total(self) -> Tensor:
        """Sum of all auxiliary losses (0 when there are none)."""
        if not self.losses:
            return self.counts.new_zeros((), dtype=torch.float32)
        return torch.stack(list(self.losses.values())).sum()

    @property
    def load(self) -> Tensor:
        """Fraction of the routed rows each expert received.

        Shapes:
            - output: ``[E]``
        """
        counts = self.counts.float()
        return counts / counts.sum().clamp_min(1.0)
