"""Torch reference of the fused router kernel, and the backward the fused op uses.

Pure torch (no triton import), so it doubles as the specification of ``domain_moe::router_topk``: the
forward mirrors :meth:`domain_moe.core.routing.TopKRouter.select` plus the statistics its losses need, and
:func:`router_topk_backward` is the closed-form gradient of that forward with respect to the logits.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["RouterTopK", "router_topk_backward", "router_topk_reference"]

_EPS = 1e-20  # the clamp TopKRouter uses when it renormalises


class RouterTopK(NamedTuple):
    """Outputs of the fused router and of its torch reference.

    Attributes:
        topk_idx: chosen experts (int64).
        topk_w: combine weights (fp32), renormalised and scaled as requested.
        counts: selections per expert (int64, before any capacity).
        lse: per-token logsumexp of the logits (the z-loss is ``mean(lse ** 2)``).
        prob_sum: per-expert sum over tokens of the balance-loss probabilities (softmax probabilities, or
            sigmoid scores normalised per token); ``prob_sum / T`` is the ``mean_t probs`` of the Switch loss.

    Shapes:
        - topk_idx, topk_w: ``[T, K]``; counts, prob_sum: ``[E]``; lse: ``[T]``
    """

    topk_idx: Tensor
    topk_w: Tensor
    counts: Tensor
    lse: Tensor
    prob_sum: Tensor



def router_topk_reference(
    logits: Tensor,
    top_k: int,
    *,
    score_fn: str = "softmax",
    renorm: bool = True,
    route_scale: float = 1.0,
    selection_bias: Tensor | None = None,
) -> RouterTopK:
    """Router top-k in torch ops, differentiable w.r.t. ``logits`` through autograd.

    ``probs = softmax(logits)`` or ``sigmoid(logits)``; experts are selected on ``probs + selection_bias``
    (no gradient), weighted by ``probs`` at the chosen experts, renormalised when ``renorm`` and scaled by
    ``route_scale``. ``lse`` is the per-token logsumexp (z-loss), ``prob_sum`` the per-expert sum of the
    balance-loss probabilities (sigmoid scores are normalised per token first, as in
    ``TopKRouter.aux_losses``).

    Args:
        logits: router logits.
        top_k: experts per token ``K``.
        score_fn: ``"softmax"`` or ``"sigmoid"``.
        renorm: renormalise the chosen weights.
        route_scale: factor on the weights.
        selection_bias: bias added for selection only.

    Returns:
        :class:`RouterTopK`.

    Shapes:
        - logits: ``[T, E]``; selection_bias: ``[E]``
    """
    if score_fn not in ("softmax", "sigmoid"):
        raise ValueError(f"score_fn must be 'softmax' or 'sigmoid', got {score_fn!r}")
    logits = logits.float()
    num_experts = logits.shape[1]
    probs = logits.softmax(-1) if score_fn == "softmax" else logits.sigmoid()
    select = probs.detach()
    if selection_bias is not None:
        select = select + selection_bias.float()
    idx = select.topk(top_k, dim=-1).indices
    w = probs.gather(1, idx)
    if renorm:
        w = w / w.sum(-1, keepdim=True).clamp_min(_EPS)
    w = w * route_scale
    counts = torch.zeros(num_experts, dtype=torch.int64, device=logits.device)
    counts.scatter_add_(0, idx.reshape(-1), torch.ones_like(idx.reshape(-1)))
    balance = probs if score_fn == "softmax" else probs / probs.sum(-1, keepdim=True).clamp_min(_EPS)
    return RouterTopK(idx, w, counts, torch.logsumexp(logits, -1), balance.sum(0))


def router_topk_backward(
    logits: Tensor,
    topk_idx: Tensor,
    grad_w: Tensor | None,
    grad_lse: Tensor | None,
    grad_prob_sum: Tensor | None,
    *,
    score_fn: str,
    renorm: bool,
    route_scale: float,
) -> Tensor:
    """Gradient of :func:`router_topk_reference`'s ``(topk_w, lse, prob_sum)`` w.r.t. the logits.

    Closed form (a few ``[T, E]`` torch ops, no autograd graph), so it can serve as the backward of the
    fused op under ``torch.compile``. The choices ``topk_idx`` are piecewise constant: no gradient.

    Args:
        logits: the forward's logits.
        topk_idx: the forward's choices.
        grad_w: gradient of ``topk_w`` (``None`` = 0).
        grad_lse: gradient of ``lse`` (``None`` = 0).
        grad_prob_sum: gradient of ``prob_sum`` (``None`` = 0).
        score_fn: ``"softmax"`` or ``"sigmoid"``.
        renorm: whether the forward renormalised.
        route_scale: the forward's weight factor.

    Returns:
        ``d logits`` in float32.

    Shapes:
        - logits: ``[T, E]``; topk_idx, grad_w: ``[T, K]``; grad_lse: ``[T]``; grad_prob_sum: ``[E]``
    """
    z = logits.float()
    softmax = z.softmax(-1)
    probs = softmax if score_fn == "softmax" else z.sigmoid()
    d_probs = torch.zeros_like(z)
    if grad_w is not None:
        gw = grad_w.float() * route_scale
        sel = probs.gather(1, topk_idx)
        if renorm:
            total = sel.sum(-1, keepdim=True)
            denom = total.clamp_min(_EPS)
            # clamp_min passes no gradient where it clamps, exactly like the autograd of the reference.
            inner = torch.where(total > _EPS, (gw * sel).sum(-1, keepdim=True) / denom.square(), 0.0)
            d_sel = gw / denom - inner
        else:
            d_sel = gw
        d_probs = d_probs.scatter_add(1, topk_idx, d_sel)
    if grad_prob_sum is not None:
        gp = grad_prob_sum.float().unsqueeze(0).expand_as(z)
        if score_fn == "softmax":
            d_probs = d_probs + gp
        else:
            total = probs.sum(-1, keepdim=True)
            denom = total.clamp_min(_EPS)
            inner = torch.where(total > _EPS, (gp * probs).sum(-1, keepdim=True) / denom.square(), 0.0)
            d_probs = d_probs + gp / denom - inner
    if score_fn == "softmax":
        d_logits = probs * (d_probs - (d_probs * probs).sum(-1, keepdim=True))
    else:
        d_logits = d_probs * probs * (1.0 - probs)
    if grad_lse is not None:
        d_logits = d_logits + grad_lse.float().unsqueeze(-1) * softmax
    return d_logits
