"""Frozen specialist teachers, one per vertical, selected by the ground-truth label's vertical."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from domain_moe.core.dispatch import build_plan, combine
from domain_moe.core.experts import ModuleListExperts
from domain_moe.core.routing.fixed import fixed_decision
from domain_moe.distill.verticals import check_verticals

__all__ = ["TeacherEnsemble", "load_module_weights"]


def _resolve_checkpoint(path: str | os.PathLike[str]) -> Path | None:
    """A file as is; a directory gives its newest ``*.ckpt`` (searched recursively), or ``None``."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        found = sorted(p.rglob("*.ckpt"), key=lambda f: (f.stat().st_mtime, str(f)))
        return found[-1] if found else None
    return None


def load_module_weights(module: nn.Module, path: str | os.PathLike[str], prefix: str = "model.") -> None:
    """Load weights from a Lightning checkpoint (keys under ``prefix``) or a plain ``state_dict`` file.

    ``path`` may be a directory: its newest ``*.ckpt`` (recursively) is loaded, so a config can name the
    ``default_root_dir`` of a specialist run.

    Raises:
        FileNotFoundError: no such file, or a directory without checkpoints.
    """
    resolved = _resolve_checkpoint(path)
    if resolved is None:
        raise FileNotFoundError(
            f"no checkpoint at {os.fspath(path)!r}: train the specialist first (SpecialistTask, e.g. "
            "`domain-moe-distill fit --config configs/distill/specialist_fashion_tops.yaml`)"
        )
    obj = torch.load(resolved, map_location="cpu", weights_only=True)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    module.load_state_dict(state)


class _VerticalTeacher(nn.Module):
    """A teacher over ``N_v`` classes whose sigmoid outputs are placed at its vertical's columns of ``N``."""

    def __init__(self, teacher: nn.Module, classes: Sequence[int], num_classes: int, index: int) -> None:
        super().__init__()
        self.teacher = teacher
        self.index = index
        self.width = len(classes)
        placement = torch.zeros(len(classes), num_classes)
        placement[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
        self.register_buffer("placement", placement, persistent=False)

    def logits(self, x: Tensor) -> Tensor:
        out = self.teacher(x)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[1] != self.width:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"teachers[{self.index}] must output [B, N_v={self.width}] logits for its vertical, got {got}"
            )
        return out

    def forward(
        self, x: Tensor, input_shape: Sequence[int] = (), temperature: float = 1.0, activation: str = "sigmoid"
    ) -> Tensor:
        scaled = self.logits(x.reshape(x.shape[0], *input_shape)) / temperature
        probs = torch.sigmoid(scaled) if activation == "sigmoid" else scaled.softmax(1)
        return probs @ self.placement.to(probs.dtype)


