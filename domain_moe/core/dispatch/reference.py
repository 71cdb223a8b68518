"""Pure-PyTorch dispatch ops: the specification, the CPU path and the oracle of every fast path.

Everything here is deterministic: the plan comes from a stable argsort and integer counts, and no op
accumulates floats through atomics. The gather of rows and the combine are each other's backward
(a gather's gradient is a combine with unit weights), written as ``autograd.Function`` pairs so the
backward never falls back to ``index_add_``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from domain_moe.core.types import DispatchPlan

__all__ = [
    "build_plan",
    "combine",
    "expert_buffer_positions",
    "from_expert_buffer",
    "gather_rows",
    "grouped_linear",
    "grouped_mm_supported",
    "rows_from_all_experts",
    "to_expert_buffer",
]


def build_plan(topk_idx: Tensor, topk_w: Tensor, num_experts: int) -> DispatchPlan:
    """Sort the ``(token, slot)`` assignments by expert, on the device and without a host sync.

    The sort is stable, so rows of one expert keep token order, and slots marked ``-1`` go to a
    trailing trash bucket.

    Args:
        topk_idx: expert per slot, ``-1`` for none.
        topk_w: router weight per slot.
        num_experts: ``E``.

    Returns:
        The dispatch plan.

    Shapes:
        - topk_idx, topk_w: ``[T, K]``
    """
    num_tokens, top_k = topk_idx.shape
    device = topk_idx.device
    flat = topk_idx.reshape(-1).long()
    key = torch.where(flat < 0, torch.full_like(flat, num_experts), flat)
    order = torch.argsort(key, stable=True)
    counts_all = torch.zeros(num_experts + 1, dtype=torch.long, device=device)
    counts_all.scatter_add_(0, key, torch.ones_like(key))
    offsets = torch.zeros(num_experts + 1, dtype=torch.long, device=device)
    torch.cumsum(counts_all[:num_experts], 0, out=offsets[1:])
    num_rows = flat.numel()
    rows = torch.arange(num_rows, device=device)
    valid_row = rows < offsets[-1]
    sorted_token = torch.where(valid_row, order // max(top_k, 1), torch.zeros_like(order))
    sorted_weight = torch.where(valid_row, topk_w.reshape(-1)[order], topk_w.new_zeros(()))
    row_of_slot = torch.empty_like(order).scatter_(0, order, rows)
    row_of_slot = torch.where(flat < 0, torch.full_like(row_of_slot, -1), row_of_slot)
    return DispatchPlan(
        expert_offsets=offsets,
        sorted_token=sorted_token,
        sorted_weight=sorted_weight,
        row_of_slot=row_of_slot.view(num_tokens, top_k),
        slot_of_row=order,
        counts=counts_all[:num_experts],
        num_tokens=num_tokens,
        top_k=top_k,
    )


def _gathered_slots(rows: Tensor, row_of_slot: Tensor) -> Tensor:
    """``rows[row_of_slot]`` with zeros for ``-1`` slots, shape ``[T, K, D]``."""
    num_tokens, top_k = row_of_slot.shape
    valid = row_of_slot >= 0
    picked = rows.index_select(0, row_of_slot.clamp_min(0).reshape(-1))
    picked = picked.view(num_tokens, top_k, rows.shape[-1])
    # where(), not a multiply: rows of the trash bucket may hold uninitialised values.
    return torch.where(valid.unsqueeze(-1), picked, picked.new_zeros(()))


def _weighted_rows(src: Tensor, plan: DispatchPlan, weight: Tensor | None) -> Tensor:
    """Rows ``weight[slot(r)] * src[token(r)]``, zero for trash rows, shape ``[A, D]``."""
    out = src.index_select(0, plan.sorted_token)
    valid = (torch.arange(plan.num_rows, device=src.device) < plan.valid_rows).unsqueeze(-1)
    if weight is not None:
        slot_w = weight.reshape(-1).index_select(0, plan.slot_of_row)
        out = out * slot_w.unsqueeze(-1).to(out.dtype)
    return torch.where(valid, out, out.new_zeros(()))


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, plan: DispatchPlan) -> Tensor:  # type: ignore[override]
        return _weighted_rows(x, plan, None)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        ctx.plan = inputs[1]

    @staticmethod
    def backward(ctx, grad_rows: Tensor):  # type: ignore[no-untyped-def]
        plan = ctx.plan
        ones = grad_rows.new_ones(plan.row_of_slot.shape)
        return combine(grad_rows, ones, plan), None


class _Combine(torch.autograd.Function):
    @staticmethod
    def forward(rows: Tensor, weight: Tensor, plan: DispatchPlan) -> Tensor:  # type: ignore[override]
        picked = _gathered_slots(rows, plan.row_of_slot)
        return torch.bmm(weight.to(picked.dtype).unsqueeze(1), picked).squeeze(1)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        rows, weight, plan = inputs
        ctx.plan = plan
        ctx.save_for_backward(rows, weight)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[no-untyped-def]
        rows, weight = ctx.saved_tensors
        plan = ctx.plan
        grad_rows = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_rows = _weighted_gather(grad_out, weight, plan)
        if ctx.needs_input_grad[1]:
            picked = _gathered_slots(rows, plan.row_of_slot)
            grad_weight = torch.bmm(picked, grad_out.unsqueeze(-1)).squeeze(-1).to(weight.dtype)
        return grad_rows, grad_weight, None


class _WeightedGather(torch.autograd.Function):
    """``rows[r] = w[slot(r)] * src[token(r)]``: the combine's backward, itself differentiable."""

    @staticmethod
    def forward(src: Tensor, weight: Tensor, plan: DispatchPlan) -> Tensor:  # type: ignore[override]
        return _weighted_rows(src, plan, weight)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        src, weight, plan = inputs
        ctx.plan = plan
        ctx.save_for_backward(src, weight)

    @staticmethod
    def backward(ctx, grad_rows: Tensor):  # type: ignore[no-untyped-def]
        src, weight = ctx.saved_tensors
        plan = ctx.plan
        grad_src = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_src = combine(grad_rows, weight, plan)
        if ctx.needs_input_grad[1]:
            picked = _gathered_slots(grad_rows, plan.row_of_slot)
            grad_weight = (picked * src.unsqueeze(1)).sum(-1).to(weight.dtype)
        return grad_src, grad_weight, None


