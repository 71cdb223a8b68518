"""A small plain CNN: the cheap image backbone of the distillation benchmark (2-core CPU budget)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ConvNet"]


class ConvNet(nn.Module):
    """Stages of ``Conv3x3 -> BatchNorm -> ReLU`` with 2x2 max-pooling between stages, global average pool.

    A capacity-limited student or a cheap specialist for Knowledge Concentration (Gao et al., arXiv
    1711.07607, 2017) on 28x28 images, where timm's smallest ResNets cost several times more per step.

    Args:
        in_chans: input channels.
        num_classes: classifier outputs; ``0`` returns the pooled features (width :attr:`num_features`).
        widths: channels of each stage.
        pool: output grid of the final average pool; ``(1, 1)`` is global pooling, ``(1, 2)`` keeps the left
            and right halves apart (pair canvases, where position decides the label).
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[B, in_chans, H, W]``
        - output: ``[B, num_classes]`` or ``[B, widths[-1] * pool[0] * pool[1]]`` when ``num_classes == 0``

    Example:
        >>> import torch
        >>> net = ConvNet(in_chans=1, num_classes=0, widths=(4, 8))
        >>> net(torch.randn(2, 1, 28, 28)).shape, net.num_features
        (torch.Size([2, 8]), 8)
    """

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 0,
        widths: Sequence[int] = (16, 32, 64),
        pool: Sequence[int] = (1, 1),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        widths = list(widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
        pool = tuple(pool)
        if len(pool) != 2 or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in pool):
            raise ValueError(f"pool must be two positive ints, got {pool}")
        factory = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        prev = in_chans
        for i, width in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(prev, width, 3, padding=1, bias=False, **factory), nn.BatchNorm2d(width, **factory)]
            layers.append(nn.ReLU(inplace=True))
            prev = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(pool), nn.Flatten())
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = prev * pool[0] * pool[1]
        self.classifier = nn.Linear(self.num_features, num_classes, **factory) if num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convolutions, unit BatchNorm, ``nn.Linear``'s default classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.Linear)):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Features or logits of images ``x``."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"x must have shape [B, in_chans={self.in_chans}, H, W], got {tuple(x.shape)}")
        return self.classifier(self.features(x))
