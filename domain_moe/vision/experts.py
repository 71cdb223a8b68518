"""Vision experts on timm: a trunk that returns one feature map, alignment to the base grid, a frozen pool.

MoVA (Zong et al., NeurIPS 2024) fuses frozen experts whose feature maps differ in stride and width; each map
is resized bilinearly to the base encoder's grid (``F_hat_j = Interpolate(F_j, H, W)``) and, where a common
width is needed, projected. Any timm model name works (``pretrained=True`` downloads weights when online); the
shipped configs train small ``test_*`` models from scratch.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.utils.imports import require

__all__ = [
    "ExpertPool",
    "FeatureAligner",
    "TimmExpert",
    "align_to_grid",
    "base_tokens_of",
    "cached_expert_tokens",
    "load_expert",
    "save_expert",
]


def align_to_grid(feature_map: Tensor, grid: int) -> Tensor:
    """Resize a feature map bilinearly to ``grid x grid`` and flatten it to tokens (MoVA's feature alignment).

    Args:
        feature_map: expert features ``[B, C_j, H_j, W_j]``.
        grid: side ``g`` of the base grid.

    Returns:
        Tokens ``[B, g * g, C_j]`` in row-major grid order.

    Example:
        >>> align_to_grid(torch.ones(2, 5, 4, 4), 8).shape
        torch.Size([2, 64, 5])
    """
    if feature_map.dim() != 4:
        raise ValueError(f"feature_map must be [B, C, H, W], got shape {tuple(feature_map.shape)}")
    if feature_map.shape[-2:] != (grid, grid):
        feature_map = F.interpolate(feature_map, size=(grid, grid), mode="bilinear", align_corners=False)
    return feature_map.flatten(2).transpose(1, 2)


class TimmExpert(nn.Module):
    """A timm trunk returning the feature map of one stage (``features_only=True``).

    The constructor checks the model name against timm's registry and runs one probe forward at ``img_size``,
    so an unknown model or an image the trunk cannot take (e.g. ``test_convnext`` below 32 px) fails at once
    with a clear error instead of deep inside training.

    Args:
        model_name: a timm model name (``timm.list_models()``).
        out_index: stage whose map is returned (negative counts from the last stage).
        in_chans: input channels.
        img_size: input side the expert will see (checked by a probe forward).
        pretrained: load timm's pretrained weights (downloads; off in the shipped configs).
        model_kwargs: extra keyword arguments for ``timm.create_model`` (``patch_size`` for ViTs, ...).
        checkpoint: a file written by :func:`save_expert` whose weights are loaded (a trained expert).

    Shapes:
        - x: ``[B, in_chans, img_size, img_size]``
        - output: ``[B, channels, img_size / reduction, img_size / reduction]``

    Example:
        >>> expert = TimmExpert("test_resnet", out_index=3, img_size=64)
        >>> expert.channels, expert.reduction, tuple(expert(torch.zeros(2, 1, 64, 64)).shape)
        (192, 16, (2, 192, 4, 4))
    """

    def __init__(
        self,
        model_name: str,
        out_index: int = -1,
        in_chans: int = 1,
        img_size: int = 64,
        pretrained: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        timm = require("timm", extra="vision", feature="domain_moe.vision")
        if not isinstance(model_name, str) or not timm.is_model(model_name):
            close = difflib.get_close_matches(str(model_name), timm.list_models(), n=3)
            hint = f"; close matches: {close}" if close else ""
            raise ValueError(f"model_name must be a timm model name (timm.list_models()), got {model_name!r}{hint}")
        kwargs = dict(model_kwargs or {})
        self.model_name = model_name
        self.in_chans = in_chans
        self.img_size = img_size
        self.model_kwargs = kwargs
        probe = timm.create_model(model_name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs)
        num_stages = len(probe.feature_info.channels())
        if not -num_stages <= out_index < num_stages:
            raise ValueError(f"out_index must be in [-{num_stages}, {num_stages}) for {model_name}, got {out_index}")
        self.out_index = out_index % num_stages
        self.trunk = timm.create_model(
            model_name,
            pretrained=pretrained,
            features_only=True,
            out_indices=(self.out_index,),
            in_chans=in_chans,
            **kwargs,
        )
        self.channels = int(self.trunk.feature_info.channels()[0])
        self.reduction = int(self.trunk.feature_info.reduction()[0])
        try:
            with torch.no_grad():
                out = self.trunk.eval()(torch.zeros(1, in_chans, img_size, img_size))[0]
        except (RuntimeError, AssertionError, ValueError) as err:
            raise ValueError(
                f"img_size={img_size} is an image size {model_name} cannot take (expected a larger or "
                f"model-compatible size, e.g. >= 32 px for ConvNeXt stems); timm said: {err}"
            ) from err
        self.trunk.train()
        self.out_size = int(out.shape[-1])
        if checkpoint is not None:
            if not os.path.exists(checkpoint):
                raise FileNotFoundError(f"expert checkpoint not found: {checkpoint} (write it with save_expert)")
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
            self.load_state_dict(saved["state_dict"])

    def forward(self, x: Tensor) -> Tensor:
        """The chosen stage's feature map; see the class docstring."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{self.model_name}: x must be [B, in_chans={self.in_chans}, H, W], got shape {tuple(x.shape)}"
            )
        return self.trunk(x)[0]

    def config(self) -> dict[str, Any]:
        """Constructor arguments (without ``pretrained``), for :func:`save_expert`."""
        return {
            "model_name": self.model_name,
            "out_index": self.out_index,
            "in_chans": self.in_chans,
            "img_size": self.img_size,
            "model_kwargs": self.model_kwargs,
        }

    def freeze(self) -> TimmExpert:
        """Switch to eval mode and stop gradients (frozen experts stay frozen under ``.train()``)."""
        self.requires_grad_(False)
        self.frozen = True
        return self.eval()

    def train(self, mode: bool = True) -> TimmExpert:
        """Set training mode; a frozen expert stays in eval mode (its BatchNorm statistics never move)."""
        return super().train(mode and not getattr(self, "frozen", False))

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"model_name={self.model_name!r}, out_index={self.out_index}, channels={self.channels}"


