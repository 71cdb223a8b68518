"""The T2MIR layer: token-wise MoE in parallel with task-wise MoE (Wu et al., NeurIPS 2025)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.core.dispatch import build_plan, combine
from domain_moe.core.dispatch.backend import resolve_backend
from domain_moe.core.experts import MLPExperts
from domain_moe.core.moe import MoE
from domain_moe.core.routing import NoisyTopKRouter, TopKRouter
from domain_moe.rl.models.dense_ffn import DenseFFN

__all__ = ["TASK_ROUTINGS", "T2MIRLayer", "contrastive_routing_accuracy", "contrastive_routing_loss"]

#: What the task router sees: each token, the causal prefix mean, or the whole-sequence mean.
TASK_ROUTINGS = ("token", "causal_mean", "sequence_mean")


def _halves(query: Tensor, key: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if query.dim() != 2 or query.shape != key.shape:
        raise ValueError(
            f"contrastive routing: query and key must both be [B, E], got {tuple(query.shape)} and {tuple(key.shape)}"
        )
    if query.shape[0] < 2 or query.shape[0] % 2:
        raise ValueError(
            f"contrastive routing: the batch must hold two views of B/2 tasks (even B >= 2), got B={query.shape[0]}"
        )
    num_experts = query.shape[1]
    if weight.shape != (num_experts, num_experts):
        raise ValueError(
            f"contrastive routing: weight must be [E, E] = [{num_experts}, {num_experts}], got {tuple(weight.shape)}"
        )
    half = query.shape[0] // 2
    return query[:half], query[half:], key[:half], key[half:]


def contrastive_routing_loss(query: Tensor, key: Tensor, weight: Tensor) -> Tensor:
    """T2MIR's task-routing InfoNCE: row ``b`` and row ``b + B/2`` are two views of one task.

    ``l1 = q[:B/2] W k[B/2:]^T`` and ``l2 = q[B/2:] W k[:B/2]^T``; the loss is the mean of the two
    cross-entropies against the diagonal (the CURL form, no temperature: the scale lives in ``W``). It
    lower-bounds the mutual information between the task and the router representation (Wu et al., 2025).

    Args:
        query: online task-gate logits averaged over each sequence.
        key: the same from the EMA copy of the gate (pass it detached).
        weight: the learned bilinear matrix ``W``.

    Returns:
        The 0-d loss (unweighted).

    Shapes:
        - query, key: ``[B, E]``
        - weight: ``[E, E]``

    Example:
        >>> q = torch.eye(4).repeat(2, 1)
        >>> bool(contrastive_routing_loss(q, q, 10 * torch.eye(4)) < 0.01)
        True
    """
    q1, q2, k1, k2 = _halves(query, key, weight)
    return 0.5 * (
        losses.info_nce(q1, k2, temperature=1.0, weight=weight)
        + losses.info_nce(q2, k1, temperature=1.0, weight=weight)
    )


def contrastive_routing_accuracy(query: Tensor, key: Tensor, weight: Tensor) -> Tensor:
    """Fraction of rows whose highest bilinear score is their own task's other view (chance ``2/B``).

    Shapes:
        - query, key: ``[B, E]``
        - weight: ``[E, E]``
    """
    q1, q2, k1, k2 = _halves(query, key, weight)
    target = torch.arange(q1.shape[0], device=q1.device)
    with torch.no_grad():
        hits = ((q1 @ weight @ k2.T).argmax(1) == target).float().mean()
        hits = hits + ((q2 @ weight @ k1.T).argmax(1) == target).float().mean()
    return hits / 2


class T2MIRLayer(nn.Module):
    """Token-wise MoE ∥ task-wise MoE, outputs concatenated: the FFN of T2MIR's last transformer block.

    Wu et al., "Mixture-of-Experts Meets In-Context Reinforcement Learning" (NeurIPS 2025). For the
    normalised block input ``h``:

    * **token branch**: a core :class:`~domain_moe.core.MoE` with a noisy top-k gate (Shazeer et al., 2017)
      and ``importance + load`` CV² balance loss weighted by ``balance_weight`` over experts
      ``D -> d_hidden -> D/2``;
    * **task branch**: a core top-k gate (no noise, no balance loss) over experts ``D -> d_hidden -> D/2``,
      routed on ``u``: each token (``"token"``), the **causal prefix mean** of ``h`` (``"causal_mean"``,
      the default: one slowly-varying decision per sequence that never sees the future) or the whole
      sequence mean (``"sequence_mean"``, the official hard router, which leaks future tokens into the
      routing of earlier ones; kept for comparison only);
    * ``y = concat(token(h), task(h))``, width ``D``; the block adds the residual.

    For the contrastive task-routing loss the layer keeps, in ``last_routing``, the online gate's logits on
    the sequence mean (``q``) and those of an EMA copy of the gate on the detached input (``k``); the EMA
    gate is a buffer (no gradient) moved by :meth:`ema_update` after each optimizer step. The bilinear
    matrix ``W`` of :func:`contrastive_routing_loss` is ``contrastive_matrix``.

    Ablations replace a branch by a dense ``D -> top_k * d_hidden -> D/2`` FFN, which has the same active
    parameters: ``token_moe=False`` (task-only) and ``task_moe=False`` (token-only).

    Args:
        d_model: ``D`` (even).
        num_experts: token-branch experts.
        num_task_experts: task-branch experts.
        top_k: experts per token in both branches.
        d_hidden: hidden width of every expert (default ``2 D``).
        task_routing: one of :data:`TASK_ROUTINGS`.
        balance_weight: weight of the token branch's importance and load losses.
        ema_tau: EMA step of the target task gate.
        token_moe: use the token-wise MoE (else a dense branch).
        task_moe: use the task-wise MoE (else a dense branch).
        dropout: dropout inside the experts' dense replacements.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - h: ``[B, L, D]``
        - output: ``[B, L, D]``
        - last_routing["q"], last_routing["k"]: ``[B, num_task_experts]``
        - last_routing["task_idx"]: ``[B, L, top_k]``

    Example:
        >>> layer = T2MIRLayer(d_model=16)
        >>> layer(torch.randn(2, 5, 16)).shape, layer.last_routing["q"].shape
        (torch.Size([2, 5, 16]), torch.Size([2, 8]))
    """

    def __init__(
        self,
        d_model: int,
        num_experts: int = 6,
        num_task_experts: int = 8,
        top_k: int = 2,
        d_hidden: int | None = None,
        task_routing: str = "causal_mean",
        balance_weight: float = 0.1,
        ema_tau: float = 0.005,
        token_moe: bool = True,
        task_moe: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 2 or d_model % 2:
            raise ValueError(f"T2MIRLayer: d_model must be an even int >= 2, got {d_model!r}")
        if task_routing not in TASK_ROUTINGS:
            raise ValueError(f"T2MIRLayer: task_routing must be one of {TASK_ROUTINGS}, got {task_routing!r}")
        if not 0.0 < ema_tau <= 1.0:
            raise ValueError(f"T2MIRLayer: ema_tau must be in (0, 1], got {ema_tau!r}")
        dd = {"device": device, "dtype": dtype}
        d_hidden = 2 * d_model if d_hidden is None else d_hidden
        half = d_model // 2
        self.d_model, self.d_hidden, self.top_k = d_model, d_hidden, top_k
        self.num_experts, self.num_task_experts = num_experts, num_task_experts
        self.task_routing, self.ema_tau = task_routing, ema_tau
        self.token: nn.Module
        if token_moe:
            router = NoisyTopKRouter(
                d_model, num_experts, top_k, importance_coef=balance_weight, load_coef=balance_weight, device=device
            )
            self.token = MoE(router, MLPExperts(num_experts, d_model, d_hidden, d_out=half, **dd))
        else:
            self.token = DenseFFN(d_model, top_k * d_hidden, half, dropout=dropout, **dd)
        self.task_router: TopKRouter | None = None
        self.task_experts: MLPExperts | None = None
        self.task_dense: DenseFFN | None = None
        if task_moe:
            self.task_router = TopKRouter(d_model, num_task_experts, top_k, balance_coef=0.0, z_coef=0.0, device=device)
            self.task_experts = MLPExperts(num_task_experts, d_model, d_hidden, d_out=half, **dd)
            self.register_buffer("ema_gate", torch.empty(num_task_experts, d_model, device=device))
            self.contrastive_matrix = nn.Parameter(torch.empty(num_task_experts, num_task_experts, device=device))
        else:
            self.task_dense = DenseFFN(d_model, top_k * d_hidden, half, dropout=dropout, **dd)
        self.last_routing: dict[str, Tensor] = {}
        self.reset_parameters()

    @property
    def has_task_moe(self) -> bool:
        """Whether the task branch is a MoE (and the contrastive loss applies)."""
        return self.task_router is not None

    def __getstate__(self) -> dict[str, Any]:
        # Graph tensors of the last call cannot be deep-copied; copies start without them.
        state = self.__dict__.copy()
        state["last_routing"] = {}
        return state

    def reset_parameters(self) -> None:
        """Re-initialise both branches; the EMA gate starts as a copy of the online gate."""
        for part in (self.token, self.task_router, self.task_experts, self.task_dense):
            if part is not None:
                part.reset_parameters()
        if self.task_router is not None:
            with torch.no_grad():
                self.ema_gate.copy_(self.task_router.weight)
                nn.init.normal_(self.contrastive_matrix)

    @torch.no_grad()
    def ema_update(self) -> None:
        """``ema <- (1 - tau) ema + tau online``; call once per optimizer step."""
        if self.task_router is not None:
            self.ema_gate.lerp_(self.task_router.weight.detach().to(self.ema_gate.dtype), self.ema_tau)

    def routing_input(self, h: Tensor) -> Tensor:
        """The task router's input ``u`` for each token.

        Shapes:
            - h, output: ``[B, L, D]``
        """
        if self.task_routing == "token":
            return h
        if self.task_routing == "sequence_mean":
            return h.mean(1, keepdim=True).expand_as(h)
        count = torch.arange(1, h.shape[1] + 1, device=h.device, dtype=h.dtype).view(1, -1, 1)
        return h.cumsum(1) / count

    def _task_forward(self, h: Tensor) -> Tensor:
        assert self.task_router is not None and self.task_experts is not None
        tokens = h.reshape(-1, self.d_model)
        decision = self.task_router(self.routing_input(h).reshape(-1, self.d_model))
        weight = decision.topk_w.to(tokens.dtype)
        plan = build_plan(decision.topk_idx, weight.detach(), self.num_task_experts)
        backend = resolve_backend(
            "auto",
            x=tokens,
            supported=self.task_experts.supported_backends,
            reasons=self.task_experts.backend_reasons(tokens),
        )
        out = combine(self.task_experts(tokens, plan, backend), weight, plan)
        seq_mean = h.mean(1)
        self.last_routing = {
            "q": F.linear(seq_mean.float(), self.task_router.weight),
            "k": F.linear(seq_mean.detach().float(), self.ema_gate.float()),
            "task_idx": decision.topk_idx.view(*h.shape[:2], -1),
        }
        return out.view(*h.shape[:2], -1)

    def forward(self, h: Tensor) -> Tensor:
        """Both branches on ``h``, concatenated; see the class docstring."""
        if not isinstance(h, Tensor) or h.dim() != 3 or h.shape[-1] != self.d_model:
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(f"T2MIRLayer: h must be [B, L, d_model={self.d_model}], got {got}")
        self.last_routing = {}
        token_out = self.token(h)
        task_out = self._task_forward(h) if self.task_router is not None else self.task_dense(h)  # type: ignore[misc]
        if not self.training and isinstance(self.token, MoE):
            with torch.no_grad():
                self.last_routing["token_idx"] = self.token.router(h.reshape(-1, self.d_model)).topk_idx.view(
                    *h.shape[:2], -1
                )
        return torch.cat([token_out, task_out], dim=-1)

    def contrastive_loss(self) -> Tensor | None:
        """The unweighted contrastive task-routing loss of the last call (``None`` without a task MoE)."""
        if self.task_router is None or "q" not in self.last_routing:
            return None
        return contrastive_routing_loss(self.last_routing["q"], self.last_routing["k"], self.contrastive_matrix)

    def extra_repr(self) -> str:
        """Constructor options for ``repr``."""
        return f"task_routing={self.task_routing!r}, top_k={self.top_k}, ema_tau={self.ema_tau}"
