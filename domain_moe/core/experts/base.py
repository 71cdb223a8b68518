"""The expert-container interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor, nn

from domain_moe.core.types import DispatchPlan

__all__ = ["Experts"]


class Experts(nn.Module, ABC):
    """Base class of expert containers.

    A container computes every expert on the rows the plan assigns to it and returns the outputs in
    plan order (grouped rows); the MoE layer then combines them per token. Subclasses declare which
    backends they can run on, and whether each expert is row-wise (a token's output depends on that
    token only) — experts that are not (GNN experts needing ``edge_index``) only run on ``dense_all``.

    Args:
        num_experts: ``E``.
        d_model: input width ``D``.
        d_out: output width ``D_out``.

    Shapes:
        - x: ``[T, D]``
        - output: ``[A, D_out]`` in plan order (trash rows are zero)
    """

    #: Backends this container implements.
    supported_backends: tuple[str, ...] = ("torch_loop", "dense_all")
    #: Backend this container would choose under ``"auto"``, or ``None``.
    preferred_backend: str | None = None

    def __init__(self, num_experts: int, d_model: int, d_out: int) -> None:
        super().__init__()
        for name, value in (("num_experts", num_experts), ("d_model", d_model), ("d_out", d_out)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_experts = num_experts
        self.d_model = d_model
        self.d_out = d_out

    def backend_reasons(self, x: Tensor) -> dict[str, str | None]:
        """Per backend, why it cannot run on ``x`` (``None`` = it can). Default: all supported can."""
        return {}

    @abstractmethod
    def forward(
        self,
        x: Tensor,
        plan: DispatchPlan,
        backend: str,
        capacity: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Expert outputs for the plan's rows.

        Args:
            x: token rows (not yet permuted; the container gathers, possibly fused).
            plan: the dispatch plan.
            backend: a concrete backend from :attr:`supported_backends`.
            capacity: rows per expert bound for ``bmm`` (``None`` = ``T``).
            **kwargs: passed to every expert (e.g. ``edge_index`` for graph experts).

        Shapes:
            - x: ``[T, D]``
            - output: ``[A, D_out]``
        """

    @abstractmethod
    def forward_expert(self, expert: int, x: Tensor, **kwargs: Any) -> Tensor:
        """Run one expert on rows: the definition the oracle and the loop use.

        Shapes:
            - x: ``[R, D]``
            - output: ``[R, D_out]``
        """

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"num_experts={self.num_experts}, d_model={self.d_model}, d_out={self.d_out}"
