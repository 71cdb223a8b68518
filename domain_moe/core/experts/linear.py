"""Single-layer experts ``act(norm(x W_e^T + b_e))`` with stacked weights and per-expert normalisation."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core.dispatch.reference import gather_rows, rows_from_all_experts
from domain_moe.core.experts.activation import get_activation
from domain_moe.core.experts.base import Experts
from domain_moe.core.types import DispatchPlan

__all__ = ["NORMS", "LinearExperts"]

NORMS = (None, "batch", "layer")


class LinearExperts(Experts):
    """``E`` one-layer experts ``y_e = act(norm_e(x W_e^T + b_e))``, the experts of MMoE, PLE and HoME.

    The multi-task recommenders use single-layer experts whose *output* is activated (Ma et al., KDD
    2018: "each expert a single layer of 16 units"; Tang et al., RecSys 2020), unlike the FFN experts of
    :class:`MLPExperts`. HoME (Wang et al., 2024, arXiv 2408.05430) normalises each expert's pre-activation
    with its own BatchNorm and uses Swish (``activation="silu"``) so that experts stop collapsing to
    mostly-zero ReLU outputs; ``norm="batch"`` keeps one BatchNorm channel set per expert (stored as one
    ``BatchNorm1d(E * D_out)``).

    Because dense multi-task gates use every expert on every row, :meth:`forward_all` is the main entry
    point; it also accepts a *different input per expert* (``[E, T, D]``), which HoME's per-expert feature
    gates need. BatchNorm is not row-wise (its statistics come from the batch), so with ``norm="batch"``
    the container only runs on the ``dense_all`` backend; in ``eval()`` mode it is row-wise again.

    Args:
        num_experts: ``E``.
        d_model: input width ``D``.
        d_out: output width ``D_out`` of each expert (its single layer's units).
        activation: ``"relu"``, ``"silu"`` (Swish), ``"gelu"``, ``"gelu_tanh"`` or ``"identity"``.
        norm: ``None``, ``"batch"`` (per-expert BatchNorm) or ``"layer"`` (per-expert LayerNorm).
        bias: learn ``b_e`` (the norm's shift replaces it when ``norm`` is set, so it is then dropped).
        eps: the norm's epsilon.
        momentum: BatchNorm running-statistics momentum.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[T, D]`` (same input for every expert) or ``[E, T, D]`` (one input per expert)
        - weight: ``[E, D_out, D]``
        - forward_all output: ``[E, T, D_out]``; forward output: ``[A, D_out]`` in plan order

    Example:
        >>> experts = LinearExperts(num_experts=3, d_model=8, d_out=4, activation="silu", norm="batch")
        >>> experts.forward_all(torch.randn(5, 8)).shape
        torch.Size([3, 5, 4])
        >>> experts.forward_all(torch.randn(3, 5, 8)).shape
        torch.Size([3, 5, 4])
    """

    def __init__(
        self,
        num_experts: int,
        d_model: int,
        d_out: int,
        activation: str = "relu",
        norm: str | None = None,
        bias: bool = True,
        eps: float = 1e-5,
        momentum: float = 0.1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_experts, d_model, d_out)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.activation = activation
        self.act = get_activation(activation)
        self.norm = norm
        self.eps = eps
        self.momentum = momentum
        dd = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(num_experts, d_out, d_model, **dd))
        # A shift right before a norm is cancelled by the norm's mean subtraction: keep one shift, the norm's.
        self.bias = nn.Parameter(torch.empty(num_experts, d_out, **dd)) if bias and norm is None else None
        if norm is None:
            self.norm_weight = self.norm_bias = None
        else:
            self.norm_weight = nn.Parameter(torch.empty(num_experts, d_out, **dd))
            self.norm_bias = nn.Parameter(torch.empty(num_experts, d_out, **dd))
        if norm == "batch":
            self.register_buffer("running_mean", torch.zeros(num_experts, d_out, **dd))
            self.register_buffer("running_var", torch.ones(num_experts, d_out, **dd))
        else:
            self.running_mean = self.running_var = None
        self.supported_backends = ("dense_all",) if norm == "batch" else ("torch_loop", "dense_all")
        self.preferred_backend = "dense_all"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Per expert the ``nn.Linear`` initialisation; norms start as the identity map."""
        for e in range(self.num_experts):
            nn.init.kaiming_uniform_(self.weight.data[e], a=math.sqrt(5))
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.d_model)
                nn.init.uniform_(self.bias.data[e], -bound, bound)
        if self.norm_weight is not None and self.norm_bias is not None:
            nn.init.ones_(self.norm_weight)
            nn.init.zeros_(self.norm_bias)
        if self.running_mean is not None and self.running_var is not None:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)

    @property
    def is_row_wise(self) -> bool:
        """Whether a row's output depends on that row only (false for BatchNorm in training mode)."""
        return self.norm != "batch" or not self.training

    def _normalise(self, pre: Tensor, experts: slice) -> Tensor:
        """Apply the norm of ``experts`` to pre-activations ``[n_e, R, D_out]``."""
        if self.norm is None:
            return pre
        assert self.norm_weight is not None and self.norm_bias is not None
        gamma = self.norm_weight[experts].unsqueeze(1)
        beta = self.norm_bias[experts].unsqueeze(1)
        if self.norm == "layer":
            return F.layer_norm(pre, (self.d_out,), eps=self.eps) * gamma + beta
        assert self.running_mean is not None and self.running_var is not None
        n_e, rows, width = pre.shape
        # One BatchNorm over the flattened [R, n_e * D_out] channels: each expert keeps its own statistics.
        # The running buffers are sliced views, so F.batch_norm updates the stored statistics in place.
        flat = pre.transpose(0, 1).reshape(rows, n_e * width)
        out = F.batch_norm(
            flat,
            self.running_mean[experts].reshape(-1),
            self.running_var[experts].reshape(-1),
            None,
            None,
            self.training,
            self.momentum,
            self.eps,
        )
        return out.reshape(rows, n_e, width).transpose(0, 1) * gamma + beta

    def _check_rows(self, x: Tensor) -> None:
        if self.norm == "batch" and self.training and x.shape[-2] < 2:
            raise ValueError(
                f"LinearExperts(norm='batch') needs at least 2 rows per expert in training mode, got shape "
                f"{tuple(x.shape)}; use a larger batch or call eval()"
            )

    def forward_all(self, x: Tensor) -> Tensor:
        """Every expert on every row: ``[T, D]`` (shared input) or ``[E, T, D]`` (one input per expert).

        Raises:
            ValueError: wrong rank or width, or a per-expert input with the wrong number of experts.
        """
        if x.dim() == 3 and x.shape[0] != self.num_experts:
            raise ValueError(
                f"per-expert input x must have shape [E={self.num_experts}, T, D], got {tuple(x.shape)}"
            )
        if x.dim() not in (2, 3) or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape [T, D={self.d_model}] or [E, T, D], got {tuple(x.shape)}")
        self._check_rows(x)
        src = x.unsqueeze(0) if x.dim() == 2 else x
        pre = torch.matmul(src, self.weight.transpose(1, 2))
        if self.bias is not None:
            pre = pre + self.bias.unsqueeze(1)
        return self.act(self._normalise(pre, slice(None)))

    def forward_expert(self, expert: int, x: Tensor, **kwargs: Any) -> Tensor:
        """Expert ``expert`` on rows ``x`` (its own norm statistics)."""
        self._check_rows(x)
        bias = None if self.bias is None else self.bias[expert]
        pre = F.linear(x, self.weight[expert], bias).unsqueeze(0)
        return self.act(self._normalise(pre, slice(expert, expert + 1)))[0]

    def forward(
        self,
        x: Tensor,
        plan: DispatchPlan,
        backend: str,
        capacity: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Expert outputs for the plan's rows; see :class:`Experts`."""
        if backend == "dense_all":
            return rows_from_all_experts(self.forward_all(x), plan)
        if backend != "torch_loop" or not self.is_row_wise:
            raise ValueError(
                f"LinearExperts(norm={self.norm!r}, training={self.training}) cannot run on backend={backend!r}; "
                "BatchNorm experts in training mode need 'dense_all'"
            )
        rows = gather_rows(x, plan)
        bounds = plan.expert_offsets.tolist()
        pieces = [self.forward_expert(e, rows[bounds[e] : bounds[e + 1]]) for e in range(self.num_experts)]
        pieces.append(rows.new_zeros(plan.num_rows - bounds[-1], self.d_out))
        return torch.cat(pieces, 0)

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return (
            f"{super().extra_repr()}, activation={self.activation!r}, norm={self.norm!r}, "
            f"bias={self.bias is not None}"
        )
