"""Self-paced scales on L2-normalised per-vertical logit blocks (Gao et al., arXiv 1711.07607, §3.4)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from domain_moe.distill.verticals import check_verticals

__all__ = ["VerticalPace"]

PACE_MODES = ("learned", "fixed", "none")


class VerticalPace(nn.Module):
    """``y_v = gamma_v * x_v / ||x_v||``: each vertical's logits normalised, then scaled by its own pace.

    Knowledge Concentration's self-paced learning (Gao et al., 2017): the scale ``gamma_v`` sets both the
    sharpness and the gradient size of vertical ``v``'s logits, so a learned ``gamma_v`` lets the student learn
    each teacher's vertical at its own pace. The norm is taken per sample over the ``N_v`` logits of the
    vertical. The paper's best variant is vertical-level, learned, initialised at ``sqrt(N_v)`` (a normalised
    entry is about ``1/sqrt(N_v)``); ``level="class"`` learns one scale per class instead. ``mode="none"`` is the
    identity (no normalisation). Exclude :attr:`gamma` from weight decay.

    Args:
        verticals: the classes of each vertical (a partition of ``range(N)``).
        mode: ``"learned"`` (trainable scale), ``"fixed"`` (constant scale) or ``"none"``.
        init: initial scale for every vertical; ``None`` gives ``sqrt(N_v)``.
        level: ``"vertical"`` (one scale per vertical) or ``"class"`` (one per class).
        eps: added to the squared norm.

    Shapes:
        - logits, output: ``[B, N]``
        - gamma: ``[M]`` (vertical level) or ``[N]`` (class level)

    Example:
        >>> import torch
        >>> pace = VerticalPace([[0, 1, 2, 3], [4]])
        >>> pace.vertical_gamma().tolist()
        [2.0, 1.0]
        >>> y = pace(torch.randn(3, 5))
        >>> y[:, :4].norm(dim=1)  # the norm of a block is its gamma
        tensor([2.0000, 2.0000, 2.0000], grad_fn=<LinalgVectorNormBackward0>)
    """

    def __init__(
        self,
        verticals: Sequence[Sequence[int]],
        mode: str = "learned",
        init: float | None = None,
        level: str = "vertical",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        checked = check_verticals(verticals)
        if mode not in PACE_MODES:
            raise ValueError(f"mode must be one of {PACE_MODES}, got {mode!r}")
        if level not in ("vertical", "class"):
            raise ValueError(f"level must be 'vertical' or 'class', got {level!r}")
        if init is not None and (isinstance(init, bool) or not isinstance(init, (int, float)) or init <= 0):
            raise ValueError(f"init must be None or a number > 0, got {init!r}")
        num_classes = sum(len(v) for v in checked)
        one_hot = torch.zeros(num_classes, len(checked))
        for v, classes in enumerate(checked):
            one_hot[classes, v] = 1.0
        self.register_buffer("assignment", one_hot, persistent=False)
        self.mode = mode
        self.level = level
        self.init = init
        self.eps = eps
        self.sizes = [len(v) for v in checked]
        size = len(checked) if level == "vertical" else num_classes
        if mode == "learned":
            self.gamma: Tensor | None = nn.Parameter(torch.empty(size))
        elif mode == "fixed":
            self.register_buffer("gamma", torch.empty(size))
        else:
            self.gamma = None
        self.reset_parameters()

    def initial_gamma(self) -> Tensor:
        """The scale at initialisation (``init`` or ``sqrt(N_v)``), per vertical or per class."""
        per_vertical = torch.tensor([self.init if self.init is not None else math.sqrt(n) for n in self.sizes])
        if self.level == "vertical":
            return per_vertical
        return self.assignment.cpu() @ per_vertical

    def reset_parameters(self) -> None:
        """Set the scales to :meth:`initial_gamma`."""
        if self.gamma is not None:
            with torch.no_grad():
                self.gamma.copy_(self.initial_gamma())

    def vertical_gamma(self) -> Tensor:
        """The current scale per vertical (the mean over the vertical's classes at class level)."""
        if self.gamma is None:
            return torch.full((len(self.sizes),), float("nan"))
        g = self.gamma.detach()
        if self.level == "vertical":
            return g.clone()
        return (g @ self.assignment) / self.assignment.sum(0)

    def forward(self, logits: Tensor) -> Tensor:
        """Normalise and scale each vertical's block of ``logits``."""
        if self.gamma is None:
            return logits
        if logits.dim() != 2 or logits.shape[1] != self.assignment.shape[0]:
            raise ValueError(f"logits must have shape [B, N={self.assignment.shape[0]}], got {tuple(logits.shape)}")
        assignment = self.assignment.to(logits.dtype)
        # A matmul with the class->vertical one-hot matrix sums each block deterministically (no scatter).
        norms = ((logits.square() @ assignment) + self.eps).sqrt() @ assignment.T
        gamma = self.gamma.to(logits.dtype)
        scale = gamma @ assignment.T if self.level == "vertical" else gamma
        return logits / norms * scale

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"sizes={self.sizes}, mode={self.mode!r}, level={self.level!r}, init={self.init}"
