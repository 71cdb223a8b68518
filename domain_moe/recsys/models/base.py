"""The common frame of the multi-task models: input part -> body -> task towers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from domain_moe.recsys.models.extraction import ExtractionLayer
from domain_moe.recsys.models.inputs import FeatureEmbedding
from domain_moe.recsys.models.towers import Towers

__all__ = ["MultiTaskModel"]


def check_task_names(task_names: Sequence[str]) -> list[str]:
    """Validated list of task names (non-empty, unique strings)."""
    if isinstance(task_names, str):
        raise TypeError(f"task_names must be a sequence of names, got the string {task_names!r}")
    names = list(task_names)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"task_names must be a non-empty list of non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"task_names must be unique, got {names!r}")
    return names


class MultiTaskModel(nn.Module, ABC):
    """Base of the multi-task ranking models: ``logits = towers(body(embedding(dense, sparse)))``.

    Subclasses build :attr:`body` parts in ``__init__`` and implement :meth:`represent` (one representation
    per task, or one shared by all tasks). The parts are named so that they can be swapped or inspected:
    ``embedding`` (:class:`FeatureEmbedding`), the body, and ``towers`` (:class:`Towers`).

    Args:
        task_names: the tasks, in output column order.
        cardinalities: vocabulary size of each categorical field.
        num_dense: number of dense features.
        embed_dim: embedding width of each categorical field.
        tower_hidden: hidden widths of every task tower.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - dense: ``[B, num_dense]``, sparse: ``[B, F]``
        - output: ``[B, T]`` logits
    """

    def __init__(
        self,
        task_names: Sequence[str],
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        tower_hidden: Sequence[int] = (8,),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.task_names = check_task_names(task_names)
        self.embedding = FeatureEmbedding(cardinalities, num_dense, embed_dim, device=device, dtype=dtype)
        self.tower_hidden = list(tower_hidden)
        self._factory = {"device": device, "dtype": dtype}

    @property
    def num_tasks(self) -> int:
        """Tasks ``T``."""
        return len(self.task_names)

    def _build_towers(self, d_model: int) -> None:
        self.towers = Towers(self.num_tasks, d_model, self.tower_hidden, **self._factory)

    @abstractmethod
    def represent(self, x: Tensor) -> Tensor:
        """Task representations ``[T, B, H]`` (or ``[B, H]`` shared by all tasks) from the input ``[B, D]``."""

    def extraction_layers(self) -> list[tuple[str, ExtractionLayer]]:
        """The model's multi-gate layers with their module paths (for expert-health diagnostics)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, ExtractionLayer)]

    def reset_parameters(self) -> None:
        """Reset every part."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, dense: Tensor | None = None, sparse: Tensor | None = None) -> Tensor:
        """Logits ``[B, T]``; see the class docstring."""
        return self.towers(self.represent(self.embedding(dense, sparse)))

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"task_names={self.task_names}"
