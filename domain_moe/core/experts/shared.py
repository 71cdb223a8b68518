"""Always-on shared experts (DeepSeekMoE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core.experts.activation import get_activation

__all__ = ["SharedExperts"]


class SharedExperts(nn.Module):
    """Dense experts applied to every token; their output starts the MoE combine.

    ``num_shared`` shared experts of hidden width ``H`` sum to one FFN of hidden width
    ``num_shared * H`` (their outputs are added), so they are stored and computed as one
    (Dai et al., 2024, DeepSeekMoE).

    Args:
        d_model: input width ``D``.
        d_hidden: hidden width ``H`` of one shared expert.
        num_shared: number of shared experts ``K_s``.
        d_out: output width (default ``d_model``).
        activation: activation name (see :mod:`domain_moe.core.experts.activation`).
        gated: use a GLU (``act(x Wg^T) * x Wu^T``) instead of a plain MLP.
        bias: learn biases.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - x: ``[T, D]``
        - output: ``[T, D_out]``

    Example:
        >>> shared = SharedExperts(d_model=16, d_hidden=32, num_shared=2)
        >>> shared(torch.randn(3, 16)).shape
        torch.Size([3, 16])
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        num_shared: int = 1,
        d_out: int | None = None,
        activation: str = "gelu",
        gated: bool = False,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_hidden", d_hidden), ("num_shared", num_shared)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.d_model = d_model
        self.d_hidden = d_hidden
        self.num_shared = num_shared
        self.d_out = d_model if d_out is None else d_out
        self.activation = activation
        self.act = get_activation(activation)
        self.gated = gated
        dd = {"device": device, "dtype": dtype}
        width = num_shared * d_hidden
        self.fc1 = nn.Linear(d_model, (2 if gated else 1) * width, bias=bias, **dd)
        self.fc2 = nn.Linear(width, self.d_out, bias=bias, **dd)

    def reset_parameters(self) -> None:
        """Re-initialise like ``nn.Linear``."""
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Shared-expert output for every token."""
        pre = self.fc1(x)
        if self.gated:
            gate, up = pre.chunk(2, dim=-1)
            hidden = self.act(gate) * up
        else:
            hidden = self.act(pre)
        return F.linear(hidden, self.fc2.weight, self.fc2.bias)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"d_model={self.d_model}, d_hidden={self.d_hidden}, num_shared={self.num_shared}, "
            f"d_out={self.d_out}, activation={self.activation!r}, gated={self.gated}"
        )
