"""Auxiliary losses as pure functions of router outputs.

Every function takes tensors the router *returned* (never module or global state), computes in fp32 and
returns a 0-d tensor. Coefficients are applied by the caller (the router's ``aux_losses``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "entropy",
    "importance_cv2",
    "importance_load_cv2",
    "info_nce",
    "null_aware_balance",
    "orthogonality",
    "seq_balance",
    "switch_balance",
    "symmetric_info_nce",
    "symmetric_kl",
    "z_loss",
]


def switch_balance(probs: Tensor, counts: Tensor, top_k: int | None = 1) -> Tensor:
    """Switch Transformer load-balancing loss, ``E / (T K) * sum_i counts_i * mean_t probs_ti``.

    Equals 1 for perfectly uniform routing and grows to ``E`` when one expert takes everything
    (Fedus et al., 2021; the K-normalised form of MegaBlocks).

    Args:
        probs: router probabilities.
        counts: assignments per expert (no gradient flows through them).
        top_k: slots per token ``K``; ``None`` for variable-k routers (top-p), which normalise by
            the number of assignments actually made, ``sum_i counts_i``, instead of ``T K``.

    Shapes:
        - probs: ``[T, E]``
        - counts: ``[E]``
    """
    num_tokens, num_experts = probs.shape
    counts = counts.detach().float()
    if top_k is None:
        # A device-side total (no host sync): only the spread of the load is penalised, not its
        # size (the number of experts per token is the entropy loss's business).
        frac = counts / counts.sum().clamp_min(1.0)
    else:
        frac = counts / max(num_tokens * top_k, 1)
    return num_experts * (frac * probs.float().mean(0)).sum()


def z_loss(logits: Tensor) -> Tensor:
    """Router z-loss ``mean_t (logsumexp_i z_ti)^2`` (ST-MoE, Zoph et al., 2022).

    Shapes:
        - logits: ``[T, E]``
    """
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def _cv2(v: Tensor) -> Tensor:
    """Squared coefficient of variation; 0 for a single value, as in Shazeer's reference."""
    if v.numel() <= 1:
        return v.new_zeros(())
    return v.var() / (v.mean().square() + 1e-10)


def importance_load_cv2(
    gates: Tensor,
    clean_logits: Tensor,
    noisy_logits: Tensor | None,
    noise_std: Tensor | None,
    top_k: int,
) -> tuple[Tensor, Tensor]:
    """Importance and load losses of the sparsely-gated MoE (Shazeer et al., 2017).

    Importance is ``CV^2(sum_t g_t)``. Load is ``CV^2(sum_t P(e in top-k of t))`` where the probability
    that expert ``e`` stays in the top-k under fresh noise is ``Phi((clean_e - threshold) / std_e)``,
    the threshold being the k-th largest noisy logit among the *other* experts (the (k+1)-th when
    ``e`` is currently selected). Without noise the load falls back to the hard counts.

    Args:
        gates: combine weights scattered to ``[T, E]`` (zero for unselected experts).
        clean_logits: logits before noise.
        noisy_logits: logits after noise (``None`` without noise).
        noise_std: per-token, per-expert noise std (``None`` without noise).
        top_k: ``K``.

    Returns:
        ``(importance, load)``.

    Shapes:
        - gates, clean_logits, noisy_logits, noise_std: ``[T, E]``
    """
    importance = _cv2(gates.float().sum(0))
    num_experts = clean_logits.shape[-1]
    if noisy_logits is None or noise_std is None or top_k >= num_experts:
        return importance, _cv2((gates > 0).float().sum(0))
    top = noisy_logits.float().topk(min(top_k + 1, num_experts), dim=-1).values
    in_threshold = top[:, top_k : top_k + 1]  # (k+1)-th: threshold for a selected expert
    out_threshold = top[:, top_k - 1 : top_k]  # k-th: threshold for an unselected one
    is_in = noisy_logits.float() > in_threshold
    std = noise_std.float().clamp_min(1e-9)
    # ndtr is the standard normal CDF; no distribution object (or its CPU scalars) per call.
    prob_in = torch.special.ndtr((clean_logits.float() - in_threshold) / std)
    prob_out = torch.special.ndtr((clean_logits.float() - out_threshold) / std)
    load = torch.where(is_in, prob_in, prob_out).sum(0)
    return importance, _cv2(load)


def entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Mean entropy ``-sum p log p`` (nats) of distributions along ``dim``.

    Used as the "dynamic" loss of top-p routing (Huang et al., 2024), which is *minimised* to stop the
    router drifting towards the uniform distribution.

    Shapes:
        - probs: ``[..., E]``
    """
    p = probs.float()
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim).mean()


def seq_balance(probs: Tensor, topk_idx: Tensor, seq_len: int, top_k: int) -> Tensor:
    """DeepSeek-V3 sequence-wise balance loss, averaged over sequences.

    Per sequence: ``sum_i f_i P_i`` with ``f_i = E / (K L) * #{t : i in topk(t)}`` and
    ``P_i = mean_t s'_ti`` where ``s'`` are the scores normalised over experts.

    Args:
        probs: router scores (normalised per token by this function).
        topk_idx: chosen experts, ``-1`` for none.
        seq_len: tokens per sequence ``L``; ``T`` must be a multiple.
        top_k: ``K``.

    Shapes:
        - probs: ``[T, E]``
        - topk_idx: ``[T, K]``
    """
    num_tokens, num_experts = probs.shape
    if num_tokens % seq_len:
        raise ValueError(f"seq_balance: T={num_tokens} tokens is not a multiple of seq_len={seq_len}")
    scores = probs.float() / probs.float().sum(-1, keepdim=True).clamp_min(1e-12)
    scores = scores.view(-1, seq_len, num_experts)
    hits = F.one_hot(topk_idx.clamp_min(0).long(), num_experts) * (topk_idx >= 0).unsqueeze(-1)
    f = hits.sum(1).float().view(-1, seq_len, num_experts).sum(1) * num_experts / (top_k * seq_len)
    return (f * scores.mean(1)).sum(-1).mean()


def null_aware_balance(probs: Tensor, counts: Tensor, num_null: int, top_k: int) -> Tensor:
    """AdaMoE balance loss over true and null experts, with the null experts pooled.

    Null experts are interchangeable, so their loads and probabilities are pooled and then shared
    equally among them before the Switch-style product; true experts are balanced among themselves and
    against the nulls' average (Zeng et al., 2024, eq. 5 — the paper's formula; the released code's
    pooling indexes the wrong dimension and does nothing).

    Args:
        probs: probabilities over ``E + m`` outputs (true experts first).
        counts: assignments per output, null experts included.
        num_null: ``m``.
        top_k: slots per token ``K``.

    Shapes:
        - probs: ``[T, E + m]``
        - counts: ``[E + m]``
    """
    num_tokens, total = probs.shape
    num_true = total - num_null
    frac = counts.detach().float() / max(num_tokens * top_k, 1)
    mean_p = probs.float().mean(0)
    if num_null > 0:
        frac = torch.cat([frac[:num_true], frac[num_true:].mean().expand(num_null)])
        mean_p = torch.cat([mean_p[:num_true], mean_p[num_true:].mean().expand(num_null)])
    return total * (frac * mean_p).sum()


def symmetric_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Symmetric KL ``KL(p||q) + KL(q||p)`` between two categorical predictions given as logits.

    THOR's consistency regulariser between two forwards through different random experts
    (Zuo et al., 2022). Averaged over the leading dimensions.

    Shapes:
        - logits_p, logits_q: ``[..., C]``
    """
    lp = F.log_softmax(logits_p.float(), -1)
    lq = F.log_softmax(logits_q.float(), -1)
    kl_pq = (lp.exp() * (lp - lq)).sum(-1)
    kl_qp = (lq.exp() * (lq - lp)).sum(-1)
    return (kl_pq + kl_qp).mean()


