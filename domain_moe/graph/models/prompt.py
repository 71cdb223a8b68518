"""Feature prompts: learnable vectors added to every node's input features (GPF; GMoPE's per-expert prompts)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FeaturePrompt"]


class FeaturePrompt(nn.Module):
    """A bank of ``P`` prompt vectors in feature space; prompt ``i`` is broadcast-added to every node.

    One prompt is the GPF prompt of Fang et al., "Universal Prompt Tuning for Graph Neural Networks"
    (NeurIPS 2023): ``x + p``. GMoPE (Wang et al., arXiv 2511.03251) gives each of its ``E`` experts its own
    prompt, ``X^(e) = X + 1 p_eᵀ``; the bank holds them as one ``[E, F]`` parameter so the orthogonality loss
    sees them together. Glorot-initialised as in GPF.

    Args:
        in_channels: feature width ``F``.
        num_prompts: number of prompt vectors ``P`` (``E`` for GMoPE, 1 for GPF).
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        x: ``[N, F]`` → ``[N, F]``; weight: ``[P, F]``.

    Example:
        >>> prompt = FeaturePrompt(in_channels=4, num_prompts=2)
        >>> x = torch.zeros(3, 4)
        >>> bool((prompt(x, 1) == prompt.weight[1]).all())
        True
    """

    def __init__(
        self,
        in_channels: int,
        num_prompts: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_prompts", num_prompts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FeaturePrompt: {name} must be an int >= 1, got {value!r}")
        self.in_channels = in_channels
        self.num_prompts = num_prompts
        self.weight = nn.Parameter(torch.empty(num_prompts, in_channels, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform initialisation (GPF's)."""
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor, index: int = 0) -> Tensor:
        """``x`` plus prompt ``index`` on every row."""
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(f"FeaturePrompt: x must be [N, {self.in_channels}], got shape {tuple(x.shape)}")
        if not 0 <= index < self.num_prompts:
            raise ValueError(f"FeaturePrompt: index must be in [0, {self.num_prompts}), got {index!r}")
        return x + self.weight[index]

    def mean_abs_cosine(self) -> Tensor:
        """Mean absolute cosine similarity between distinct prompts (0 = orthogonal, 1 = collinear).

        GMoPE's diagnostic of prompt collapse; ``0`` for a single prompt.
        """
        if self.num_prompts < 2:
            return self.weight.new_zeros(())
        unit = F.normalize(self.weight.detach().float(), dim=-1)
        cos = (unit @ unit.T).abs()
        off = ~torch.eye(self.num_prompts, dtype=torch.bool, device=cos.device)
        return cos[off].mean()

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"in_channels={self.in_channels}, num_prompts={self.num_prompts}"
