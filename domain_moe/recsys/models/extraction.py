"""One extraction layer: experts with owners, scoped task/group gates, optional HoME feature- and self-gates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from domain_moe.core.experts.linear import LinearExperts
from domain_moe.core.multi_gate import MultiGate, MultiGateMoE, mix_experts
from domain_moe.recsys.models.feature_gate import FeatureGate

__all__ = ["ExtractionLayer"]


class ExtractionLayer(nn.Module):
    """A multi-gate expert layer over several input representations: the building block of MMoE, CGC/PLE and HoME.

    The layer receives ``R`` representations (the input ``x`` at the first level; one per task, group or
    the shared path above it). Expert ``e`` reads representation ``expert_inputs[e]``, gate ``g`` reads
    ``gate_inputs[g]`` and mixes the experts in its ``scope`` (Tang et al., RecSys 2020, Eq. 4-6 for CGC's
    "own + shared" scopes; MMoE is the case of one representation and full scopes). HoME's pieces
    (Wang et al., 2024) are switches: BatchNorm + Swish experts (``expert_norm``, ``activation``), per-expert
    feature gates (``feature_gate``) and a self-gate residual that adds, to gate ``g``'s mixture, a
    sigmoid/softmax-weighted sum of the experts in ``self_scope[g]`` (the gate's *own* experts), which
    keeps gradient flowing into the experts of data-sparse tasks.

    ``gate_names``, ``expert_names`` and ``expert_owner`` (index of the gate owning an expert, ``-1`` for
    shared experts) describe the layer for the expert-health diagnostics; the last call's gate weights and
    expert outputs are on ``self.moe.last_weights`` / ``self.moe.last_expert_outputs``.

    Args:
        d_model: width ``D`` of every input representation.
        d_hidden: output width ``H`` of every expert (single layer).
        expert_inputs: representation index read by each expert (length ``E``).
        gate_inputs: representation index read by each gate (length ``G``).
        scope: boolean ``[G, E]`` experts each gate mixes.
        self_scope: boolean ``[G, E]`` experts of each gate's self-gate residual (``None``: no self-gate;
            rows without experts get no residual).
        activation: expert activation (``"relu"`` or ``"silu"`` = Swish, ...).
        expert_norm: ``None``, ``"batch"`` or ``"layer"``.
        feature_gate: per-expert LoRA feature gates on the expert inputs.
        lora_rank: rank of the feature gates.
        gate_names: a name per gate (diagnostics).
        expert_names: a name per expert (diagnostics).
        expert_owner: owning gate per expert, ``-1`` = shared (diagnostics).
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - reps: ``[R, B, D]``
        - output: ``[G, B, H]``

    Example:
        >>> scope = [[True, False, True], [False, True, True]]
        >>> layer = ExtractionLayer(6, 4, expert_inputs=[0, 0, 0], gate_inputs=[0, 0], scope=scope)
        >>> layer(torch.randn(1, 5, 6)).shape
        torch.Size([2, 5, 4])
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        expert_inputs: Sequence[int],
        gate_inputs: Sequence[int],
        scope: Tensor | Sequence[Sequence[bool]] | None = None,
        self_scope: Tensor | Sequence[Sequence[bool]] | None = None,
        activation: str = "relu",
        expert_norm: str | None = None,
        feature_gate: bool = False,
        lora_rank: int = 4,
        gate_names: Sequence[str] | None = None,
        expert_names: Sequence[str] | None = None,
        expert_owner: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_experts, num_gates = len(expert_inputs), len(gate_inputs)
        if num_experts == 0 or num_gates == 0:
            raise ValueError(f"an extraction layer needs experts and gates, got {num_experts} and {num_gates}")
        self.expert_inputs = [int(i) for i in expert_inputs]
        self.gate_inputs = [int(i) for i in gate_inputs]
        self.num_inputs = max(self.expert_inputs + self.gate_inputs) + 1
        self.d_model = d_model
        self.d_hidden = d_hidden
        self.gate_names = list(gate_names) if gate_names is not None else [f"gate{g}" for g in range(num_gates)]
        self.expert_names = (
            list(expert_names) if expert_names is not None else [f"expert{e}" for e in range(num_experts)]
        )
        self.expert_owner = list(expert_owner) if expert_owner is not None else [-1] * num_experts
        if len(self.gate_names) != num_gates or len(self.expert_names) != num_experts:
            raise ValueError("gate_names / expert_names must have one entry per gate / expert")
        if len(self.expert_owner) != num_experts:
            raise ValueError(
                f"expert_owner must have one entry per expert ({num_experts}), got {len(self.expert_owner)}"
            )
        dd = {"device": device, "dtype": dtype}
        experts = LinearExperts(num_experts, d_model, d_hidden, activation=activation, norm=expert_norm, **dd)
        self.moe = MultiGateMoE(experts, MultiGate(num_gates, num_experts, d_model, scope=scope, device=device))
        self.feature_gate = FeatureGate(num_experts, d_model, lora_rank, **dd) if feature_gate else None
        self.self_gate: MultiGate | None = None
        self.register_buffer("self_rows", torch.zeros(num_gates, dtype=torch.bool, device=device), persistent=False)
        if self_scope is not None:
            mask = torch.as_tensor(self_scope, dtype=torch.bool)
            if tuple(mask.shape) != (num_gates, num_experts):
                raise ValueError(
                    f"self_scope must have shape [G={num_gates}, E={num_experts}], got {tuple(mask.shape)}"
                )
            rows = mask.any(1)
            if bool(rows.any()):
                # Gates without own experts keep a dummy full scope (MultiGate needs one expert per gate);
                # their residual is switched off by self_rows.
                safe = torch.where(rows.unsqueeze(1), mask, torch.ones_like(mask))
                self.self_gate = MultiGate(num_gates, num_experts, d_model, scope=safe, score_fn="auto", device=device)
                self.self_rows = rows.to(device)
        # Whether every expert reads the same representation without a private gate: one shared matmul input.
        self._shared_expert_input = len(set(self.expert_inputs)) == 1 and self.feature_gate is None
        self.register_buffer("_expert_idx", torch.tensor(self.expert_inputs, device=device), persistent=False)
        self.register_buffer("_gate_idx", torch.tensor(self.gate_inputs, device=device), persistent=False)

    @property
    def num_experts(self) -> int:
        """Experts ``E``."""
        return self.moe.num_experts

    @property
    def num_gates(self) -> int:
        """Gates ``G``."""
        return self.moe.num_gates

    @property
    def scope(self) -> Tensor:
        """Boolean ``[G, E]`` gate scopes."""
        return self.moe.gate.scope

    def reset_parameters(self) -> None:
        """Reset experts, gates and feature gates."""
        self.moe.experts.reset_parameters()
        self.moe.gate.reset_parameters()
        if self.self_gate is not None:
            self.self_gate.reset_parameters()
        if self.feature_gate is not None:
            self.feature_gate.reset_parameters()

    def forward(self, reps: Tensor) -> Tensor:
        """Gate mixtures (plus self-gate residuals); see the class docstring."""
        if reps.dim() != 3 or reps.shape[0] < self.num_inputs or reps.shape[-1] != self.d_model:
            raise ValueError(
                f"reps must have shape [R>={self.num_inputs}, B, D={self.d_model}], got {tuple(reps.shape)}"
            )
        if self._shared_expert_input:
            expert_x = reps[self.expert_inputs[0]]
        else:
            expert_x = reps.index_select(0, self._expert_idx)
            if self.feature_gate is not None:
                expert_x = self.feature_gate(expert_x)
        gate_x = reps.index_select(0, self._gate_idx)
        mixed, expert_out = self.moe(expert_x, gate_x, return_expert_outputs=True)
        if self.self_gate is not None:
            residual = mix_experts(expert_out, self.self_gate(gate_x))
            mixed = mixed + residual * self.self_rows.view(-1, 1, 1).to(residual.dtype)
        return mixed

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"inputs={self.num_inputs}, gates={self.gate_names}"
