"""Pure-PyTorch dispatch ops: the specification, the CPU path and the oracle of every fast path.

Everything here is deterministic: the plan comes from a stable argsort and integer counts, and no op
accumulates floats through atomics. The gather of rows and the combine are each other's backward
(a gather's gradient is a combine with unit weights), written as ``autograd.Function`` pairs so the
backward never falls back to ``index_add_``.

On CPU (eager mode) reading the expert offsets on the host costs nothing, so the CPU path uses them:
trash rows are zeroed in place instead of masked with ``torch.where``, the combine is ``K`` row gathers
and fused multiply-adds instead of a ``[T, K, D]`` copy and a batched product, and the grouped linear map
is one ``autograd.Function`` whose bias is a per-expert broadcast (its gradient a per-expert row sum)
instead of a one-hot GEMM. On other devices, and while compiling, the sync-free formulation is used.
Either way the result is bitwise reproducible run to run.
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

#: Mean rows per expert from which a Python loop of per-expert ops beats one vectorised op on CPU.
_ROWS_PER_EXPERT_FOR_LOOP = 32


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


def _host_bounds(plan: DispatchPlan) -> list[int] | None:
    """Expert row bounds ``expert_offsets`` as host ints when reading them is free (CPU, eager), else ``None``."""
    offsets = plan.expert_offsets
    if offsets.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return offsets.tolist()  # type: ignore[no-any-return]


def _zero_trash(out: Tensor, plan: DispatchPlan, bounds: list[int] | None) -> Tensor:
    """``out`` with its trash rows zeroed: in place given host bounds, else with a mask (no sync)."""
    if bounds is not None:
        if bounds[-1] < out.shape[0]:
            out[bounds[-1] :].zero_()
        return out
    valid = (torch.arange(plan.num_rows, device=out.device) < plan.valid_rows).unsqueeze(-1)
    # where(), not a multiply: the rows may hold uninitialised values (NaN * 0 is NaN).
    return torch.where(valid, out, out.new_zeros(()))


def _gathered_slots(rows: Tensor, row_of_slot: Tensor) -> Tensor:
    """``rows[row_of_slot]`` with zeros for ``-1`` slots, shape ``[T, K, D]``."""
    num_tokens, top_k = row_of_slot.shape
    valid = row_of_slot >= 0
    picked = rows.index_select(0, row_of_slot.clamp_min(0).reshape(-1))
    picked = picked.view(num_tokens, top_k, rows.shape[-1])
    # where(), not a multiply: rows of the trash bucket may hold uninitialised values.
    return torch.where(valid.unsqueeze(-1), picked, picked.new_zeros(()))


def _slot_sum(rows: Tensor, weight: Tensor | None, plan: DispatchPlan) -> Tensor:
    """``out[t] = sum_k w[t, k] * rows[row(t, k)]`` (``w = 1`` when ``weight`` is ``None``), ``-1`` slots skipped.

    The ``K`` terms are added in slot order. With host bounds (CPU) this is ``K`` row gathers and fused
    multiply-adds; elsewhere one ``[T, K, D]`` gather and a batched product.
    """
    row_of_slot = plan.row_of_slot
    bounds = _host_bounds(plan)
    if bounds is None:
        picked = _gathered_slots(rows, row_of_slot)
        if weight is None:
            return picked.sum(1)
        return torch.bmm(weight.to(picked.dtype).unsqueeze(1), picked).squeeze(1)
    # Every -1 slot owns one trash row, so a plan without trash rows has no -1 slot to mask.
    drops = bounds[-1] < plan.num_rows
    w = None if weight is None else weight.to(rows.dtype)
    out: Tensor | None = None
    for k in range(row_of_slot.shape[1]):
        col = row_of_slot[:, k]
        picked = rows.index_select(0, col.clamp_min(0) if drops else col)
        if drops:
            picked = torch.where((col >= 0).unsqueeze(-1), picked, picked.new_zeros(()))
        if out is None:
            out = picked if w is None else picked.mul_(w[:, k : k + 1])
        elif w is None:
            out.add_(picked)
        else:
            out.addcmul_(picked, w[:, k : k + 1])
    assert out is not None
    return out


def _weighted_rows(src: Tensor, plan: DispatchPlan, weight: Tensor | None) -> Tensor:
    """Rows ``weight[slot(r)] * src[token(r)]``, zero for trash rows, shape ``[A, D]``."""
    out = src.index_select(0, plan.sorted_token)
    if weight is not None:
        slot_w = weight.reshape(-1).index_select(0, plan.slot_of_row)
        out.mul_(slot_w.unsqueeze(-1).to(out.dtype))
    return _zero_trash(out, plan, _host_bounds(plan))


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
        if torch.is_grad_enabled():  # double backward: stay differentiable
            ones = grad_rows.new_ones(plan.row_of_slot.shape)
            return combine(grad_rows, ones, plan), None
        return _slot_sum(grad_rows, None, plan), None


class _Combine(torch.autograd.Function):
    @staticmethod
    def forward(rows: Tensor, weight: Tensor, plan: DispatchPlan) -> Tensor:  # type: ignore[override]
        return _slot_sum(rows, weight, plan)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        rows, weight, plan = inputs
        ctx.plan = plan
        ctx.save_for_backward(rows, weight)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[no-untyped-def]
        rows, weight = ctx.saved_tensors
        plan = ctx.plan
        bounds = _host_bounds(plan)
        if bounds is not None and not torch.is_grad_enabled():
            return (*_combine_backward_rows(rows, weight, plan, grad_out, bounds, ctx.needs_input_grad), None)
        grad_rows = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_rows = _weighted_gather(grad_out, weight, plan)
        if ctx.needs_input_grad[1]:
            picked = _gathered_slots(rows, plan.row_of_slot)
            grad_weight = torch.bmm(picked, grad_out.unsqueeze(-1)).squeeze(-1).to(weight.dtype)
        return grad_rows, grad_weight, None


def _combine_backward_rows(
    rows: Tensor,
    weight: Tensor,
    plan: DispatchPlan,
    grad_out: Tensor,
    bounds: list[int],
    needs: tuple[bool, ...],
) -> tuple[Tensor | None, Tensor | None]:
    """The combine's gradients computed on the grouped rows (CPU, first order).

    One gather ``g[r] = grad_out[token(r)]`` serves both: ``grad_rows[r] = w[slot(r)] * g[r]`` and
    ``grad_w[slot(r)] = <g[r], rows[r]>``, so no ``[T, K, D]`` copy of ``rows`` is made.
    """
    num_tokens, top_k = plan.row_of_slot.shape
    g_rows = grad_out.index_select(0, plan.sorted_token)
    grad_rows = grad_weight = None
    if needs[1]:
        dots = torch.bmm(g_rows.unsqueeze(1), rows.unsqueeze(-1)).view(-1)
        row_of_slot = plan.row_of_slot
        drops = bounds[-1] < plan.num_rows
        picked = dots.index_select(0, (row_of_slot.clamp_min(0) if drops else row_of_slot).reshape(-1))
        picked = picked.view(num_tokens, top_k)
        if drops:
            picked = torch.where(row_of_slot >= 0, picked, picked.new_zeros(()))
        grad_weight = picked.to(weight.dtype)
    if needs[0]:
        slot_w = weight.reshape(-1).index_select(0, plan.slot_of_row).to(g_rows.dtype)
        grad_rows = _zero_trash(g_rows.mul_(slot_w.unsqueeze(-1)), plan, bounds)
    return grad_rows, grad_weight


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
    if backend not in ("torch_loop", "torch_grouped"):
        raise ValueError(f"grouped_linear: backend must be 'torch_loop' or 'torch_grouped', got {backend!r}")
    bounds = _host_bounds(plan)
    if bounds is not None:
        out: Tensor = _GroupedLinear.apply(rows, weight, bias, plan, bounds, backend == "torch_grouped")
        return out
    return _grouped_linear_composed(rows, weight, bias, plan, backend)


def _grouped_linear_composed(
    rows: Tensor, weight: Tensor, bias: Tensor | None, plan: DispatchPlan, backend: str
) -> Tensor:
    """:func:`grouped_linear` from differentiable ops, without a host sync for ``torch_grouped``.

    The device path, and the double backward of the CPU path.
    """
    num_experts = weight.shape[0]
    if backend == "torch_grouped":
        offs = plan.expert_offsets[1:].to(torch.int32)
        out = F.grouped_mm(rows, weight.transpose(-2, -1), offs=offs)
    else:
        bounds = plan.expert_offsets.tolist()
        pieces = [F.linear(rows[bounds[e] : bounds[e + 1]], weight[e]) for e in range(num_experts)]
        pieces.append(rows.new_zeros(plan.num_rows - bounds[-1], weight.shape[1]))
        out = torch.cat(pieces, 0)
    if bias is not None:
        out = out + _row_bias(bias, plan)
    # Masked after the bias, so the gradient reaching the bias GEMM and grouped_mm is zero on trash rows
    # (grouped_mm leaves rows past offs[-1] uninitialised, also in its backward).
    return _zero_trash(out, plan, None)


def _row_bias(bias: Tensor, plan: DispatchPlan) -> Tensor:
    """Bias of each row's expert (zero for trash rows) as a one-hot product.

    Its gradient is then a GEMM (a fixed-order reduction) rather than an ``index_add_``.
    """
    one_hot = F.one_hot(plan.row_expert(), plan.num_experts + 1)[:, : plan.num_experts]
    return one_hot.to(bias.dtype) @ bias


def _segment_mm(a: Tensor, b: Tensor, bounds: list[int], grouped: bool, offs: Tensor | None) -> Tensor:
    """``out[r] = a[r] @ b[e(r)]`` for the rows of each expert; trash rows zero.

    Shapes:
        - a: ``[A, M]``
        - b: ``[E, M, N]`` (any strides)
        - output: ``[A, N]``
    """
    if grouped:
        out = F.grouped_mm(a, b, offs=offs)
    else:
        out = a.new_empty(a.shape[0], b.shape[-1])
        for e in range(b.shape[0]):
            lo, hi = bounds[e], bounds[e + 1]
            if hi > lo:
                torch.mm(a[lo:hi], b[e], out=out[lo:hi])
    if bounds[-1] < out.shape[0]:
        out[bounds[-1] :].zero_()
    return out


def _segment_outer(g: Tensor, rows: Tensor, bounds: list[int], grouped: bool, offs: Tensor | None) -> Tensor:
    """Per expert ``g_e^T @ rows_e`` over its rows (the weight gradient); zero for experts without rows.

    Shapes:
        - g: ``[A, N]``
        - rows: ``[A, M]``
        - output: ``[E, N, M]``
    """
    num_experts = len(bounds) - 1
    if grouped:
        return F.grouped_mm(g.t(), rows, offs=offs)
    out = g.new_empty(num_experts, g.shape[1], rows.shape[1])
    for e in range(num_experts):
        lo, hi = bounds[e], bounds[e + 1]
        if hi > lo:
            torch.mm(g[lo:hi].t(), rows[lo:hi], out=out[e])
        else:
            out[e].zero_()
    return out


def _segment_sum(g: Tensor, bounds: list[int], grouped: bool, offs: Tensor | None) -> Tensor:
    """Per expert, the sum of its rows of ``g`` (the bias gradient), each in a fixed order.

    Shapes:
        - g: ``[A, N]``
        - output: ``[E, N]``
    """
    num_experts = len(bounds) - 1
    if grouped:
        # A ones row times each expert's rows: one grouped GEMV instead of E Python-level reductions.
        # The row is padded so its stride stays 16-byte aligned, as grouped_mm requires.
        pad = -g.shape[0] % 16
        ones = g.new_ones(1, g.shape[0] + pad)[:, : g.shape[0]]
        return F.grouped_mm(ones, g, offs=offs).view(num_experts, g.shape[1])
    out = g.new_empty(num_experts, g.shape[1])
    for e in range(num_experts):
        torch.sum(g[bounds[e] : bounds[e + 1]], 0, out=out[e])
    return out


class _GroupedLinear(torch.autograd.Function):
    """``out[r] = rows[r] @ W[e(r)]^T + b[e(r)]`` on CPU, with host bounds; trash rows zero.

    Forward and backward run the same per-expert GEMMs (``F.grouped_mm`` or a loop of ``mm`` writing into
    one output), the bias is a per-expert broadcast and its gradient a per-expert row sum. Trash rows are
    zeroed in the outputs and never read by the weight and bias gradients.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        rows: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        plan: DispatchPlan,
        bounds: list[int],
        grouped: bool,
    ) -> Tensor:
        offs = _offs(bounds, rows.device) if grouped else None
        out = _segment_mm(rows, weight.transpose(-2, -1), bounds, grouped, offs)
        if bias is not None:
            _add_segment_bias_(out, bias, bounds, plan.counts)
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        rows, weight, bias, plan, bounds, grouped = inputs
        ctx.plan, ctx.bounds, ctx.grouped = plan, bounds, grouped
        ctx.save_for_backward(rows, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[no-untyped-def]
        rows, weight, bias = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            # Double backward: differentiate the composed formulation, which autograd can differentiate again.
            backend = "torch_grouped" if ctx.grouped else "torch_loop"
            inputs = [t for t, n in zip((rows, weight, bias), needs) if n]
            out = _grouped_linear_composed(rows, weight, bias, ctx.plan, backend)
            grads = iter(torch.autograd.grad(out, inputs, grad_out, create_graph=True))
            return (*(next(grads) if n else None for n in needs), None, None, None)
        bounds, grouped = ctx.bounds, ctx.grouped
        grad_out = grad_out.contiguous()
        offs = _offs(bounds, grad_out.device) if grouped else None
        grad_rows = _segment_mm(grad_out, weight, bounds, grouped, offs) if needs[0] else None
        # grad_out's trash rows are never read below: the segments end at bounds[-1].
        grad_weight = _segment_outer(grad_out, rows, bounds, grouped, offs) if needs[1] else None
        grad_bias = _segment_sum(grad_out, bounds, grouped, offs) if needs[2] else None
        return grad_rows, grad_weight, grad_bias, None, None, None


def _add_segment_bias_(out: Tensor, bias: Tensor, bounds: list[int], counts: Tensor) -> None:
    """``out[r] += bias[e(r)]`` for the valid rows, in place.

    Experts with many rows get one broadcast add each (no ``[A, N]`` temporary, which on CPU is a fresh
    allocation and a page-fault bill at every call); many small experts share one ``repeat_interleave``.
    Both add the same value to each element, so the result does not depend on the choice.
    """
    num_experts, valid = len(bounds) - 1, bounds[-1]
    if valid >= _ROWS_PER_EXPERT_FOR_LOOP * num_experts:
        for e in range(num_experts):
            if bounds[e + 1] > bounds[e]:
                out[bounds[e] : bounds[e + 1]].add_(bias[e])
    elif valid > 0:
        out[:valid].add_(bias.repeat_interleave(counts, 0, output_size=valid))


def _offs(bounds: list[int], device: torch.device) -> Tensor:
    """``grouped_mm``'s group ends from host bounds."""
    return torch.tensor(bounds[1:], dtype=torch.int32, device=device)


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
