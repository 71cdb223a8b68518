"""Soft MoE (Puigcerver et al., 2023): experts process convex mixes of a sequence's tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core.routing.base import Router, check_logits
from domain_moe.core.types import RoutingDecision

__all__ = ["SoftMoERouter"]


class SoftMoERouter(Router):
    """Fully differentiable slot routing: no token is dropped and no expert is idle.

    Puigcerver et al., "From Sparse to Soft Mixtures of Experts" (ICLR 2024). With slot parameters
    ``Phi`` (``S`` slots per expert), the logits of a sequence are ``Z = X Phi`` (``[L, E S]``).
    Each slot's input is a mix of the sequence's tokens with the **dispatch** weights
    ``softmax_L(Z)`` (softmax over tokens, per slot); each token's output is a mix of the slot
    outputs with the **combine** weights ``softmax_{E S}(Z)`` (softmax over slots, per token).
    Expert ``e`` processes slots ``e S, ..., e S + S - 1``. The MoE layer does the mixing
    (``needs_sequences``): expert ``e`` gets exactly ``B S`` rows, hence the ``bmm`` backend.

    With ``normalize`` the paper's stabiliser for wide models is applied: ``X`` is L2-normalised
    over ``D`` and ``Phi`` over ``D`` then multiplied by a learned scalar ``scale`` (initialised to
    1).

    The decision leaves ``topk_idx``/``topk_w`` empty (``[B L, 0]``), sets ``counts`` to ``B S`` per
    expert and keeps the logits in ``extras["slot_logits"]``. There is no auxiliary loss.

    Args:
        d_model: token width ``D``.
        num_experts: experts ``E``.
        slots_per_expert: slots ``S`` per expert.
        normalize: L2-normalise tokens and slot parameters, with a learned scale.
        device: parameter device.
        dtype: ignored (slot parameters are kept in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[B, L, D]``
        - phi: ``[D, E S]``
        - decision.dispatch_weights, decision.combine_weights: ``[B, L, E S]``
        - decision.topk_idx, decision.topk_w: ``[B L, 0]``

    Example:
        >>> import torch
        >>> router = SoftMoERouter(d_model=16, num_experts=4, slots_per_expert=2)
        >>> decision = router(torch.randn(3, 5, 16))
        >>> decision.dispatch_weights.shape, decision.counts.tolist()
        (torch.Size([3, 5, 8]), [6, 6, 6, 6])
    """

    preferred_backend = "bmm"
    needs_sequences = True

    def __init__(
        self,
        d_model: int,
        num_experts: int,
        slots_per_expert: int = 1,
        *,
        normalize: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(d_model, num_experts)
        if isinstance(slots_per_expert, bool) or not isinstance(slots_per_expert, int) or slots_per_expert < 1:
            raise ValueError(f"slots_per_expert must be a positive int, got {slots_per_expert!r}")
        self.slots_per_expert = slots_per_expert
        self.normalize = normalize
        self.phi = nn.Parameter(
            torch.empty(d_model, num_experts * slots_per_expert, device=device, dtype=torch.float32)
        )
        if normalize:
            self.scale = nn.Parameter(torch.empty((), device=device, dtype=torch.float32))
        else:
            self.register_parameter("scale", None)
        self.reset_parameters()

    @property
    def num_slots(self) -> int:
        """Slots in total, ``E S``."""
        return self.num_experts * self.slots_per_expert

    def reset_parameters(self) -> None:
        """LeCun-normal slot parameters (std ``1/sqrt(D)``) and a unit scale."""
        nn.init.normal_(self.phi, std=self.d_model**-0.5)
        if self.scale is not None:
            nn.init.ones_(self.scale)

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error for input that is not a batch of sequences.

        Raises:
            TypeError: non-tensor or non-floating-point input.
            ValueError: not ``[B, L, D]``, wrong width, or no tokens.
        """
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: x must be floating point, got dtype {x.dtype}")
        if x.dim() != 3:
            raise ValueError(f"{name}: x must have shape [B, L, D], got {tuple(x.shape)}")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{name}: x must have width d_model={self.d_model}, got shape {tuple(x.shape)}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: x has no tokens (shape {tuple(x.shape)})")

    def forward(self, x: Tensor) -> RoutingDecision:
        """Route the sequences ``x``; see the class docstring."""
        self.check_input(x)
        batch, length, _ = x.shape
        phi: Tensor = self.phi
        if self.scale is not None:
            x = F.normalize(x.float(), dim=-1)
            phi = self.scale * F.normalize(phi.float(), dim=0)
        logits = self.fp32_linear(x, phi.T)
        check_logits(logits)
        num_tokens = batch * length
        empty_idx = torch.empty(num_tokens, 0, dtype=torch.long, device=logits.device)
        counts = torch.full(
            (self.num_experts,),
            batch * self.slots_per_expert,
            dtype=torch.long,
            device=logits.device,
        )
        return RoutingDecision(
            topk_idx=empty_idx,
            topk_w=logits.new_empty(num_tokens, 0),
            counts=counts,
            num_experts=self.num_experts,
            dispatch_weights=logits.softmax(1),
            combine_weights=logits.softmax(-1),
            capacity=batch * self.slots_per_expert,
            extras={"slot_logits": logits},
        )

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"{super().extra_repr()}, slots_per_expert={self.slots_per_expert}, normalize={self.normalize}"