class TeacherEnsemble(nn.Module):
    """Frozen specialists: each sample is run through the teacher of its label's vertical, and only it.

    Knowledge Concentration (Gao et al., arXiv 1711.07607, 2017, §3.2) selects the teacher by the ground-truth
    vertical. Here that is a fixed routing (:func:`~domain_moe.core.routing.fixed.fixed_decision`) over a
    :class:`~domain_moe.core.experts.ModuleListExperts` of the teachers, so a teacher never sees another
    vertical's samples. The output is the selected teacher's sigmoid probabilities (logits divided by
    ``temperature``; or its softmax over the vertical) at its vertical's columns and 0 elsewhere. Teachers are
    frozen: ``requires_grad_(False)``, and :meth:`train` keeps them in eval mode (BatchNorm statistics and dropout
    untouched) whatever the parent module does. Teachers can be any module mapping an input batch to ``[B, N_v]``
    logits.

    Args:
        teachers: one module per vertical, in the order of ``verticals``.
        verticals: the classes of each vertical (a partition of ``range(N)``).
        temperature: divides the teacher logits before the sigmoid (``1``: the paper).
        checkpoints: optional weight files or run directories (newest ``*.ckpt``), one per teacher (``None``
            entries are skipped): checkpoints of :class:`~domain_moe.distill.tasks.SpecialistTask` or plain
            state dicts.
        activation: ``"sigmoid"`` (the paper's multi-label teachers) or ``"softmax"`` over the teacher's own
            ``N_v`` classes (teachers trained with softmax cross-entropy).
        require_checkpoints: raise when a checkpoint is missing; ``False`` warns and keeps the teacher's
            current (untrained) weights, so a config can be smoke-run before its specialists exist.

    Shapes:
        - x: ``[B, ...]`` (any trailing shape the teachers take)
        - vertical: ``[B]`` (int; ``-1`` selects no teacher)
        - output: ``[B, N]``

    Example:
        >>> import torch
        >>> from torch import nn
        >>> ens = TeacherEnsemble([nn.Linear(4, 2), nn.Linear(4, 1)], verticals=[[0, 2], [1]])
        >>> probs = ens(torch.randn(3, 4), torch.tensor([0, 1, 0]))
        >>> probs.shape, bool(probs[1, 0] == 0), ens.training
        (torch.Size([3, 3]), True, False)
    """

    def __init__(
        self,
        teachers: Sequence[nn.Module],
        verticals: Sequence[Sequence[int]],
        temperature: float = 1.0,
        checkpoints: Sequence[str | None] | None = None,
        activation: str = "sigmoid",
        require_checkpoints: bool = True,
    ) -> None:
        super().__init__()
        checked = check_verticals(verticals)
        if isinstance(teachers, nn.Module) or not isinstance(teachers, Sequence):
            raise TypeError(f"teachers must be a sequence of nn.Modules, got {type(teachers).__name__}")
        if len(teachers) != len(checked):
            raise ValueError(f"teachers must hold one module per vertical ({len(checked)}), got {len(teachers)}")
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        for i, (teacher, classes) in enumerate(zip(teachers, checked, strict=True)):
            if not isinstance(teacher, nn.Module):
                raise TypeError(f"teachers[{i}] must be an nn.Module, got {type(teacher).__name__}")
            width = getattr(teacher, "num_classes", None)
            if isinstance(width, int) and width != len(classes):
                raise ValueError(
                    f"teachers[{i}] has num_classes={width} but its vertical {i} has N_v={len(classes)} classes"
                )
        if checkpoints is not None:
            if len(checkpoints) != len(teachers):
                raise ValueError(
                    f"checkpoints must hold one path per teacher ({len(teachers)}), got {len(checkpoints)}"
                )
            for teacher, path in zip(teachers, checkpoints, strict=True):
                if path is None:
                    continue
                if require_checkpoints or _resolve_checkpoint(path) is not None:
                    load_module_weights(teacher, path)
                else:
                    warnings.warn(
                        f"TeacherEnsemble: no checkpoint at {path!r}; this teacher keeps untrained weights "
                        "(train the specialists first)",
                        stacklevel=2,
                    )
        self.verticals = checked
        self.num_classes = sum(len(v) for v in checked)
        self.temperature = float(temperature)
        self.activation = activation
        wrapped = [_VerticalTeacher(t, c, self.num_classes, i) for i, (t, c) in enumerate(zip(teachers, checked))]
        # d_model is a placeholder: teachers take whole samples, flattened into rows for the dispatch.
        self.experts = ModuleListExperts(wrapped, d_model=1, d_out=self.num_classes)
        self.requires_grad_(False)
        self.train(False)

    @property
    def teachers(self) -> list[nn.Module]:
        """The teacher modules, in vertical order."""
        return [w.teacher for w in self.experts.experts]  # type: ignore[union-attr]

    def train(self, mode: bool = True) -> TeacherEnsemble:
        """Stay in eval mode: frozen teachers keep their BatchNorm statistics and run without dropout."""
        return super().train(False)

    def forward(self, x: Tensor, vertical: Tensor) -> Tensor:
        """Probabilities of the teacher of each sample's vertical, placed into ``N`` classes."""
        if vertical.shape != (x.shape[0],):
            raise ValueError(f"vertical must have shape [B]=[{x.shape[0]}], got {tuple(vertical.shape)}")
        rows = x.reshape(x.shape[0], -1)
        decision = fixed_decision(vertical, len(self.verticals))
        weight = decision.topk_w.to(rows.dtype)
        plan = build_plan(decision.topk_idx, weight, len(self.verticals))
        kwargs: dict[str, Any] = {
            "input_shape": tuple(x.shape[1:]),
            "temperature": self.temperature,
            "activation": self.activation,
        }
        with torch.no_grad():
            out = combine(self.experts(rows, plan, "torch_loop", **kwargs), weight, plan)
        return out

    def vertical_logits(self, x: Tensor, index: int) -> Tensor:
        """Raw ``[B, N_v]`` logits of teacher ``index`` on every sample of ``x`` (for evaluation)."""
        with torch.no_grad():
            return self.experts.experts[index].logits(x)  # type: ignore[operator]
