"""Several dense gates over one set of experts: the multi-gate mixture of MMoE, CGC, PLE and HoME.

A multi-task MoE computes its experts once per batch and mixes their outputs differently for every task
(or task group) with that task's own softmax gate. CGC/PLE and HoME restrict each gate to a *scope* of
experts (its own plus shared experts); out-of-scope experts are removed from the gate's softmax, so they
get exactly zero weight and receive no gradient through that gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from domain_moe.core.dispatch.reference import build_plan
from domain_moe.core.experts.base import Experts

__all__ = ["SCORE_FNS", "MultiGate", "MultiGateMoE", "all_expert_outputs", "mix_experts"]

SCORE_FNS = ("softmax", "sigmoid", "auto")


def _as_scope(scope: Tensor | Sequence[Sequence[bool]] | None, num_gates: int, num_experts: int) -> Tensor:
    """The boolean ``[G, E]`` scope, validated (every gate must see at least one expert)."""
    if scope is None:
        return torch.ones(num_gates, num_experts, dtype=torch.bool)
    mask = torch.as_tensor(scope)
    if mask.dtype != torch.bool:
        raise TypeError(f"scope must be boolean, got dtype {mask.dtype}")
    if tuple(mask.shape) != (num_gates, num_experts):
        raise ValueError(f"scope must have shape [G={num_gates}, E={num_experts}], got {tuple(mask.shape)}")
    empty = (~mask.any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"scope gives gates {empty} no expert; every gate needs at least one expert in scope")
    return mask.clone()


def mix_experts(expert_out: Tensor, weights: Tensor) -> Tensor:
    """Per gate, the weighted sum of the expert outputs: ``out[g, t] = sum_e weights[g, t, e] * expert_out[e, t]``.

    Args:
        expert_out: every expert's output on every row.
        weights: gate weights (zero outside a gate's scope).

    Returns:
        One mixture per gate.

    Shapes:
        - expert_out: ``[E, T, D_out]``
        - weights: ``[G, T, E]``
        - output: ``[G, T, D_out]``

    Example:
        >>> out = mix_experts(torch.ones(3, 2, 4), torch.full((2, 2, 3), 1 / 3))
        >>> out.shape, round(out[0, 0, 0].item(), 6)
        (torch.Size([2, 2, 4]), 1.0)
    """
    if expert_out.dim() != 3 or weights.dim() != 3:
        raise ValueError(
            f"expert_out must be [E, T, D_out] and weights [G, T, E], got {tuple(expert_out.shape)} and "
            f"{tuple(weights.shape)}"
        )
    if weights.shape[1:] != (expert_out.shape[1], expert_out.shape[0]):
        raise ValueError(
            f"weights [G, T, E] must match expert_out [E={expert_out.shape[0]}, T={expert_out.shape[1]}, D_out], "
            f"got weights {tuple(weights.shape)}"
        )
    return torch.einsum("gte,etd->gtd", weights.to(expert_out.dtype), expert_out)


def all_expert_outputs(experts: Experts, x: Tensor, **expert_kwargs: Any) -> Tensor:
    """Every expert of a container on every row (what dense gating needs), stacked per expert.

    Containers with a ``forward_all`` method (such as :class:`~domain_moe.core.experts.linear.LinearExperts`)
    are called directly, which also allows one input per expert (``[E, T, D]``); other containers run on the
    ``dense_all`` backend with a plan that sends every row to every expert.

    Args:
        experts: the expert container.
        x: the rows, shared by all experts or one block per expert.
        **expert_kwargs: passed to every expert (e.g. ``edge_index`` for graph experts).

    Returns:
        Expert outputs.

    Shapes:
        - x: ``[T, D]`` or ``[E, T, D]``
        - output: ``[E, T, D_out]``

    Example:
        >>> from domain_moe.core.experts import MLPExperts
        >>> all_expert_outputs(MLPExperts(3, d_model=4, d_hidden=8), torch.randn(5, 4)).shape
        torch.Size([3, 5, 4])
    """
    forward_all = getattr(experts, "forward_all", None)
    if callable(forward_all) and not expert_kwargs:
        out = forward_all(x)
        assert isinstance(out, Tensor)
        return out
    if x.dim() != 2:
        raise ValueError(
            f"{type(experts).__name__} has no forward_all, so x must be one input [T, D] shared by all experts, "
            f"got {tuple(x.shape)}"
        )
    if "dense_all" not in experts.supported_backends:
        raise ValueError(f"{type(experts).__name__} cannot run every expert on every row (no 'dense_all' backend)")
    num_tokens = x.shape[0]
    idx = torch.arange(experts.num_experts, device=x.device).repeat(num_tokens, 1)
    plan = build_plan(idx, torch.ones(idx.shape, dtype=x.dtype, device=x.device), experts.num_experts)
    rows = experts(x, plan, "dense_all", **expert_kwargs)
    # The plan sorts stably by expert, so its rows are expert-major with tokens in order.
    return rows.view(experts.num_experts, num_tokens, experts.d_out)


class MultiGate(nn.Module):
    """``G`` dense gates over ``E`` experts, each restricted to a scope: ``g_k(x) = softmax_{scope_k}(W_k x)``.

    The gate of MMoE (one per task, all experts in scope; Ma et al., KDD 2018), of CGC/PLE (a task's own
    plus the shared experts; Tang et al., RecSys 2020) and of HoME's hierarchy mask (Wang et al., 2024).
    Out-of-scope logits are set to ``-inf`` before the softmax, so those experts get exactly 0 weight and
    no gradient from the gate. ``score_fn="sigmoid"`` scores experts independently (HoME's self-gate for a
    single expert); ``"auto"`` uses the sigmoid for gates with one expert in scope (where a softmax would be
    the constant 1) and the softmax otherwise. Gates compute in fp32, like the core routers.

    Args:
        num_gates: ``G``.
        num_experts: ``E``.
        d_model: gate input width ``D``.
        scope: boolean ``[G, E]`` mask of the experts each gate may use (``None``: all).
        score_fn: ``"softmax"``, ``"sigmoid"`` or ``"auto"``.
        temperature: softmax temperature (``> 0``).
        bias: learn a per-expert logit bias for each gate (MMoE's gate has none).
        device: parameter device.
        dtype: ignored (gates stay in fp32); accepted for factory uniformity.

    Shapes:
        - x: ``[T, D]`` (one input for all gates) or ``[G, T, D]`` (one input per gate)
        - weight: ``[G, E, D]``
        - output: ``[G, T, E]``

    Example:
        >>> gate = MultiGate(num_gates=2, num_experts=3, d_model=4, scope=[[True, True, False], [False, True, True]])
        >>> w = gate(torch.randn(5, 4))
        >>> w.shape, bool(w[0, :, 2].eq(0).all()), bool(torch.allclose(w.sum(-1), torch.ones(2, 5)))
        (torch.Size([2, 5, 3]), True, True)
    """

    def __init__(
        self,
        num_gates: int,
        num_experts: int,
        d_model: int,
        scope: Tensor | Sequence[Sequence[bool]] | None = None,
        score_fn: str = "softmax",
        temperature: float = 1.0,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("num_gates", num_gates), ("num_experts", num_experts), ("d_model", d_model)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if score_fn not in SCORE_FNS:
            raise ValueError(f"score_fn must be one of {SCORE_FNS}, got {score_fn!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        self.num_gates = num_gates
        self.num_experts = num_experts
        self.d_model = d_model
        self.score_fn = score_fn
        self.temperature = float(temperature)
        self.register_buffer("scope", _as_scope(scope, num_gates, num_experts).to(device))
        self.weight = nn.Parameter(torch.empty(num_gates, num_experts, d_model, device=device, dtype=torch.float32))
        self.bias = (
            nn.Parameter(torch.empty(num_gates, num_experts, device=device, dtype=torch.float32)) if bias else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every gate like ``nn.Linear`` (the core ``DenseRouter`` initialisation)."""
        for g in range(self.num_gates):
            nn.init.kaiming_uniform_(self.weight.data[g], a=math.sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1.0 / math.sqrt(self.d_model), 1.0 / math.sqrt(self.d_model))

    def logits(self, x: Tensor) -> Tensor:
        """Unmasked fp32 gate logits ``[G, T, E]``."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"MultiGate: x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
        if x.dim() == 3 and x.shape[0] != self.num_gates:
            raise ValueError(
                f"MultiGate: per-gate input must have shape [G={self.num_gates}, T, D], got {tuple(x.shape)}"
            )
        if x.dim() not in (2, 3) or x.shape[-1] != self.d_model:
            raise ValueError(f"MultiGate: x must have shape [T, D={self.d_model}] or [G, T, D], got {tuple(x.shape)}")
        if x.dim() == 2:
            out = torch.einsum("td,ged->gte", x.float(), self.weight)
        else:
            out = torch.einsum("gtd,ged->gte", x.float(), self.weight)
        if self.bias is not None:
            out = out + self.bias.unsqueeze(1)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Gate weights ``[G, T, E]``, exactly 0 outside each gate's scope."""
        logits = self.logits(x)
        scope = self.scope.unsqueeze(1)
        soft = logits.div(self.temperature).masked_fill(~scope, float("-inf")).softmax(-1)
        if self.score_fn == "softmax":
            return soft
        # Multiplying by the mask (not masked_fill after the sigmoid) also zeroes the gradient of masked logits.
        sig = torch.sigmoid(logits) * scope
        if self.score_fn == "sigmoid":
            return sig
        single = (self.scope.sum(1) == 1).view(-1, 1, 1)
        return torch.where(single, sig, soft)

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        masked = int((~self.scope).sum())
        return (
            f"num_gates={self.num_gates}, num_experts={self.num_experts}, d_model={self.d_model}, "
            f"score_fn={self.score_fn!r}, masked={masked}"
        )


class MultiGateMoE(nn.Module):
    """Experts computed once, mixed per gate: ``out_k = sum_e g_k(x_gate)_e * f_e(x)`` (MMoE's multi-gate MoE).

    The experts run on every row (dense gating, as in Ma et al., KDD 2018); a :class:`MultiGate` gives each
    task (or task group) its own mixture. Experts may read one shared input or one input per expert, and
    gates one shared input or one input per gate, which covers MMoE (all shared), CGC/PLE (experts read
    their owner's representation) and HoME (per-expert feature-gated inputs). The last call's gate weights
    and expert outputs are kept (detached) on the layer as ``last_weights`` and ``last_expert_outputs`` for
    expert-health diagnostics; nothing is stored globally.

    Args:
        experts: an expert container (single-layer :class:`~domain_moe.core.experts.linear.LinearExperts` or
            any container with a ``dense_all`` backend).
        gate: the gates; ``gate.num_experts`` must equal ``experts.num_experts``.

    Shapes:
        - x: ``[T, D]`` or ``[E, T, D]``
        - gate_x: ``[T, D_g]`` or ``[G, T, D_g]`` (default: ``x`` when it is ``[T, D]``)
        - output: ``[G, T, D_out]``

    Example:
        >>> from domain_moe.core.experts.linear import LinearExperts
        >>> layer = MultiGateMoE(LinearExperts(4, d_model=6, d_out=3), MultiGate(num_gates=2, num_experts=4, d_model=6))
        >>> layer(torch.randn(5, 6)).shape, layer.last_weights.shape
        (torch.Size([2, 5, 3]), torch.Size([2, 5, 4]))
    """

    last_weights: Tensor | None
    last_expert_outputs: Tensor | None

    def __init__(self, experts: Experts, gate: MultiGate) -> None:
        super().__init__()
        if not isinstance(experts, Experts):
            raise TypeError(f"experts must be a domain_moe Experts container, got {type(experts).__name__}")
        if not isinstance(gate, MultiGate):
            raise TypeError(f"gate must be a MultiGate, got {type(gate).__name__}")
        if gate.num_experts != experts.num_experts:
            raise ValueError(f"gate covers num_experts={gate.num_experts} but experts holds {experts.num_experts}")
        self.experts = experts
        self.gate = gate
        self.last_weights = None
        self.last_expert_outputs = None

    def __getstate__(self) -> dict[str, object]:
        # Like MoE.last_aux: copies and pickles start without the last call's tensors.
        state = self.__dict__.copy()
        state["last_weights"] = state["last_expert_outputs"] = None
        return state

    @property
    def num_gates(self) -> int:
        """Gates ``G``."""
        return self.gate.num_gates

    @property
    def num_experts(self) -> int:
        """Experts ``E``."""
        return self.experts.num_experts

    def forward(
        self, x: Tensor, gate_x: Tensor | None = None, *, return_expert_outputs: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Mix the experts' outputs with every gate; see the class docstring.

        Args:
            x: expert input(s).
            gate_x: gate input(s) (default ``x``).
            return_expert_outputs: also return the (differentiable) expert outputs ``[E, T, D_out]``, for
                callers that mix them once more (HoME's self-gate residual).
        """
        if gate_x is None:
            if x.dim() != 2:
                raise ValueError(f"gate_x is required when x holds one input per expert (x shape {tuple(x.shape)})")
            gate_x = x
        expert_out = all_expert_outputs(self.experts, x)
        weights = self.gate(gate_x)
        if weights.shape[1] != expert_out.shape[1]:
            raise ValueError(f"gate_x has {weights.shape[1]} rows but x has {expert_out.shape[1]}")
        self.last_weights = weights.detach()
        self.last_expert_outputs = expert_out.detach()
        mixed = mix_experts(expert_out, weights)
        return (mixed, expert_out) if return_expert_outputs else mixed
