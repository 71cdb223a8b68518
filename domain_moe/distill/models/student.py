"""The concentrated student: one backbone, a KC head and self-paced vertical scales."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from domain_moe.distill.models.pace import VerticalPace
from domain_moe.distill.models.sc_head import SCHead
from domain_moe.distill.verticals import check_verticals

__all__ = ["ConcentrationStudent"]


class ConcentrationStudent(nn.Module):
    """``pace(head(backbone(x)))``: the single generalist network of Knowledge Concentration.

    Gao et al., "Knowledge Concentration: Learning 100K Object Classifiers in a Single CNN" (arXiv 1711.07607,
    2017): a backbone producing pooled features, a structurally connected head (:class:`SCHead`) and
    vertical-level self-paced scales on L2-normalised logit blocks (:class:`VerticalPace`). The same module,
    trained on hard labels only, is the generalist baseline of the same architecture.

    Args:
        backbone: any module mapping the input to pooled features ``[B, s_b]`` (``ConvNet(num_classes=0)``,
            ``TimmNet(..., num_classes=0)``, an MLP for tabular data).
        verticals: the classes of each vertical (a partition of ``range(N)``).
        head: ``"linear"``, ``"fc"``, ``"fc_sc"`` or ``"sc_sc"`` (see :class:`SCHead`).
        shared_width: ``s1`` of the head.
        block_width: ``s2`` of the head.
        pace: ``"learned"``, ``"fixed"`` or ``"none"`` (see :class:`VerticalPace`).
        pace_init: initial scale (``None``: ``sqrt(N_v)``).
        pace_level: ``"vertical"`` or ``"class"``.
        in_features: ``s_b``; ``None`` reads ``backbone.num_features``.
        dropout: dropout before the head's last layer.

    Shapes:
        - x: the backbone's input, ``[B, ...]``
        - output: ``[B, N]`` logits

    Example:
        >>> import torch
        >>> from domain_moe.distill.models.convnet import ConvNet
        >>> student = ConcentrationStudent(ConvNet(1, 0, widths=(4, 8)), [[0, 2], [1]], shared_width=8,
        ...                                block_width=4)
        >>> student(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        backbone: nn.Module,
        verticals: Sequence[Sequence[int]],
        head: str = "fc_sc",
        shared_width: int = 128,
        block_width: int = 32,
        pace: str = "learned",
        pace_init: float | None = None,
        pace_level: str = "vertical",
        in_features: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        checked = check_verticals(verticals)
        width = in_features if in_features is not None else getattr(backbone, "num_features", None)
        if width is None:
            raise TypeError(f"in_features is needed: backbone {type(backbone).__name__} has no num_features attribute")
        self.backbone = backbone
        self.verticals = checked
        self.num_classes = sum(len(v) for v in checked)
        self.head = SCHead(int(width), checked, head, shared_width, block_width, dropout)
        self.pace = VerticalPace(checked, mode=pace, init=pace_init, level=pace_level)

    def reset_parameters(self) -> None:
        """Reset the backbone (where it can), the head and the scales."""
        reset = getattr(self.backbone, "reset_parameters", None)
        if callable(reset):
            reset()
        self.head.reset_parameters()
        self.pace.reset_parameters()

    def pace_parameters(self) -> list[nn.Parameter]:
        """The learned scales (to exclude from weight decay)."""
        return [self.pace.gamma] if isinstance(self.pace.gamma, nn.Parameter) else []

    def forward(self, x: Tensor) -> Tensor:
        """Logits over all classes."""
        return self.pace(self.head(self.backbone(x)))
