"""HoME: a hierarchy of multi-gate experts with expert normalisation, a hierarchy mask, feature- and self-gates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from domain_moe.recsys.models.base import MultiTaskModel
from domain_moe.recsys.models.extraction import ExtractionLayer

__all__ = ["HoME"]


def _count(name: str, value: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class HoME(MultiTaskModel):
    """Hierarchy of multi-gate experts (Wang, Cao, Fu, Gai, Zhou; Kuaishou; arXiv 2408.05430).

    Tasks are partitioned into groups (e.g. watch-time tasks and interaction tasks); tasks in no group are
    *global* tasks. Two levels (a reconstruction of the paper's hierarchy; see ``specs/recsys.md`` §4.3):

    * **Meta level**: ``num_group_meta`` experts per group and ``num_shared_meta`` shared experts read the
      input. Each group's gate mixes its own and the shared meta experts into ``z_g``; a global gate mixes
      all of them into ``z_sh``.
    * **Task level**: ``num_global_experts`` read ``z_sh``; ``num_group_experts`` per group and
      ``num_task_experts`` per task read their group's ``z_g`` (global tasks read ``z_sh``). With the
      **hierarchy mask**, task ``t``'s gate mixes only the global experts, its group's experts and its own;
      every other group's and task's experts are masked out of its softmax.

    The three fixes of the paper are switches, for ablations:

    * **expert normalisation**: each expert is ``Swish(BN(Linear(x)))`` (``expert_norm="batch"``,
      ``activation="silu"``) instead of ``ReLU(Linear(x))``, against expert collapse;
    * **hierarchy mask** (``hierarchy_mask``), against expert degradation (a shared expert occupied by one
      task); off, every gate sees every expert of its level;
    * **feature gate** ``x_e = x * 2 sigmoid(x B_e A_e)`` per expert (``feature_gate``) and the **self-gate**
      residual (``self_gate``): each gate's output gets ``+ sum_j s_j(x) E_j(x)`` over its *own* experts (a
      sigmoid for one expert, a softmax for several), against the underfitting of sparse tasks.

    With singleton groups, ``num_group_experts=0`` and every piece off but the mask, HoME computes exactly a
    two-level :class:`~domain_moe.recsys.models.ple.PLE` (same parameter names, so state dicts load across).

    Args:
        task_names: the tasks, in output column order.
        task_groups: group name -> task names (``None``: one group per task). Tasks in no group are global.
        cardinalities: vocabulary size of each categorical field.
        num_dense: number of dense features.
        embed_dim: embedding width of each categorical field.
        num_shared_meta: shared meta-level experts.
        num_group_meta: meta-level experts per group.
        num_global_experts: task-level experts shared by all tasks.
        num_group_experts: task-level experts per group, shared by the group's tasks.
        num_task_experts: task-level experts per task.
        d_hidden: units of every expert's single layer.
        tower_hidden: hidden widths of every task tower.
        expert_norm: ``"batch"`` (HoME), ``"layer"`` or ``None`` (off).
        activation: ``"silu"`` (Swish, HoME) or ``"relu"`` (off).
        hierarchy_mask: mask other groups' and tasks' experts out of each gate.
        feature_gate: per-expert LoRA feature gates on the expert inputs.
        self_gate: self-gate residual over each gate's own experts.
        lora_rank: rank ``r`` of the feature gates.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - dense: ``[B, num_dense]``, sparse: ``[B, F]``
        - output: ``[B, T]`` logits

    Example:
        >>> groups = {"interact": ["like", "follow"]}
        >>> model = HoME(["click", "like", "follow"], task_groups=groups, num_dense=10, d_hidden=8)
        >>> model(torch.randn(4, 10)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        task_names: Sequence[str],
        task_groups: Mapping[str, Sequence[str]] | None = None,
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        num_shared_meta: int = 2,
        num_group_meta: int = 1,
        num_global_experts: int = 2,
        num_group_experts: int = 1,
        num_task_experts: int = 1,
        d_hidden: int = 64,
        tower_hidden: Sequence[int] = (32,),
        expert_norm: str | None = "batch",
        activation: str = "silu",
        hierarchy_mask: bool = True,
        feature_gate: bool = True,
        self_gate: bool = True,
        lora_rank: int = 8,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(task_names, cardinalities, num_dense, embed_dim, tower_hidden, device, dtype)
        tasks = self.task_names
        if task_groups is None:
            task_groups = {t: [t] for t in tasks}
        if not isinstance(task_groups, Mapping):
            raise TypeError(f"task_groups must map group names to task names, got {type(task_groups).__name__}")
        group_of: dict[str, int] = {}
        for g, (group, members) in enumerate(task_groups.items()):
            if isinstance(members, str) or not members:
                raise ValueError(f"task_groups[{group!r}] must be a non-empty list of task names, got {members!r}")
            for t in members:
                if t not in tasks:
                    raise ValueError(f"task_groups[{group!r}] names unknown task {t!r}; tasks are {tasks}")
                if t in group_of:
                    raise ValueError(f"task {t!r} is in more than one group of task_groups")
                group_of[t] = g
        self.task_groups = {str(k): list(v) for k, v in task_groups.items()}
        self.group_names = list(self.task_groups)
        num_groups = len(self.group_names)
        counts = {
            "num_shared_meta": _count("num_shared_meta", num_shared_meta),
            "num_group_meta": _count("num_group_meta", num_group_meta),
            "num_global_experts": _count("num_global_experts", num_global_experts),
            "num_group_experts": _count("num_group_experts", num_group_experts),
            "num_task_experts": _count("num_task_experts", num_task_experts),
        }
        if num_shared_meta + num_group_meta == 0:
            raise ValueError("num_shared_meta + num_group_meta must be >= 1")
        global_tasks = [t for t in tasks if t not in group_of]
        if num_global_experts + num_task_experts == 0 and global_tasks:
            raise ValueError(f"global tasks {global_tasks} need num_global_experts or num_task_experts >= 1")
        if num_global_experts + num_group_experts + num_task_experts == 0:
            raise ValueError("the task level needs at least one expert per task gate")
        self.hierarchy_mask = hierarchy_mask
        self.feature_gate = feature_gate
        self.self_gate = self_gate
        self.expert_norm = expert_norm
        self.activation = activation
        self.counts = counts
        common = {
            "activation": activation,
            "expert_norm": expert_norm,
            "feature_gate": feature_gate,
            "lora_rank": lora_rank,
            "device": device,
            "dtype": dtype,
        }

        def scopes(owner_sets: list[set[int]], gate_ids: Sequence[int]) -> Tensor:
            if not hierarchy_mask:
                return torch.ones(len(gate_ids), len(owner_sets), dtype=torch.bool)
            return torch.tensor([[g in owners for owners in owner_sets] for g in gate_ids], dtype=torch.bool)

        # Meta level. Gates: groups 0..G-1, then the global gate G. Experts: group metas, then shared metas
        # (the order of PLE's first level, so the two share parameter layouts).
        meta_owner = [g for g in range(num_groups) for _ in range(num_group_meta)] + [-1] * num_shared_meta
        meta_sets = [{o, num_groups} if o >= 0 else set(range(num_groups + 1)) for o in meta_owner]
        meta_self = torch.tensor(
            [[o == g or (o == -1 and g == num_groups) for o in meta_owner] for g in range(num_groups + 1)]
        )
        meta = ExtractionLayer(
            self.embedding.d_out,
            d_hidden,
            expert_inputs=[0] * len(meta_owner),
            gate_inputs=[0] * (num_groups + 1),
            scope=scopes(meta_sets, range(num_groups + 1)),
            self_scope=meta_self if self_gate else None,
            gate_names=[*self.group_names, "global"],
            expert_names=[f"{self.group_names[o]}_meta{i % max(num_group_meta, 1)}" if o >= 0 else "shared_meta"
                          for i, o in enumerate(meta_owner)],
            expert_owner=meta_owner,
            **common,
        )
        # Task level. Experts: per task, then per group (group-shared), then global; gates: one per task.
        rep_of_task = [group_of.get(t, num_groups) for t in tasks]
        task_owner = [t for t in range(len(tasks)) for _ in range(num_task_experts)]
        group_expert_group = [g for g in range(num_groups) for _ in range(num_group_experts)]
        owners = task_owner + [-1] * (len(group_expert_group) + num_global_experts)
        sets = [{t} for t in task_owner]
        sets += [{t for t in range(len(tasks)) if rep_of_task[t] == g} for g in group_expert_group]
        sets += [set(range(len(tasks)))] * num_global_experts
        expert_inputs = [rep_of_task[t] for t in task_owner] + group_expert_group + [num_groups] * num_global_experts
        names = [f"{tasks[t]}_expert" for t in task_owner]
        names += [f"{self.group_names[g]}_expert" for g in group_expert_group]
        names += [f"global{i}" for i in range(num_global_experts)]
        task_self = torch.tensor([[o == t for o in owners] for t in range(len(tasks))])
        top = ExtractionLayer(
            d_hidden,
            d_hidden,
            expert_inputs=expert_inputs,
            gate_inputs=rep_of_task,
            scope=scopes(sets, range(len(tasks))),
            self_scope=task_self if self_gate and num_task_experts else None,
            gate_names=tasks,
            expert_names=names,
            expert_owner=owners,
            **common,
        )
        self.levels = nn.ModuleList([meta, top])
        self._build_towers(d_hidden)

    def represent(self, x: Tensor) -> Tensor:
        """Per-task representations ``[T, B, H]``."""
        reps = x.unsqueeze(0)
        for level in self.levels:
            reps = level(reps)
        return reps

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return (
            f"task_groups={self.task_groups}, expert_norm={self.expert_norm!r}, activation={self.activation!r}, "
            f"hierarchy_mask={self.hierarchy_mask}, feature_gate={self.feature_gate}, self_gate={self.self_gate}"
        )