def _weighted_gather(src: Tensor, weight: Tensor, plan: DispatchPlan) -> Tensor:
    return _WeightedGather.apply(src, weight, plan)  # type: ignore[no-any-return]


def gather_rows(x: Tensor, plan: DispatchPlan) -> Tensor:
    """Permute token rows into expert order (the dispatch's "permute").

    Trash rows are zero. The backward is a deterministic combine with unit weights.

    Args:
        x: token rows.
        plan: the dispatch plan.

    Returns:
        Rows in expert order.

    Shapes:
        - x: ``[T, D]``
        - output: ``[A, D]``
    """
    return _GatherRows.apply(x, plan)  # type: ignore[no-any-return]


def combine(rows: Tensor, weight: Tensor, plan: DispatchPlan, init: Tensor | None = None) -> Tensor:
    """Un-permute expert rows and sum them per token: ``out[t] = init[t] + sum_k w[t,k] rows[row(t,k)]``.

    The sum runs in a fixed order (a batched matrix product over the ``K`` slots), so the result is
    bitwise reproducible; slots without expert and rows of the trash bucket never contribute.

    Args:
        rows: expert outputs in plan order.
        weight: combine weight per slot (the router's ``topk_w``).
        plan: the dispatch plan.
        init: optional per-token start value (shared experts, residual).

    Returns:
        Per-token outputs.

    Shapes:
        - rows: ``[A, D]``
        - weight: ``[T, K]``
        - init, output: ``[T, D]``
    """
    out: Tensor = _Combine.apply(rows, weight, plan)
    return out if init is None else out + init


def grouped_mm_supported(x: Tensor, weight: Tensor) -> str | None:
    """Why ``F.grouped_mm`` cannot multiply these operands, or ``None`` when it can.

    Args:
        x: grouped rows.
        weight: expert weights in ``nn.Linear`` layout.

    Shapes:
        - x: ``[A, D_in]``
        - weight: ``[E, D_out, D_in]``
    """
    if not hasattr(F, "grouped_mm"):
        return f"torch.nn.functional.grouped_mm is missing from torch {torch.__version__} (needs >= 2.9)"
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"grouped_mm takes float32/float16/bfloat16, got {x.dtype}"
    if x.is_cuda:
        major, _ = torch.cuda.get_device_capability(x.device)
        if major < 9 or x.dtype != torch.bfloat16:
            return "grouped_mm on CUDA is fast only for bfloat16 on compute capability >= 9.0"
    elt = x.element_size()
    for name, width in (("d_in", weight.shape[-1]), ("d_out", weight.shape[-2])):
        if (width * elt) % 16:
            return f"grouped_mm needs 16-byte aligned rows; {name}={width} x {elt} bytes is not"
    return None


