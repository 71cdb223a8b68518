"""MoV-Adapter: fine-grained fusion of the routed experts into the base tokens (MoVA, Zong et al., NeurIPS 2024)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from domain_moe.core.dispatch import build_plan, combine
from domain_moe.core.routing import MaskedTopKRouter
from domain_moe.vision.models.cross_attention import ExpertCrossAttention

__all__ = ["ExpertTokens", "MoVAdapter", "MoVAdapterBlock"]

#: Routed samples of one expert and its aligned tokens for exactly those samples: ``(index [n], tokens [n, L, C_j])``.
ExpertTokens = Mapping[int, tuple[Tensor, Tensor]]


class MoVAdapterBlock(nn.Module):
    """One adapter block: per-expert cross-attention, a context-aware gate over the routed set, a transformer.

    ``g = W2 GELU(W1 [t; mean_L X])`` (``W2`` zero-initialised, so the gate starts uniform); the core
    :class:`~domain_moe.core.routing.MaskedTopKRouter` turns ``softmax(g + m)`` into top-k weights over the
    routed set ``G``. The fusion ``X + sum_j P_j CrossAttn_j(X, F_j)`` runs each expert's cross-attention only
    on the samples routed to it (core ``build_plan``/``combine``), with 2-D RoPE on its queries and keys so a
    base token reads the expert at its own grid cell (:class:`ExpertCrossAttention`, as MoVA's adapter does);
    a sample with no routed expert keeps ``X``
    (MoVA's ``b = 0``). Then ``X' = X~ + SelfAttn(LN X~)`` and ``X' + MLP(LN X')``, both zero-initialised.

    Args:
        d_model: base token width ``C``.
        expert_channels: width ``C_j`` of each expert.
        d_context: context vector width.
        num_heads: attention heads.
        top_k: most experts per sample in the gate.
        uniform_gate: equal weights over the routed set instead of the learned gate (MoVA Table 11 ablation).

    Shapes:
        - x: ``[B, L, C]``; allowed: ``[B, N]``; context: ``[B, d_context]``
        - output: ``[B, L, C]``

    Example:
        >>> block = MoVAdapterBlock(16, [8, 12], d_context=4, num_heads=2)
        >>> x, allowed = torch.randn(3, 5, 16), torch.tensor([[True, False], [True, True], [False, False]])
        >>> feats = {0: (torch.tensor([0, 1]), torch.randn(2, 5, 8)), 1: (torch.tensor([1]), torch.randn(1, 5, 12))}
        >>> torch.equal(block(x, feats, allowed, torch.randn(3, 4)), x)  # zero-initialised: identity
        True
    """

    def __init__(
        self,
        d_model: int,
        expert_channels: Sequence[int],
        d_context: int,
        num_heads: int = 4,
        top_k: int = 2,
        uniform_gate: bool = False,
    ) -> None:
        super().__init__()
        self.num_experts = len(expert_channels)
        self.d_model = d_model
        self.uniform_gate = uniform_gate
        self.gate_hidden = nn.Sequential(nn.Linear(d_context + d_model, d_model), nn.GELU())
        self.gate = MaskedTopKRouter(d_model, self.num_experts, top_k=min(top_k, self.num_experts))
        self.cross = nn.ModuleList(ExpertCrossAttention(d_model, c, num_heads) for c in expert_channels)
        self.norm_attn = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))
        self.last_weights: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset every layer; zero the gate's last layer and every residual branch's output."""
        self.gate_hidden[0].reset_parameters()
        nn.init.zeros_(self.gate.weight)
        for c in self.cross:
            c.reset_parameters()
        self.norm_attn.reset_parameters()
        self.self_attn._reset_parameters()
        nn.init.zeros_(self.self_attn.out_proj.weight)
        nn.init.zeros_(self.self_attn.out_proj.bias)
        self.norm_mlp.reset_parameters()
        self.mlp[0].reset_parameters()
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def gate_weights(self, x: Tensor, allowed: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """``(topk_idx, topk_w)`` of the gate over the routed set.

        Shapes:
            - output: ``[B, K]`` each
        """
        if self.uniform_gate:
            k = self.gate.top_k
            order = torch.sort((~allowed).to(torch.int8), dim=-1, stable=True).indices[:, :k]
            keep = allowed.gather(1, order)
            idx = torch.where(keep, order, torch.full_like(order, -1))
            w = keep.float() / keep.sum(-1, keepdim=True).clamp_min(1).float()
            return idx, w
        h = self.gate_hidden(torch.cat([context, x.mean(1)], -1))
        decision = self.gate(h, allowed)
        return decision.topk_idx, decision.topk_w

    def forward(self, x: Tensor, expert_tokens: ExpertTokens, allowed: Tensor, context: Tensor) -> Tensor:
        """Fuse the routed experts into ``x``; see the class docstring."""
        b, length, c = x.shape
        idx, w = self.gate_weights(x, allowed, context)
        self.last_weights = torch.zeros(b, self.num_experts, device=x.device).scatter_add_(
            1, idx.clamp_min(0), w.detach().float() * (idx >= 0)
        )
        plan = build_plan(idx, w.detach().to(x.dtype), self.num_experts)
        bounds = plan.expert_offsets.tolist()
        pieces = []
        position = torch.full((b,), -1, dtype=torch.long, device=x.device)
        for e in range(self.num_experts):
            lo, hi = bounds[e], bounds[e + 1]
            if hi == lo:
                continue  # not routed to anyone: never computed
            samples = plan.sorted_token[lo:hi]
            if e not in expert_tokens:
                raise ValueError(f"expert {e} is routed but expert_tokens has no tokens for it")
            have, tokens = expert_tokens[e]
            position.fill_(-1)
            position[have] = torch.arange(have.numel(), device=x.device)
            rows = position[samples]
            if bool((rows < 0).any()):
                raise ValueError(f"expert {e} is routed for samples whose expert tokens were not given")
            pieces.append((lo, self.cross[e](x[samples], tokens[rows]).reshape(hi - lo, length * c)))
        out = x.new_zeros(plan.num_rows, length * c)
        for lo, piece in pieces:
            out = out.index_copy(0, torch.arange(lo, lo + piece.shape[0], device=x.device), piece)
        fused = x + combine(out, w.to(x.dtype), plan).view(b, length, c)
        h = self.norm_attn(fused)
        fused = fused + self.self_attn(h, h, h, need_weights=False)[0]
        return fused + self.mlp(self.norm_mlp(fused))


class MoVAdapter(nn.Module):
    """The MoV-Adapter: a learned position embedding, ``num_blocks`` blocks, and ``(X_L + X) / 2``.

    MoVA (Zong et al., "MoVA: Adapting Mixture of Vision Experts to Multimodal Context", NeurIPS 2024, §3.3):
    every residual branch is zero-initialised, so at initialisation the adapter returns the base tokens.

    Args:
        d_model: base token width ``C``.
        expert_channels: width ``C_j`` of each expert.
        num_tokens: base tokens ``L = g * g``.
        d_context: context vector width.
        num_blocks: adapter blocks (MoVA's best is 3; the CPU configs use 2).
        num_heads: attention heads.
        top_k: most experts per sample in each gate.
        uniform_gate: equal weights over the routed set (ablation).

    Shapes:
        - x: ``[B, L, C]``; allowed: ``[B, N]``; context: ``[B, d_context]``
        - output: ``[B, L, C]``

    Example:
        >>> adapter = MoVAdapter(16, [8], num_tokens=4, d_context=4, num_blocks=1, num_heads=2)
        >>> x = torch.randn(2, 4, 16)
        >>> y = adapter(x, {0: (torch.tensor([1]), torch.randn(1, 4, 8))}, torch.tensor([[False], [True]]),
        ...             torch.randn(2, 4))
        >>> torch.allclose(y, x)
        True
    """

    def __init__(
        self,
        d_model: int,
        expert_channels: Sequence[int],
        num_tokens: int,
        d_context: int = 32,
        num_blocks: int = 2,
        num_heads: int = 4,
        top_k: int = 2,
        uniform_gate: bool = False,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_experts = len(expert_channels)
        self.d_context = d_context
        self.pos = nn.Parameter(torch.zeros(1, num_tokens, d_model))
        self.blocks = nn.ModuleList(
            MoVAdapterBlock(d_model, expert_channels, d_context, num_heads, top_k, uniform_gate)
            for _ in range(num_blocks)
        )

    def reset_parameters(self) -> None:
        """Zero the position embedding and reset the blocks."""
        nn.init.zeros_(self.pos)
        for block in self.blocks:
            block.reset_parameters()

    @property
    def last_weights(self) -> Tensor | None:
        """Gate weights of the last call, averaged over blocks (``[B, N]``), for diagnostics."""
        weights = [b.last_weights for b in self.blocks if b.last_weights is not None]
        return torch.stack(weights).mean(0) if weights else None

    def forward(self, x: Tensor, expert_tokens: ExpertTokens, allowed: Tensor, context: Tensor) -> Tensor:
        """Fuse; see the class docstring."""
        if allowed.dtype != torch.bool or allowed.shape != (x.shape[0], self.num_experts):
            raise ValueError(
                f"allowed must be bool [B={x.shape[0]}, N={self.num_experts}], got {allowed.dtype} "
                f"{tuple(allowed.shape)}"
            )
        h = x + self.pos
        for block in self.blocks:
            h = block(h, expert_tokens, allowed, context)
        return (h + x) / 2
