"""The expert-loss MoE forecaster: heterogeneous forecasting experts mixed by a dense softmax gate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from domain_moe.core.dense_moe import DenseMoE
from domain_moe.core.experts.module_list import ModuleListExperts
from domain_moe.core.routing.dense import DenseRouter

__all__ = ["ExpertLossMoE", "ForecastOutput"]


@dataclass(frozen=True)
class ForecastOutput:
    """A mixed forecast with its ingredients (what the expert-specific loss needs).

    Attributes:
        y: the mixed forecast ``sum_k gate_k * expert_y_k``.
        expert_y: each expert's own forecast.
        gate: the gate weights (rows sum to 1).

    Shapes:
        - y: ``[B, H]``
        - expert_y: ``[B, E, H]``
        - gate: ``[B, E]``
    """

    y: Tensor
    expert_y: Tensor
    gate: Tensor


class ExpertLossMoE(nn.Module):
    """Global direct multi-horizon forecaster: ``E`` experts (linear and MLP) mixed by a softmax gate.

    The model of El Mahtout & Ziel, "Fast Training of Mixture-of-Experts for Time Series Forecasting via
    Expert Loss Integration" (arXiv 2605.10330, 2026), as reconstructed in the spec: each expert maps a
    window of ``L`` scaled lags (plus optional covariates) to all ``H`` future steps, the gate is the core
    :class:`~domain_moe.core.DenseRouter` (MMoE-style, all experts active, with a temperature), and the
    layer is a core :class:`~domain_moe.core.dense_moe.DenseMoE`, which also returns every expert's own
    forecast. Training with the expert-specific loss (``domain_moe.timeseries.losses``) gives each
    expert its own gradient, so experts the gate down-weights still learn.

    The first ``num_linear`` experts are linear maps (the linear members of the authors' hybrid
    ensembles); the others are one-hidden-layer ReLU MLPs of width ``d_hidden``. ``num_experts = 1``
    is the single-expert baseline.

    Args:
        input_size: input width ``D`` (lags ``L`` plus covariates).
        horizon: forecast steps ``H``.
        num_experts: experts ``E``.
        num_linear: how many of them are linear (``0 <= num_linear <= num_experts``).
        d_hidden: hidden width of the MLP experts.
        temperature: gate softmax temperature.
        dropout: dropout inside the MLP experts.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[B, D]``
        - output: :class:`ForecastOutput` with ``y [B, H]``, ``expert_y [B, E, H]``, ``gate [B, E]``

    Example:
        >>> import torch
        >>> model = ExpertLossMoE(input_size=12, horizon=6, num_experts=4, num_linear=2, d_hidden=16)
        >>> out = model(torch.randn(3, 12))
        >>> out.y.shape, out.expert_y.shape, out.gate.shape
        (torch.Size([3, 6]), torch.Size([3, 4, 6]), torch.Size([3, 4]))
    """

    def __init__(
        self,
        input_size: int,
        horizon: int,
        num_experts: int = 4,
        num_linear: int = 2,
        d_hidden: int = 32,
        temperature: float = 1.0,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("horizon", horizon), ("num_experts", num_experts),
                            ("d_hidden", d_hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(num_linear, bool) or not isinstance(num_linear, int) or not 0 <= num_linear <= num_experts:
            raise ValueError(f"num_linear must be an int in [0, num_experts={num_experts}], got {num_linear!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        dd = {"device": device, "dtype": dtype}
        self.input_size, self.horizon, self.num_experts = input_size, horizon, num_experts
        self.num_linear, self.d_hidden = num_linear, d_hidden
        experts: list[nn.Module] = [nn.Linear(input_size, horizon, **dd) for _ in range(num_linear)]
        experts += [
            nn.Sequential(nn.Linear(input_size, d_hidden, **dd), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(d_hidden, horizon, **dd))
            for _ in range(num_experts - num_linear)
        ]
        self.moe = DenseMoE(
            DenseRouter(input_size, num_experts, temperature=temperature, device=device),
            ModuleListExperts(experts, input_size, horizon),
        )

    @property
    def gate_parameters(self) -> list[nn.Parameter]:
        """Parameters of the gate (for gate-only online updates)."""
        return list(self.moe.router.parameters())

    @property
    def expert_parameters(self) -> list[nn.Parameter]:
        """Parameters of the experts."""
        return list(self.moe.experts.parameters())

    def reset_parameters(self) -> None:
        """Re-initialise the gate and every expert."""
        self.moe.router.reset_parameters()
        for module in self.moe.experts.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    def forward(self, x: Tensor) -> ForecastOutput:
        """Forecast; see the class docstring."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [B, input_size={self.input_size}], got {got}")
        out = self.moe.forward_experts(x)
        return ForecastOutput(y=out.y, expert_y=out.expert_y.transpose(0, 1), gate=out.gate)

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return (f"input_size={self.input_size}, horizon={self.horizon}, num_experts={self.num_experts}, "
                f"num_linear={self.num_linear}, d_hidden={self.d_hidden}")
