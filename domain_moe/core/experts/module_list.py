"""A container for arbitrary, possibly heterogeneous ``nn.Module`` experts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from domain_moe.core.dispatch.reference import gather_rows, rows_from_all_experts
from domain_moe.core.experts.base import Experts
from domain_moe.core.types import DispatchPlan

__all__ = ["ModuleListExperts"]


class ModuleListExperts(Experts):
    """Any modules as experts: conv stacks, differently sized MLPs, GNNs, pretrained networks.

    Row-wise experts (``row_wise=True``: a token's output depends on that token only) run on the rows
    routed to them (``torch_loop``). Experts that are not row-wise, such as GNN layers called as
    ``expert(x, edge_index)``, run on every token (``dense_all``) and the routed rows are picked from
    their outputs; keyword arguments of the MoE call are passed to every expert.

    Args:
        experts: the expert modules, each mapping ``[R, D]`` (plus ``**kwargs``) to ``[R, D_out]``.
        d_model: input width ``D``.
        d_out: output width every expert must produce (default ``d_model``).
        row_wise: whether each expert is row-wise.

    Shapes:
        - x: ``[T, D]``
        - output: ``[A, D_out]`` in plan order

    Example:
        >>> from torch import nn
        >>> ffn = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
        >>> experts = ModuleListExperts([nn.Linear(8, 8), ffn], d_model=8)
        >>> experts.num_experts
        2
    """

    def __init__(
        self,
        experts: Sequence[nn.Module],
        d_model: int,
        d_out: int | None = None,
        row_wise: bool = True,
    ) -> None:
        if len(experts) == 0:
            raise ValueError("experts must hold at least one module, got an empty sequence")
        for i, expert in enumerate(experts):
            if not isinstance(expert, nn.Module):
                raise TypeError(f"experts[{i}] must be an nn.Module, got {type(expert).__name__}")
        super().__init__(len(experts), d_model, d_model if d_out is None else d_out)
        self.experts = nn.ModuleList(experts)
        self.row_wise = row_wise
        self.supported_backends = ("torch_loop", "dense_all") if row_wise else ("dense_all",)
        self.preferred_backend = None if row_wise else "dense_all"

    def reset_parameters(self) -> None:
        """Reset every expert that has ``reset_parameters``."""
        for expert in self.experts:
            reset = getattr(expert, "reset_parameters", None)
            if callable(reset):
                reset()

    def _checked(self, expert: int, out: Tensor, rows: int) -> Tensor:
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape != (rows, self.d_out):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"experts[{expert}] must map [{rows}, {self.d_model}] to [{rows}, d_out={self.d_out}], got {got}"
            )
        return out

    def forward_expert(self, expert: int, x: Tensor, **kwargs: Any) -> Tensor:
        """Run ``experts[expert]`` on rows ``x``."""
        return self._checked(expert, self.experts[expert](x, **kwargs), x.shape[0])

    def forward(
        self,
        x: Tensor,
        plan: DispatchPlan,
        backend: str,
        capacity: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Expert outputs for the plan's rows; see :class:`Experts`."""
        if backend == "dense_all":
            outs = [self.forward_expert(e, x, **kwargs) for e in range(self.num_experts)]
            return rows_from_all_experts(torch.stack(outs), plan)
        if backend != "torch_loop" or not self.row_wise:
            raise ValueError(f"ModuleListExperts(row_wise={self.row_wise}) cannot run on backend={backend!r}")
        rows = gather_rows(x, plan)
        bounds = plan.expert_offsets.tolist()
        # An expert with no rows is not called: modules such as BatchNorm reject empty batches.
        pieces = [
            self.forward_expert(e, rows[bounds[e] : bounds[e + 1]], **kwargs)
            if bounds[e + 1] > bounds[e]
            else rows.new_zeros(0, self.d_out)
            for e in range(self.num_experts)
        ]
        pieces.append(rows.new_zeros(plan.num_rows - bounds[-1], self.d_out))
        return torch.cat(pieces, 0)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"{super().extra_repr()}, row_wise={self.row_wise}"
