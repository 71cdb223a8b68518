"""An expert trunk with the head of its own task, for expert pretraining."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.vision.experts import TimmExpert

__all__ = ["EXPERT_TASKS", "ExpertNetwork"]

#: Tasks an expert can be trained for.
EXPERT_TASKS = ("classification", "presence", "segmentation", "detection", "captioning")


class ExpertNetwork(nn.Module):
    """A :class:`TimmExpert` trunk plus the head of its task (see :mod:`domain_moe.vision.heads`).

    With ``img_size`` the image is resized first (the base sees a low-resolution canvas, the experts the full
    one, as in MoVA). Captioning heads take the caption for teacher forcing.

    Args:
        trunk: the expert's timm trunk.
        head: the task head (classification/presence: ``ClassificationHead``; segmentation:
            ``SegmentationHead``; detection: ``DetectionHead``; captioning: ``CaptionDecoder``).
        task: one of :data:`EXPERT_TASKS`.
        img_size: side the input is resized to before the trunk (``None`` = as given; a classification expert
            trained on 28 px items then runs on 64 px canvases in the pool, being fully convolutional).

    Shapes:
        - image: ``[B, in_chans, H, W]``
        - output: the head's output

    Example:
        >>> import torch
        >>> from domain_moe.vision.heads import ClassificationHead
        >>> trunk = TimmExpert("test_resnet", 3, img_size=28)
        >>> net = ExpertNetwork(trunk, ClassificationHead(trunk.channels, 10), "classification")
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, trunk: TimmExpert, head: nn.Module, task: str = "classification", img_size: int | None = None
    ) -> None:
        super().__init__()
        if task not in EXPERT_TASKS:
            raise ValueError(f"task must be one of {EXPERT_TASKS}, got {task!r}")
        self.trunk = trunk
        self.head = head
        self.task = task
        self.img_size = img_size

    def features(self, image: Tensor) -> Tensor:
        """The trunk's map on the image (resized to ``img_size`` when set)."""
        size = self.img_size
        if size is not None and (image.shape[-1] != size or image.shape[-2] != size):
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)
        return self.trunk(image)

    def forward(self, image: Tensor, caption: Tensor | None = None) -> Tensor | tuple[Tensor, ...]:
        """Head output on the trunk's features."""
        feats = self.features(image)
        if self.task == "captioning":
            if caption is None:
                raise ValueError("a captioning ExpertNetwork needs the caption for teacher forcing")
            return self.head(feats, caption)
        return self.head(feats)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"task={self.task!r}"