def orthogonality(vectors: Tensor, normalize: bool = True) -> Tensor:
    """Soft orthogonality ``||P P^T - I||_F^2 / n^2`` of a set of row vectors.

    Zero exactly when the rows are orthonormal (or orthogonal, with ``normalize``). Used to keep
    prompt or expert vectors diverse (GMoPE).

    Args:
        vectors: ``n`` row vectors.
        normalize: L2-normalise rows first, so only directions matter.

    Shapes:
        - vectors: ``[n, D]``
    """
    v = vectors.float()
    if normalize:
        v = F.normalize(v, dim=-1)
    gram = v @ v.T
    eye = torch.eye(v.shape[0], device=v.device, dtype=v.dtype)
    return (gram - eye).square().sum() / v.shape[0] ** 2


def info_nce(
    query: Tensor,
    key: Tensor,
    negatives: Tensor | None = None,
    temperature: float = 0.07,
    weight: Tensor | None = None,
) -> Tensor:
    """InfoNCE with in-batch negatives and an optional queue (MoCo; CPC).

    Row ``i`` of ``query`` must match row ``i`` of ``key``; every other key row (and every queue row)
    is a negative. With ``weight`` the similarity is bilinear, ``q W k^T`` (CPC, T2MIR's task router);
    otherwise cosine.

    Args:
        query: anchor embeddings.
        key: positive embeddings (typically from a momentum encoder; gradient is not stopped here).
        negatives: extra negatives (a queue), or ``None``.
        temperature: softmax temperature ``tau``.
        weight: bilinear matrix ``W``, or ``None`` for cosine similarity.

    Shapes:
        - query, key: ``[B, D]``
        - negatives: ``[Q, D]``
        - weight: ``[D, D]``
    """
    if temperature <= 0:
        raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
    q, k = query.float(), key.float()
    if weight is None:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        neg = None if negatives is None else F.normalize(negatives.float(), dim=-1)
    else:
        q = q @ weight.float()
        neg = None if negatives is None else negatives.float()
    logits = q @ k.T
    if neg is not None:
        logits = torch.cat([logits, q @ neg.T], dim=1)
    target = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits / temperature, target)


def importance_cv2(weights: Tensor) -> Tensor:
    """V-MoE importance loss ``CV^2(sum_t w_t)`` of dense or sparse gate weights (Riquelme et al., 2021).

    0 when every expert receives the same total weight; it grows as the weight concentrates on few experts.

    Args:
        weights: gate weights per token and expert (zeros for unselected experts).

    Shapes:
        - weights: ``[T, E]``
    """
    return _cv2(weights.float().sum(0))


def symmetric_info_nce(a: Tensor, b: Tensor, temperature: float = 0.07, same: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE of paired embeddings (CLIP-style): ``(InfoNCE(a -> b) + InfoNCE(b -> a)) / 2``.

    Row ``i`` of ``a`` matches row ``i`` of ``b`` (cosine similarity). ``same[i, j] = True`` marks pairs
    that are positives in truth although ``i != j`` (identical class sets, duplicate captions): they are
    removed from the denominators instead of being pushed apart as false negatives.

    Args:
        a: first embeddings.
        b: second embeddings.
        temperature: softmax temperature ``tau``.
        same: optional bool matrix of off-diagonal false negatives to mask (the diagonal is ignored).

    Shapes:
        - a, b: ``[B, D]``
        - same: ``[B, B]``
    """
    if temperature <= 0:
        raise ValueError(f"symmetric_info_nce: temperature must be > 0, got {temperature}")
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"symmetric_info_nce: a and b must both be [B, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
    if same is not None:
        if same.shape != logits.shape or same.dtype != torch.bool:
            raise ValueError(
                f"symmetric_info_nce: same must be a bool [B, B] tensor, got {same.dtype} {tuple(same.shape)}"
            )
        eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
