"""Any timm image model as a specialist or a student backbone."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from domain_moe.utils.imports import require

__all__ = ["TimmNet"]


class TimmNet(nn.Module):
    """``timm.create_model(model_name, ...)`` behind a typed constructor, so configs can name it.

    Teachers of Knowledge Concentration (Gao et al., arXiv 1711.07607, 2017) are arbitrary classifiers; timm
    provides the image ones. With ``num_classes=0`` the model returns pooled features of width
    :attr:`num_features`, the student backbone.

    Args:
        model_name: a timm model name (``"test_resnet"``, ``"resnet10t"``, ...).
        num_classes: classifier outputs (``0``: pooled features).
        in_chans: input channels.
        pretrained: load timm's pretrained weights (needs the network or a local cache).
        model_kwargs: further keyword arguments of ``timm.create_model``.

    Shapes:
        - x: ``[B, in_chans, H, W]``
        - output: ``[B, num_classes]`` or ``[B, num_features]``

    Example:
        >>> import torch
        >>> net = TimmNet("test_resnet", num_classes=3, in_chans=1)
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int = 0,
        in_chans: int = 1,
        pretrained: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        timm = require("timm", extra="distill", feature="domain_moe.distill.models.TimmNet")
        if model_name not in timm.list_models() and not timm.is_model(model_name):
            raise ValueError(f"model_name must be a timm model (see timm.list_models()), got {model_name!r}")
        self.net = timm.create_model(
            model_name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **(model_kwargs or {})
        )
        self.model_name = model_name
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = int(self.net.num_features)

    def reset_parameters(self) -> None:
        """Re-initialise every submodule that can."""
        for m in self.net.modules():
            if m is not self and callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Logits or pooled features of images ``x``."""
        return self.net(x)
