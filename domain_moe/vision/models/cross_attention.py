"""Cross-attention from base tokens to one expert's tokens, with 2-D RoPE and a zero-initialised output."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ExpertCrossAttention", "rope_2d"]


def _grid_side(length: int) -> int | None:
    side = math.isqrt(length)
    return side if side * side == length else None


def rope_2d(x: Tensor, side: int, ref_side: int, base: float = 100.0) -> Tensor:
    """Rotate the heads of ``x`` by the 2-D position of each token on a ``side x side`` grid.

    The first half of each head's channels turns with the row, the second half with the column. Positions are
    cell centres in units of a ``ref_side`` grid, so a coarser map sits on the same plane as the queries.

    Shapes:
        - x: ``[B, H, L, D]`` with ``L = side * side`` and ``D`` divisible by 4; output: same
    """
    d = x.shape[-1]
    quarter = d // 4
    coords = (torch.arange(side, device=x.device, dtype=torch.float32) + 0.5) * (ref_side / side)
    rows = coords.repeat_interleave(side)
    cols = coords.repeat(side)
    freq = base ** (-torch.arange(quarter, device=x.device, dtype=torch.float32) / quarter)
    out = []
    for half, pos in zip(x.split(d // 2, dim=-1), (rows, cols), strict=True):
        angle = pos[:, None] * freq[None, :]
        cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
        a, b = half[..., :quarter], half[..., quarter:]
        out.extend([a * cos - b * sin, a * sin + b * cos])
    return torch.cat(out, -1)


class ExpertCrossAttention(nn.Module):
    """``Y = CrossAttn(LN(X), LN'(F))``: base tokens query one expert's aligned tokens.

    The per-expert extraction of MoVA's MoV-Adapter (Zong et al., NeurIPS 2024, Eq. 2): layer norms on both
    sides, keys and values projected from the expert's own width (``kdim = vdim = C_j``), 2-D RoPE on queries
    and keys (both on the base grid, so a base token can find the expert tokens at its own location), and an
    output projection initialised to zero, so a freshly built adapter is the identity on the base features.
    RoPE is applied when both token sets are square grids (``rope=True``); otherwise attention is
    position-free.

    Args:
        d_model: base token width ``C``.
        d_expert: expert token width ``C_j``.
        num_heads: attention heads (``C`` must be divisible by it; the head width by 4 for RoPE).
        rope: apply 2-D RoPE to queries and keys.

    Shapes:
        - x: ``[B, L, C]``; expert: ``[B, L_j, C_j]``; key_padding_mask: ``[B, L_j]`` (True = ignore)
        - output: ``[B, L, C]``

    Example:
        >>> import torch
        >>> attn = ExpertCrossAttention(16, d_expert=8, num_heads=2)
        >>> y = attn(torch.randn(2, 4, 16), torch.randn(2, 9, 8))
        >>> y.shape, bool(y.abs().max() == 0)
        (torch.Size([2, 4, 16]), True)
    """

    def __init__(self, d_model: int, d_expert: int, num_heads: int = 4, rope: bool = True) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        if rope and (d_model // num_heads) % 4:
            raise ValueError(f"2-D RoPE needs a head width divisible by 4, got {d_model // num_heads}")
        self.d_model = d_model
        self.d_expert = d_expert
        self.num_heads = num_heads
        self.rope = rope
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_kv = nn.LayerNorm(d_expert)
        self.attn = nn.MultiheadAttention(d_model, num_heads, kdim=d_expert, vdim=d_expert, batch_first=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset the projections; zero the output projection (identity adapter at initialisation)."""
        self.norm_q.reset_parameters()
        self.norm_kv.reset_parameters()
        self.attn._reset_parameters()
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def _projections(self) -> tuple[Tensor, Tensor, Tensor]:
        attn = self.attn
        if attn.in_proj_weight is not None:
            return attn.in_proj_weight.chunk(3)
        return attn.q_proj_weight, attn.k_proj_weight, attn.v_proj_weight

    def forward(self, x: Tensor, expert: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """Attend from ``x`` to ``expert``; see the class docstring."""
        if expert.dim() != 3 or expert.shape[-1] != self.d_expert or expert.shape[0] != x.shape[0]:
            raise ValueError(
                f"expert tokens must be [B={x.shape[0]}, L_j, C_j={self.d_expert}], got shape {tuple(expert.shape)}"
            )
        q_in, kv = self.norm_q(x), self.norm_kv(expert)
        side_q, side_k = _grid_side(x.shape[1]), _grid_side(expert.shape[1])
        if not self.rope or side_q is None or side_k is None:
            return self.attn(q_in, kv, kv, key_padding_mask=key_padding_mask, need_weights=False)[0]
        b, h = x.shape[0], self.num_heads
        wq, wk, wv = self._projections()
        bq, bk, bv = self.attn.in_proj_bias.chunk(3)

        def heads(t: Tensor) -> Tensor:
            return t.view(b, t.shape[1], h, -1).transpose(1, 2)

        q = rope_2d(heads(F.linear(q_in, wq, bq)), side_q, side_q)
        k = rope_2d(heads(F.linear(kv, wk, bk)), side_k, side_q)
        v = heads(F.linear(kv, wv, bv))
        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.attn.out_proj(out.transpose(1, 2).reshape(b, x.shape[1], self.d_model))

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"d_model={self.d_model}, d_expert={self.d_expert}, rope={self.rope}"