def grouped_linear(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    plan: DispatchPlan,
    *,
    backend: str = "torch_loop",
) -> Tensor:
    """Apply expert ``e``'s linear map to its rows: ``out[r] = rows[r] @ weight[e(r)].T + bias[e(r)]``.

    Args:
        rows: grouped rows in plan order.
        weight: expert weights in ``nn.Linear`` layout.
        bias: expert biases or ``None``.
        plan: the dispatch plan.
        backend: ``"torch_loop"`` (a Python loop over experts, needs one host sync) or
            ``"torch_grouped"`` (one ``F.grouped_mm``).

    Returns:
        Outputs in plan order; trash rows are zero.

    Shapes:
        - rows: ``[A, D_in]``
        - weight: ``[E, D_out, D_in]``
        - bias: ``[E, D_out]``
        - output: ``[A, D_out]``
    """
    num_experts = weight.shape[0]
    if backend == "torch_grouped":
        offs = plan.expert_offsets[1:].to(torch.int32)
        out = F.grouped_mm(rows, weight.transpose(-2, -1), offs=offs)
        valid = (torch.arange(plan.num_rows, device=rows.device) < plan.valid_rows).unsqueeze(-1)
        out = torch.where(valid, out, out.new_zeros(()))
    elif backend == "torch_loop":
        bounds = plan.expert_offsets.tolist()
        pieces = [F.linear(rows[bounds[e] : bounds[e + 1]], weight[e]) for e in range(num_experts)]
        pieces.append(rows.new_zeros(plan.num_rows - bounds[-1], weight.shape[1]))
        out = torch.cat(pieces, 0)
    else:
        raise ValueError(f"grouped_linear: backend must be 'torch_loop' or 'torch_grouped', got {backend!r}")
    if bias is not None:
        out = out + _row_bias(bias, plan)
    return out


def _row_bias(bias: Tensor, plan: DispatchPlan) -> Tensor:
    """Bias of each row's expert (zero for trash rows) as a one-hot product, so its gradient is a GEMM
    (a fixed-order reduction) rather than an ``index_add_``."""
    one_hot = F.one_hot(plan.row_expert(), plan.num_experts + 1)[:, : plan.num_experts]
    return one_hot.to(bias.dtype) @ bias


def expert_buffer_positions(plan: DispatchPlan, capacity: int) -> Tensor:
    """Slot of each grouped row in a ``[E * C]`` buffer; rows past capacity and trash rows get ``E * C``.

    Args:
        plan: the dispatch plan.
        capacity: rows per expert ``C``.

    Shapes:
        - output: ``[A]``
    """
    expert = plan.row_expert()
    rows = torch.arange(plan.num_rows, device=expert.device)
    padded = torch.cat([plan.expert_offsets, plan.expert_offsets[-1:]])
    pos = rows - padded[expert]
    dump = plan.num_experts * capacity
    keep = (expert < plan.num_experts) & (pos < capacity)
    return torch.where(keep, expert * capacity + pos, torch.full_like(pos, dump))


def to_expert_buffer(rows: Tensor, positions: Tensor, num_experts: int, capacity: int) -> Tensor:
    """Scatter grouped rows into a zero-padded ``[E, C, D]`` buffer (the ``bmm`` backend's layout).

    Args:
        rows: grouped rows in plan order.
        positions: from :func:`expert_buffer_positions`.
        num_experts: ``E``.
        capacity: ``C``.

    Shapes:
        - rows: ``[A, D]``
        - positions: ``[A]``
        - output: ``[E, C, D]``
    """
    size = num_experts * capacity
    buf = rows.new_zeros(size + 1, rows.shape[-1])
    # Positions are unique except the dump slot, whose content is discarded, so index_copy is safe.
    buf = buf.index_copy(0, positions, rows)
    return buf[:size].view(num_experts, capacity, rows.shape[-1])


def from_expert_buffer(buf: Tensor, positions: Tensor) -> Tensor:
    """Read grouped rows back from an ``[E, C, D]`` buffer; rows that had no place are zero.

    Args:
        buf: the expert buffer.
        positions: from :func:`expert_buffer_positions`.

    Shapes:
        - buf: ``[E, C, D]``
        - positions: ``[A]``
        - output: ``[A, D]``
    """
    flat = torch.cat([buf.reshape(-1, buf.shape[-1]), buf.new_zeros(1, buf.shape[-1])])
    return flat.index_select(0, positions)


def rows_from_all_experts(all_out: Tensor, plan: DispatchPlan) -> Tensor:
    """Pick the plan's rows out of every expert's output on every token (the ``dense_all`` backend).

    Args:
        all_out: output of each expert on each token.
        plan: the dispatch plan.

    Returns:
        Rows in plan order (trash rows zero).

    Shapes:
        - all_out: ``[E, T, D_out]``
        - output: ``[A, D_out]``
    """
    num_experts, num_tokens, width = all_out.shape
    expert = plan.row_expert()
    valid = expert < num_experts
    flat_idx = expert.clamp_max(num_experts - 1) * num_tokens + plan.sorted_token
    rows = all_out.reshape(-1, width).index_select(0, flat_idx)
    return torch.where(valid.unsqueeze(-1), rows, rows.new_zeros(()))
