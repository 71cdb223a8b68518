"""MMoE and its one-gate variant OMoE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from domain_moe.recsys.models.base import MultiTaskModel
from domain_moe.recsys.models.extraction import ExtractionLayer

__all__ = ["MMoE", "OMoE"]


class MMoE(MultiTaskModel):
    """Multi-gate Mixture-of-Experts: ``y_k = h_k(sum_i softmax(W_k x)_i f_i(x))`` (Ma et al., KDD 2018).

    Experts are single-layer ReLU networks (core :class:`~domain_moe.core.experts.linear.LinearExperts`),
    gates are the core dense softmax gates (:class:`~domain_moe.core.multi_gate.MultiGate`), one per task;
    ``shared_gate=True`` uses one gate for every task (OMoE).

    Args:
        task_names: the tasks, in output column order.
        cardinalities: vocabulary size of each categorical field.
        num_dense: number of dense features.
        embed_dim: embedding width of each categorical field.
        num_experts: experts ``E``.
        d_hidden: units of each expert's single layer.
        tower_hidden: hidden widths of every task tower.
        shared_gate: one gate for all tasks (OMoE) instead of one per task.
        activation: expert activation.
        expert_norm: ``None``, ``"batch"`` or ``"layer"`` per-expert normalisation.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - dense: ``[B, num_dense]``, sparse: ``[B, F]``
        - output: ``[B, T]`` logits

    Example:
        >>> model = MMoE(["a", "b"], num_dense=10, num_experts=4, d_hidden=8)
        >>> model(torch.randn(3, 10)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        task_names: Sequence[str],
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        num_experts: int = 8,
        d_hidden: int = 16,
        tower_hidden: Sequence[int] = (8,),
        shared_gate: bool = False,
        activation: str = "relu",
        expert_norm: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(task_names, cardinalities, num_dense, embed_dim, tower_hidden, device, dtype)
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be a positive int, got {num_experts!r}")
        self.shared_gate = shared_gate
        gate_names = ["all"] if shared_gate else self.task_names
        self.moe = ExtractionLayer(
            self.embedding.d_out,
            d_hidden,
            expert_inputs=[0] * num_experts,
            gate_inputs=[0] * len(gate_names),
            activation=activation,
            expert_norm=expert_norm,
            gate_names=gate_names,
            expert_names=[f"shared{e}" for e in range(num_experts)],
            device=device,
            dtype=dtype,
        )
        self._build_towers(d_hidden)

    def represent(self, x: Tensor) -> Tensor:
        """Per-task mixtures ``[T, B, H]`` (``[B, H]`` for OMoE)."""
        out = self.moe(x.unsqueeze(0))
        return out[0] if self.shared_gate else out


class OMoE(MMoE):
    """One-gate Mixture-of-Experts: MMoE with a single gate shared by all tasks (Ma et al., KDD 2018).

    Args:
        task_names: the tasks, in output column order.
        cardinalities: vocabulary size of each categorical field.
        num_dense: number of dense features.
        embed_dim: embedding width of each categorical field.
        num_experts: experts ``E``.
        d_hidden: units of each expert's single layer.
        tower_hidden: hidden widths of every task tower.
        activation: expert activation.
        expert_norm: ``None``, ``"batch"`` or ``"layer"`` per-expert normalisation.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - dense: ``[B, num_dense]``, sparse: ``[B, F]``
        - output: ``[B, T]`` logits

    Example:
        >>> OMoE(["a", "b"], num_dense=10, num_experts=4, d_hidden=8)(torch.randn(3, 10)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        task_names: Sequence[str],
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        num_experts: int = 8,
        d_hidden: int = 16,
        tower_hidden: Sequence[int] = (8,),
        activation: str = "relu",
        expert_norm: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            task_names, cardinalities, num_dense, embed_dim, num_experts, d_hidden, tower_hidden,
            shared_gate=True, activation=activation, expert_norm=expert_norm, device=device, dtype=dtype,
        )
