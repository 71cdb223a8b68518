"""CGC and PLE: task-specific plus shared experts, stacked in extraction levels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from domain_moe.recsys.models.base import MultiTaskModel
from domain_moe.recsys.models.extraction import ExtractionLayer

__all__ = ["CGC", "PLE"]


def _positive(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


class PLE(MultiTaskModel):
    """Progressive Layered Extraction (Tang, Liu, Zhao, Gong; RecSys 2020).

    Each level holds ``num_specific`` experts per task and ``num_shared`` shared experts. Task ``k``'s gate
    mixes only its own and the shared experts, ``g^{k,j} = w^{k,j}(g^{k,j-1}) S^{k,j}(g^{k,j-1})`` (the
    other tasks' experts are masked out of its softmax); every level but the last also has a shared gate
    over all experts, whose output feeds the next level's shared experts, while task ``k``'s experts read
    task ``k``'s previous output. ``num_levels=1`` is CGC; ``num_specific=0`` with one level is MMoE with
    ``num_shared`` experts.

    Args:
        task_names: the tasks, in output column order.
        cardinalities: vocabulary size of each categorical field.
        num_dense: number of dense features.
        embed_dim: embedding width of each categorical field.
        num_levels: extraction levels ``N`` (1 = CGC).
        num_specific: experts per task and level.
        num_shared: shared experts per level.
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
        >>> model = PLE(["a", "b"], num_dense=10, num_levels=2, num_specific=1, num_shared=2, d_hidden=8)
        >>> model(torch.randn(3, 10)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        task_names: Sequence[str],
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        num_levels: int = 2,
        num_specific: int = 1,
        num_shared: int = 1,
        d_hidden: int = 16,
        tower_hidden: Sequence[int] = (8,),
        activation: str = "relu",
        expert_norm: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(task_names, cardinalities, num_dense, embed_dim, tower_hidden, device, dtype)
        _positive("num_levels", num_levels)
        _positive("num_specific", num_specific, 0)
        _positive("num_shared", num_shared, 0)
        if num_specific + num_shared == 0:
            raise ValueError("num_specific + num_shared must be >= 1: a task gate needs at least one expert")
        self.num_levels = num_levels
        self.num_specific = num_specific
        self.num_shared = num_shared
        num_tasks = self.num_tasks
        owner = [t for t in range(num_tasks) for _ in range(num_specific)] + [-1] * num_shared
        names = [f"{self.task_names[t]}{i}" for t in range(num_tasks) for i in range(num_specific)]
        names += [f"shared{i}" for i in range(num_shared)]
        levels = []
        for level in range(num_levels):
            last = level == num_levels - 1
            first = level == 0
            gates = num_tasks if last else num_tasks + 1
            scope = torch.tensor([[o == g or o == -1 for o in owner] for g in range(num_tasks)], dtype=torch.bool)
            if not last:
                scope = torch.cat([scope, torch.ones(1, len(owner), dtype=torch.bool)])
            # Level 1 reads the input x everywhere; above it task k reads representation k, shared reads T.
            expert_inputs = [0] * len(owner) if first else [o if o >= 0 else num_tasks for o in owner]
            gate_inputs = [0] * gates if first else list(range(gates))
            levels.append(
                ExtractionLayer(
                    self.embedding.d_out if first else d_hidden,
                    d_hidden,
                    expert_inputs,
                    gate_inputs,
                    scope=scope,
                    activation=activation,
                    expert_norm=expert_norm,
                    gate_names=self.task_names + ([] if last else ["shared"]),
                    expert_names=names,
                    expert_owner=owner,
                    device=device,
                    dtype=dtype,
                )
            )
        self.levels = torch.nn.ModuleList(levels)
        self._build_towers(d_hidden)

    def represent(self, x: Tensor) -> Tensor:
        """Per-task representations ``[T, B, H]`` from the last level."""
        reps = x.unsqueeze(0)
        for level in self.levels:
            reps = level(reps)
        return reps


class CGC(PLE):
    """Customized Gate Control: one PLE level, task gates over own + shared experts (Tang et al., RecSys 2020).

    Args:
        task_names: the tasks, in output column order.
        cardinalities: vocabulary size of each categorical field.
        num_dense: number of dense features.
        embed_dim: embedding width of each categorical field.
        num_specific: experts per task.
        num_shared: shared experts.
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
        >>> CGC(["a", "b"], num_dense=10, num_specific=1, num_shared=2, d_hidden=8)(torch.randn(3, 10)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        task_names: Sequence[str],
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        num_specific: int = 1,
        num_shared: int = 1,
        d_hidden: int = 16,
        tower_hidden: Sequence[int] = (8,),
        activation: str = "relu",
        expert_norm: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            task_names, cardinalities, num_dense, embed_dim, 1, num_specific, num_shared, d_hidden,
            tower_hidden, activation, expert_norm, device, dtype,
        )
