"""Astrea (our reconstruction): four aligned experts fused by an adaptive allocator with stochastic residuals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.dispatch import build_plan, combine
from domain_moe.core.routing import DenseRouter
from domain_moe.vision.experts import ExpertPool, TimmExpert, base_tokens_of, cached_expert_tokens
from domain_moe.vision.heads import QuestionHead
from domain_moe.vision.models.cross_attention import ExpertCrossAttention
from domain_moe.vision.models.describer import Describer
from domain_moe.vision.models.momentum import MomentumEncoder
from domain_moe.vision.models.stochastic_residual import StochasticExpertDrop

__all__ = ["ALLOCATORS", "PREALIGN_ORDER", "Astrea", "AstreaFusion"]

ALLOCATORS = ("learned", "uniform")
#: Progressive pre-alignment order, global to dense (by expert role).
PREALIGN_ORDER = ("classification", "captioning", "detection", "segmentation")


class AstreaFusion(nn.Module):
    """The trainable fusion of Astrea: projectors, per-expert cross-attention, the adaptive weight allocator.

    ``X_f = X + sum_k s_k w_k(x, c) A_k(X, g_k(F_k))`` where ``g_k`` projects expert ``k``'s tokens into the
    shared latent space, ``A_k`` is a zero-initialised cross-attention, ``w = softmax(W [mean X; c] / T)`` is
    the core :class:`~domain_moe.core.routing.DenseRouter` (or uniform ``1/K``), and ``s_k`` the stochastic
    residual scale (``0`` = branch dropped and not computed). Dispatch and combine are the core's.

    Args:
        d_model: base and latent width ``C``.
        expert_channels: width ``C_k`` of each expert.
        d_context: context vector width.
        num_heads: attention heads.
        allocator: ``"learned"`` or ``"uniform"``.
        temperature: allocator softmax temperature ``T``.

    Shapes:
        - x: ``[B, L, C]``; experts: list of ``[B, L, C_k]``; context: ``[B, d_context]``; scale: ``[B, K]``
        - output: ``[B, L, C]``, allocator weights ``[B, K]``

    Example:
        >>> fusion = AstreaFusion(16, [8, 12], d_context=4, num_heads=2)
        >>> x = torch.randn(2, 5, 16)
        >>> y, w = fusion(x, [torch.randn(2, 5, 8), torch.randn(2, 5, 12)], torch.randn(2, 4), torch.ones(2, 2))
        >>> torch.equal(y, x), w.shape
        (True, torch.Size([2, 2]))
    """

    def __init__(
        self,
        d_model: int,
        expert_channels: Sequence[int],
        d_context: int = 32,
        num_heads: int = 4,
        allocator: str = "learned",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if allocator not in ALLOCATORS:
            raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")
        self.num_experts = len(expert_channels)
        self.allocator_mode = allocator
        self.projectors = nn.ModuleList(nn.Linear(c, d_model) for c in expert_channels)
        self.adapters = nn.ModuleList(ExpertCrossAttention(d_model, d_model, num_heads) for _ in expert_channels)
        self.allocator = DenseRouter(d_model + d_context, self.num_experts, temperature=temperature)

    def reset_parameters(self) -> None:
        """Reset every part."""
        for m in (*self.projectors, *self.adapters):
            m.reset_parameters()
        self.allocator.reset_parameters()

    def embed(self, k: int, tokens: Tensor) -> Tensor:
        """Expert ``k``'s tokens in the shared latent space ``g_k(F_k)``."""
        return self.projectors[k](tokens)

    def weights(self, x: Tensor, context: Tensor) -> Tensor:
        """Allocator weights on the simplex.

        Shapes:
            - output: ``[B, K]``
        """
        if self.allocator_mode == "uniform":
            return x.new_full((x.shape[0], self.num_experts), 1.0 / self.num_experts)
        return self.allocator(torch.cat([x.mean(1), context], -1)).topk_w.to(x.dtype)

    def forward(self, x: Tensor, experts: Sequence[Tensor], context: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """Fuse; see the class docstring."""
        b, length, c = x.shape
        if len(experts) != self.num_experts:
            raise ValueError(f"expected {self.num_experts} expert token maps, got {len(experts)}")
        w = self.weights(x, context)
        slot = torch.arange(self.num_experts, device=x.device).expand(b, -1)
        idx = torch.where(scale > 0, slot, torch.full_like(slot, -1))
        plan = build_plan(idx, (w * scale).detach(), self.num_experts)
        bounds = plan.expert_offsets.tolist()
        pieces = []
        for k in range(self.num_experts):
            lo, hi = bounds[k], bounds[k + 1]
            if hi == lo:
                continue  # dropped for every sample: never computed
            samples = plan.sorted_token[lo:hi]
            branch = self.adapters[k](x[samples], self.embed(k, experts[k][samples]))
            pieces.append(branch.reshape(hi - lo, length * c))
        pieces.append(x.new_zeros(plan.num_rows - bounds[-1], length * c))
        fused = x + combine(torch.cat(pieces, 0), (w * scale).to(x.dtype), plan).view(b, length, c)
        return fused, w


class Astrea(nn.Module):
    """Astrea, as reconstructed from its abstract (every equation here is ours).

    Yang, Lu et al., "Astrea: A MoE-based Visual Understanding Model with Progressive Alignment", arXiv
    2503.09445 (2025).

    Four frozen experts (classification, captioning, detection, segmentation) are pre-aligned into the
    shared latent space by contrastive learning (:meth:`prealign_loss`, one expert at a time), then fused into
    the base tokens by :class:`AstreaFusion` with per-expert stochastic residuals
    (:class:`StochasticExpertDrop`), a momentum-contrast loss against an EMA copy of the fusion and a queue
    (:class:`MomentumEncoder`), and the allocator's CV² importance (load-balance) loss. Each piece can be
    switched off for ablations. Auxiliary losses of the last training call are in ``last_aux``.

    With a ``describer`` the same fusion also serves captioning and image <-> caption retrieval (the paper
    evaluates VQA, captioning and retrieval with one model): a learned "describe" context vector takes the
    question's place in the allocator, and the caption and retrieval losses join the training loss whenever
    the batch carries ``caption``.

    Args:
        d_model: base token width ``C`` (also the latent width).
        expert_channels: widths of the four experts, in :data:`PREALIGN_ORDER` roles or any order.
        head: the question head.
        num_classes: classes of the anchor table.
        stochastic_residual: use Bernoulli expert drops in training.
        moco: add the momentum-contrast loss.
        allocator: ``"learned"`` or ``"uniform"``.
        p_start: keep probability at the start of the schedule.
        p_end: keep probability at its end.
        moco_momentum: EMA momentum ``m``.
        queue_size: MoCo queue rows.
        moco_temperature: MoCo ``tau``.
        moco_weight: ``lambda_moco``.
        balance_weight: ``lambda_bal`` of the allocator's importance CV².
        token_dropout: fraction of tokens zeroed in the second (key) view.
        num_heads: attention heads.
        seed: seed of the fixed anchor table.
        base: the base encoder (``None`` when base tokens are always cached).
        pool: the four frozen experts (``None`` when expert tokens are always cached).
        grid: base grid side ``g``.
        describer: caption and retrieval heads on the fused tokens, or ``None``.
        describe_weight: weight of each describe loss.

    Shapes:
        - batch["base_tokens"]: ``[B, L, C]``; batch["expert_tokens"]: list of ``[B, L, C_k]``
        - output: ``[B, num_answers]``

    Example:
        >>> from domain_moe.vision.canvas import AnswerSpace
        >>> head = QuestionHead(16, 6, 10, AnswerSpace(10, 3).mask(), num_heads=2)
        >>> model = Astrea(16, [8, 8, 8, 8], head, num_classes=10, num_heads=2, queue_size=16).eval()
        >>> batch = {"base_tokens": torch.randn(3, 4, 16), "expert_tokens": [torch.randn(3, 4, 8)] * 4,
        ...          "context": torch.tensor([0, 1, 2]), "argument": torch.tensor([1, -1, 2])}
        >>> model(batch).shape
        torch.Size([3, 19])
    """

    def __init__(
        self,
        d_model: int,
        expert_channels: Sequence[int],
        head: QuestionHead,
        num_classes: int = 10,
        stochastic_residual: bool = True,
        moco: bool = True,
        allocator: str = "learned",
        p_start: float = 0.5,
        p_end: float = 0.9,
        moco_momentum: float = 0.99,
        queue_size: int = 1024,
        moco_temperature: float = 0.2,
        moco_weight: float = 0.1,
        balance_weight: float = 0.01,
        token_dropout: float = 0.25,
        num_heads: int = 4,
        seed: int = 0,
        base: TimmExpert | None = None,
        pool: ExpertPool | None = None,
        grid: int = 8,
        describer: Describer | None = None,
        describe_weight: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_experts = len(expert_channels)
        if describer is not None and describer.d_model != d_model:
            raise ValueError(f"describer must be d_model={d_model} wide, got {describer.d_model}")
        if pool is not None and len(pool) != self.num_experts:
            raise ValueError(f"pool has {len(pool)} experts but expert_channels lists {self.num_experts}")
        self.base = base
        self.pool = pool
        self.grid = grid
        self.head = head
        d_context = head.embed.d_context
        self.fusion = AstreaFusion(d_model, expert_channels, d_context, num_heads, allocator)
        self.moco_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.drop = StochasticExpertDrop(self.num_experts, p_start, p_end) if stochastic_residual else None
        self.momentum = (
            MomentumEncoder(nn.ModuleList([self.fusion, self.moco_head]), d_model, moco_momentum, queue_size)
            if moco
            else None
        )
        self.moco_temperature = moco_temperature
        self.moco_weight = moco_weight
        self.balance_weight = balance_weight if allocator == "learned" else 0.0
        self.token_dropout = token_dropout
        gen = torch.Generator().manual_seed(seed)
        table = torch.linalg.qr(torch.randn(d_model, max(d_model, num_classes), generator=gen))[0][:num_classes]
        self.register_buffer("anchor_table", F.normalize(table[:num_classes], dim=-1), persistent=False)
        self.describer = describer
        self.describe_weight = describe_weight
        # The describe task's allocator context (questions use the question head's context embedding).
        self.describe_context = nn.Parameter(torch.zeros(d_context)) if describer is not None else None
        self.last_aux: dict[str, Tensor] = {}
        self.last_weights: Tensor | None = None

    def reset_parameters(self) -> None:
        """Reset the fusion, the MoCo head and the question head."""
        self.fusion.reset_parameters()
        if self.describer is not None:
            self.describer.reset_parameters()
            nn.init.zeros_(self.describe_context)
        for m in self.moco_head:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        self.head.reset_parameters()

    def tokens(self, batch: dict[str, Any]) -> tuple[Tensor, list[Tensor]]:
        """Base tokens and every expert's aligned tokens: cached in the batch, or computed live."""
        base = base_tokens_of(batch, self.base, self.grid)
        experts = cached_expert_tokens(batch, self.num_experts)
        if experts is None:
            if self.pool is None:
                raise ValueError("Astrea has no expert pool: pass batch['expert_tokens'] or build it with pool=")
            experts = [self.pool(batch["image"], k) for k in range(self.num_experts)]
        return base, experts

    # -- progressive pre-alignment ---------------------------------------------------------------------------
    def anchors(self, presence: Tensor) -> Tensor:
        """Anchor of each sample: the normalised mean of its classes' fixed embeddings.

        Shapes:
            - presence: ``[B, num_classes]`` multi-hot; output: ``[B, C]``
        """
        return F.normalize(presence.float() @ self.anchor_table, dim=-1)

    def pooled_embedding(self, k: int, tokens: Tensor) -> Tensor:
        """``u_k = norm(g_k(pool(F_k)))``.

        Shapes:
            - tokens: ``[B, L, C_k]``; output: ``[B, C]``
        """
        return F.normalize(self.fusion.embed(k, tokens.mean(1)), dim=-1)

    def prealign_loss(self, k: int, batch: dict[str, Any], aligned: Sequence[int] = (), tau: float = 0.07) -> Tensor:
        """Symmetric InfoNCE of expert ``k`` against the anchors, plus consistency with the experts in ``aligned``.

        Canvases with the same class set are false negatives and are masked out of the denominators.
        """
        presence = batch["presence"]
        same = (presence.unsqueeze(1) == presence.unsqueeze(0)).all(-1)
        _, experts = self.tokens(batch)
        u = self.pooled_embedding(k, experts[k])
        loss = losses.symmetric_info_nce(u, self.anchors(presence), tau, same=same)
        for j in aligned:
            with torch.no_grad():
                u_j = self.pooled_embedding(j, experts[j])
            loss = loss + losses.symmetric_info_nce(u, u_j, tau, same=same)
        return loss

    # -- fusion ----------------------------------------------------------------------------------------------
    def _view(self, tokens: Tensor) -> Tensor:
        keep = (torch.rand(tokens.shape[:2], device=tokens.device) >= self.token_dropout).unsqueeze(-1)
        return tokens * keep

    def fuse(
        self, batch: dict[str, Any], drop_experts: Sequence[int] = (), describe: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor]]:
        """Fused tokens, allocator weights, context vector, base and expert tokens.

        ``drop_experts`` removes experts for every sample (the robustness test of stochastic residuals);
        ``describe`` fuses under the describe context instead of the question's.
        """
        base, experts = self.tokens(batch)
        b = base.shape[0]
        if describe:
            if self.describe_context is None:
                raise ValueError("describe=True needs an Astrea built with a describer")
            context = self.describe_context.expand(b, -1)
        else:
            context = self.head.embed(batch["context"], batch.get("argument"))
        if self.drop is not None:
            _, scale = self.drop(b, base.device)
        else:
            scale = base.new_ones(b, self.num_experts)
        if drop_experts:
            scale = scale.clone()
            scale[:, list(drop_experts)] = 0.0
        fused, w = self.fusion(base, experts, context, scale)
        return fused, w, context, base, experts

    def forward(self, batch: dict[str, Any], drop_experts: Sequence[int] = ()) -> Tensor:
        """Answer logits; in training also fills ``last_aux`` (balance, MoCo)."""
        fused, w, context, base, experts = self.fuse(batch, drop_experts)
        self.last_weights = w.detach()
        aux: dict[str, Tensor] = {}
        if self.training and self.balance_weight:
            aux["balance"] = self.balance_weight * losses.importance_cv2(w)
        if self.training and self.momentum is not None:
            q = self.moco_head(fused.mean(1))
            with torch.no_grad():
                fusion_m, head_m = self.momentum.ema
                base2 = self._view(base)
                experts2 = [self._view(t) for t in experts]
                ones = base2.new_ones(base2.shape[0], self.num_experts)
                fused2, _ = fusion_m(base2, experts2, context.detach(), ones)
                k = head_m(fused2.mean(1))
            aux["moco"] = self.moco_weight * losses.info_nce(
                q, k, negatives=self.momentum.negatives(), temperature=self.moco_temperature
            )
            with torch.no_grad():
                logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T
                aux["moco_acc"] = (logits.argmax(-1) == torch.arange(q.shape[0], device=q.device)).float().mean()
            self.momentum.enqueue(k)
        if self.training and self.describer is not None and "caption" in batch:
            tokens, *_ = self.fuse(batch, drop_experts, describe=True)
            out = self.describer.losses(tokens, batch["caption"], batch["presence"])
            aux["caption"] = self.describe_weight * out.caption
            aux["retrieval"] = self.describe_weight * out.retrieval
        self.last_aux = aux
        return self.head(fused, batch["context"], batch.get("argument"))

    @torch.no_grad()
    def describe(
        self, batch: dict[str, Any], caption_length: int, drop_experts: Sequence[int] = ()
    ) -> dict[str, Tensor]:
        """Greedy captions and the image-side retrieval embedding under the describe context.

        Shapes:
            - output: ``{"caption": [B, caption_length], "image_embedding": [B, d_embed]}``
        """
        if self.describer is None:
            raise ValueError("describe() needs an Astrea built with a describer")
        tokens, *_ = self.fuse(batch, drop_experts, describe=True)
        return {
            "caption": self.describer.generate(tokens, caption_length),
            "image_embedding": self.describer.image_embedding(tokens),
        }

    def momentum_update(self) -> None:
        """EMA step of the momentum encoder (call after each optimizer step)."""
        if self.momentum is not None:
            self.momentum.update(nn.ModuleList([self.fusion, self.moco_head]))

    def aux_loss(self) -> Tensor:
        """Sum of the weighted auxiliary losses of the last training call (``moco_acc`` is a statistic)."""
        terms = [v for k, v in self.last_aux.items() if k != "moco_acc"]
        return torch.stack(terms).sum() if terms else torch.zeros(())