def save_expert(expert: TimmExpert, path: str | os.PathLike[str]) -> None:
    """Save a trained expert (its constructor arguments and weights) for :func:`load_expert`."""
    torch.save({"config": expert.config(), "state_dict": expert.state_dict()}, path)


def load_expert(path: str | os.PathLike[str], *, frozen: bool = True) -> TimmExpert:
    """Rebuild an expert written by :func:`save_expert`, frozen by default.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"expert checkpoint not found: {path} (write it with save_expert)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    expert = TimmExpert(**saved["config"])
    expert.load_state_dict(saved["state_dict"])
    return expert.freeze() if frozen else expert


class FeatureAligner(nn.Module):
    """Align heterogeneous expert maps: bilinear resize to the base grid, then an optional linear projection.

    Args:
        channels: width ``C_j`` of each expert's map.
        grid: base grid side ``g``.
        d_model: common width after projection, or ``None`` to keep each expert's width.

    Shapes:
        - maps: list of ``[B, C_j, H_j, W_j]``
        - output: list of ``[B, g * g, d_model or C_j]``

    Example:
        >>> aligner = FeatureAligner([192, 32], grid=8, d_model=16)
        >>> [t.shape for t in aligner([torch.zeros(2, 192, 4, 4), torch.zeros(2, 32, 16, 16)])]
        [torch.Size([2, 64, 16]), torch.Size([2, 64, 16])]
    """

    def __init__(self, channels: Sequence[int], grid: int, d_model: int | None = None) -> None:
        super().__init__()
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.channels = [int(c) for c in channels]
        self.grid = grid
        self.d_model = d_model
        self.proj = (
            nn.ModuleList(nn.Linear(c, d_model) for c in self.channels) if d_model is not None else nn.ModuleList()
        )

    def reset_parameters(self) -> None:
        """Reset the projections."""
        for p in self.proj:
            p.reset_parameters()

    def align(self, index: int, feature_map: Tensor) -> Tensor:
        """Align the map of expert ``index``."""
        if feature_map.shape[1] != self.channels[index]:
            raise ValueError(
                f"expert {index} map must have {self.channels[index]} channels, got shape {tuple(feature_map.shape)}"
            )
        tokens = align_to_grid(feature_map, self.grid)
        return self.proj[index](tokens) if self.d_model is not None else tokens

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        """Align every map; see the class docstring."""
        if len(maps) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} maps, got {len(maps)}")
        return [self.align(i, m) for i, m in enumerate(maps)]


class ExpertPool(nn.Module):
    """Frozen experts behind one call that runs only the requested expert on only the requested samples.

    Each expert sees the image resized to its own ``img_size`` and returns its map aligned to the base grid
    (``[n, g * g, C_j]``). Experts are frozen (eval mode, no gradient), as in MoVA.

    Args:
        experts: the experts, in routing order.
        names: one name per expert (default ``expert0``, ``expert1``, ...).
        grid: base grid side ``g``.

    Shapes:
        - images: ``[B, in_chans, H, W]``
        - output of ``forward(images, j)``: ``[B, g * g, C_j]``

    Example:
        >>> pool = ExpertPool([TimmExpert("test_resnet", 3, img_size=64)], grid=8)
        >>> pool(torch.zeros(3, 1, 64, 64), 0).shape
        torch.Size([3, 64, 192])
    """

    def __init__(self, experts: Sequence[TimmExpert], names: Sequence[str] | None = None, grid: int = 8) -> None:
        super().__init__()
        if len(experts) == 0:
            raise ValueError("experts must hold at least one TimmExpert")
        for i, e in enumerate(experts):
            if not isinstance(e, TimmExpert):
                raise TypeError(f"experts[{i}] must be a TimmExpert, got {type(e).__name__}")
        names = list(names) if names is not None else [f"expert{i}" for i in range(len(experts))]
        if len(names) != len(experts):
            raise ValueError(f"names must have one entry per expert ({len(experts)}), got {len(names)}")
        self.names = names
        self.grid = grid
        self.experts = nn.ModuleList(e.freeze() for e in experts)

    @property
    def channels(self) -> list[int]:
        """Width ``C_j`` of each expert's map."""
        return [e.channels for e in self.experts]

    def __len__(self) -> int:
        return len(self.experts)

    def forward(self, images: Tensor, index: int) -> Tensor:
        """Aligned map of expert ``index`` on ``images``."""
        if not 0 <= index < len(self.experts):
            raise ValueError(f"index must be in [0, {len(self.experts)}), got {index}")
        expert = self.experts[index]
        if images.shape[-1] != expert.img_size:
            images = F.interpolate(
                images, size=(expert.img_size, expert.img_size), mode="bilinear", align_corners=False
            )
        with torch.no_grad():
            return align_to_grid(expert(images), self.grid)


def cached_expert_tokens(batch: dict[str, Any], num_experts: int) -> list[Tensor] | None:
    """Cached expert tokens of a batch: ``batch["expert_tokens"]`` or ``batch["expert_tokens_<j>"]``, else ``None``.

    The per-expert keys let a dataset of plain tensors (widths differ between experts) carry the cache.
    """
    if "expert_tokens" in batch:
        return list(batch["expert_tokens"])
    keys = [f"expert_tokens_{j}" for j in range(num_experts)]
    if all(k in batch for k in keys):
        return [batch[k] for k in keys]
    return None


def base_tokens_of(batch: dict[str, Any], base: TimmExpert | None, grid: int) -> Tensor:
    """Cached ``batch["base_tokens"]`` or the base encoder run on ``batch["image"]`` (resized to its size)."""
    if "base_tokens" in batch:
        return batch["base_tokens"]
    if base is None:
        raise ValueError("no base encoder: pass batch['base_tokens'] or build the model with base=")
    image = batch["image"]
    if image.shape[-1] != base.img_size:
        image = F.interpolate(image, size=(base.img_size, base.img_size), mode="bilinear", align_corners=False)
    return align_to_grid(base(image), grid)
