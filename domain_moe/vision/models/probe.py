"""A question-answering probe on one frozen token source (the base alone or one expert alone)."""

from __future__ import annotations

from torch import Tensor, nn

from domain_moe.vision.heads import QuestionHead

__all__ = ["SingleSourceModel"]


class SingleSourceModel(nn.Module):
    """Answer context questions from one source's tokens: a linear projection, a norm, the question head.

    The probe of MoVA's loss-driven routing annotations (Zong et al., NeurIPS 2024, §3.2: one model per
    encoder, compared per sample) and the single-expert baseline of the benchmark.

    Args:
        in_channels: width of the source's tokens ``C_j``.
        d_model: projected width.
        head: the question head (``d_model`` wide).

    Shapes:
        - tokens: ``[B, L, C_j]``; context, argument: ``[B]``
        - output: ``[B, num_answers]``

    Example:
        >>> import torch
        >>> head = QuestionHead(16, 6, 10, torch.ones(6, 19, dtype=torch.bool), d_context=8, num_heads=2)
        >>> SingleSourceModel(8, 16, head)(torch.randn(2, 4, 8), torch.tensor([0, 3])).shape
        torch.Size([2, 19])
    """

    def __init__(self, in_channels: int, d_model: int, head: QuestionHead) -> None:
        super().__init__()
        if head.d_model != d_model:
            raise ValueError(f"head must be d_model={d_model} wide, got {head.d_model}")
        self.proj = nn.Linear(in_channels, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.head = head

    def reset_parameters(self) -> None:
        """Reset every layer."""
        self.proj.reset_parameters()
        self.norm.reset_parameters()
        self.head.reset_parameters()

    def forward(self, tokens: Tensor, context: Tensor, argument: Tensor | None = None) -> Tensor:
        """Answer logits."""
        return self.head(self.norm(self.proj(tokens)), context, argument)
