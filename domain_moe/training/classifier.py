"""A small MoE classifier for tabular (or flattened image) inputs, built from core parts."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from domain_moe.core.experts.mlp import MLPExperts
from domain_moe.core.moe import MoE
from domain_moe.core.routing.top_k import TopKRouter

__all__ = ["MoEClassifier"]


def _check_positive_int(name: str, value: object) -> None:
    # bool is an int subclass; `num_layers=True` is a typo, not a layer count.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"MoEClassifier: {name} must be a positive int, got {value!r}")


class MoEClassifier(nn.Module):
    """Input projection, ``num_layers`` pre-norm MoE FFN blocks with residuals, and a linear head.

    Every sample is one token: ``h = W_in x``; then per block ``h = h + dropout(MoE(LayerNorm(h)))``;
    finally ``logits = W_out LayerNorm(h)``. The MoE layers are :class:`~domain_moe.core.MoE` with a
    :class:`~domain_moe.core.TopKRouter` (Shazeer et al., 2017) and :class:`~domain_moe.core.MLPExperts`,
    so their auxiliary losses and routing statistics are collected by
    :class:`~domain_moe.training.MoETask`. Inputs with more than one feature dimension (images) are
    flattened. A plain ``nn.Module``: it knows nothing about Lightning.

    Args:
        num_features: input features ``F`` (after flattening).
        num_classes: output classes ``C``.
        d_model: token width ``D``.
        d_hidden: hidden width ``H`` of each expert.
        num_experts: routed experts ``E`` per layer.
        top_k: experts per sample ``K``.
        num_layers: MoE blocks.
        backend: dispatch backend of every MoE layer (``"auto"`` or one of
            :data:`~domain_moe.core.BACKENDS`).
        bias_balancing: auxiliary-loss-free balancing (update the biases with
            :class:`~domain_moe.training.ExpertBiasCallback`).
        activation: expert activation (``"gelu"``, ``"relu"``, ``"silu"``, ...).
        dropout: dropout on each block's MoE output.
        capacity_factor: ``None`` for dropless routing, else the router's capacity factor.
        balance_coef: Switch balance-loss weight of every router.
        z_coef: router z-loss weight of every router.
        device: parameter device.
        dtype: parameter dtype (the routers keep fp32 gates).

    Shapes:
        - x: ``[B, F]`` or ``[B, *]`` with ``prod(*) == F``
        - output: ``[B, C]`` logits

    Example:
        >>> import torch
        >>> model = MoEClassifier(num_features=64, num_classes=10, d_model=16, d_hidden=32, num_experts=4)
        >>> model(torch.randn(5, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        d_model: int = 64,
        d_hidden: int = 128,
        num_experts: int = 8,
        top_k: int = 2,
        num_layers: int = 2,
        backend: str = "auto",
        bias_balancing: bool = False,
        activation: str = "gelu",
        dropout: float = 0.0,
        capacity_factor: float | None = None,
        balance_coef: float = 1e-2,
        z_coef: float = 1e-3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_features", num_features),
            ("num_classes", num_classes),
            ("d_model", d_model),
            ("d_hidden", d_hidden),
            ("num_experts", num_experts),
            ("num_layers", num_layers),
        ):
            _check_positive_int(name, value)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MoEClassifier: dropout must be in [0, 1), got {dropout!r}")
        dd = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.num_classes = num_classes
        self.d_model = d_model
        self.num_layers = num_layers
        self.input_proj = nn.Linear(num_features, d_model, **dd)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model, **dd) for _ in range(num_layers))
        self.moes = nn.ModuleList(
            MoE(
                TopKRouter(
                    d_model,
                    num_experts,
                    top_k,
                    bias_balancing=bias_balancing,
                    capacity_factor=capacity_factor,
                    balance_coef=balance_coef,
                    z_coef=z_coef,
                    device=device,
                ),
                MLPExperts(num_experts, d_model, d_hidden, activation=activation, **dd),
                backend=backend,
            )
            for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.final_norm = nn.LayerNorm(d_model, **dd)
        self.head = nn.Linear(d_model, num_classes, **dd)

    def reset_parameters(self) -> None:
        """Re-initialise every layer (``nn.Linear``/``LayerNorm`` defaults, routers and experts)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Class logits for a batch; see the class docstring.

        Raises:
            ValueError: if ``x`` is not ``[B, ...]`` with ``num_features`` features per sample.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"MoEClassifier: x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.num_features:
            raise ValueError(
                f"MoEClassifier: x must have shape [B, num_features={self.num_features}] (or [B, *] with "
                f"{self.num_features} features per sample), got {tuple(x.shape)}"
            )
        h = self.input_proj(x.flatten(1))
        for norm, moe in zip(self.norms, self.moes):
            h = h + self.dropout(moe(norm(h)))
        return self.head(self.final_norm(h))

    def extra_repr(self) -> str:
        """Sizes shown in ``repr``."""
        return (
            f"num_features={self.num_features}, num_classes={self.num_classes}, d_model={self.d_model}, "
            f"num_layers={self.num_layers}"
        )
