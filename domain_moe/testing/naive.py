"""The naive per-token MoE: the obviously correct oracle every fast path is compared against."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from domain_moe.core.moe import MoE
from domain_moe.core.types import RoutingDecision

__all__ = ["naive_moe", "naive_moe_forward"]


def naive_moe_forward(layer: MoE, x: Tensor, decision: RoutingDecision, **expert_kwargs: Any) -> Tensor:
    """Compute ``layer``'s output for a given routing decision, one token and one slot at a time.

    No plan, no sorting, no batching: for each token ``t`` and slot ``k`` with expert ``e >= 0``, add
    ``w[t, k] * expert_e(x[t])``; Soft MoE mixes slots explicitly. Slow by design; use small inputs.
    Experts that are not row-wise are run on all tokens and the token's row is taken.

    Args:
        layer: the MoE layer whose experts (and shared experts) to use.
        x: tokens, as passed to the layer.
        decision: the routing decision to apply (from ``layer.router``).
        **expert_kwargs: passed to the experts.

    Shapes:
        - x: ``[..., D]``
        - output: ``[..., D_out]``
    """
    experts = layer.experts
    row_wise = getattr(experts, "row_wise", True)
    if decision.is_soft:
        assert decision.dispatch_weights is not None and decision.combine_weights is not None
        seqs = x if x.dim() == 3 else x.reshape(1, -1, layer.d_model)
        batch, length, num_slots = decision.dispatch_weights.shape
        per_expert = num_slots // experts.num_experts
        out = seqs.new_zeros(batch, length, layer.d_out)
        for b in range(batch):
            for s in range(num_slots):
                slot_in = (decision.dispatch_weights[b, :, s, None].to(x.dtype) * seqs[b]).sum(0, keepdim=True)
                slot_out = experts.forward_expert(s // per_expert, slot_in, **expert_kwargs)[0]
                out[b] = out[b] + decision.combine_weights[b, :, s, None].to(x.dtype) * slot_out
        out = out.reshape(-1, layer.d_out)
        tokens = seqs.reshape(-1, layer.d_model)
    else:
        tokens = x.reshape(-1, layer.d_model)
        rows = []
        all_out = None
        if not row_wise:
            all_out = [experts.forward_expert(e, tokens, **expert_kwargs) for e in range(experts.num_experts)]
        for t in range(tokens.shape[0]):
            acc = tokens.new_zeros(layer.d_out)
            for k in range(decision.topk_idx.shape[1]):
                e = int(decision.topk_idx[t, k])
                if e < 0:
                    continue
                y_e = all_out[e][t] if all_out is not None else experts.forward_expert(e, tokens[t : t + 1])[0]
                acc = acc + decision.topk_w[t, k].to(x.dtype) * y_e
            rows.append(acc)
        out = torch.stack(rows)
    if layer.shared is not None:
        out = out + layer.shared(tokens)
    return out.reshape(*x.shape[:-1], layer.d_out)


def naive_moe(layer: MoE, x: Tensor, **expert_kwargs: Any) -> tuple[Tensor, RoutingDecision]:
    """Route ``x`` with ``layer.router`` and compute the output with :func:`naive_moe_forward`.

    Returns:
        ``(output, decision)``; reuse ``decision`` to compare against the layer under the same routing
        (routers with noise draw new noise on every call).
    """
    if layer.router.needs_sequences:
        decision = layer.router(x if x.dim() == 3 else x.reshape(1, -1, layer.d_model))
    else:
        decision = layer.router(x.reshape(-1, layer.d_model))
    return naive_moe_forward(layer, x, decision, **expert_kwargs), decision
