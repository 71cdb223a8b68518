"""Differentiable functions built from the Triton launchers.

They are the expert MLP on grouped rows, the MLP fused with the combine, and the row gather / combine pair.

Each is an ``autograd.Function`` whose forward and backward call the ``domain_moe::*`` custom ops only, so
``torch.compile(fullgraph=True)`` traces it (the ops are opaque to the compiler and carry fake kernels).

The expert MLP (notation of specs/core.md §4.8: ``Z = X W1^T + b1``, ``U = act(Z)``, ``Y = U W2^T + b2``)
runs as two varlen-M grouped GEMMs, the first reading the tokens through ``sorted_token`` (fused gather)
and applying bias and activation (or the GLU gate) in its epilogue while storing ``Z`` for backward.
Backward is the five kernels of §4.8: ``dZ = (dY W2) * act'(Z)`` (one GEMM with a derivative epilogue),
``dW2 = dY^T U`` and ``dW1 = dZ^T X`` (varlen-K weight-gradient GEMMs, biases reduced in the same pass),
``dX_rows = dZ W1`` and the unit-weight combine ``dX[t] = sum_k dX_rows[row(t, k)]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from domain_moe.core.dispatch.triton.launch import (
    combine_bwd_op,
    combine_fwd_op,
    gather_rows_fwd_op,
    grouped_gemm_bwd_op,
    grouped_gemm_fwd_op,
    grouped_gemm_wgrad_op,
    pick_block_m,
    tile_table,
)
from domain_moe.core.types import DispatchPlan

__all__ = ["combine", "expert_mlp", "gather_rows", "moe_mlp"]


def _check_plan(plan: DispatchPlan, num_experts: int | None, fn: str) -> None:
    if not isinstance(plan, DispatchPlan):
        raise TypeError(f"{fn}: plan must be a DispatchPlan, got {type(plan).__name__}")
    if num_experts is not None and plan.num_experts != num_experts:
        raise ValueError(f"{fn}: the plan routes to {plan.num_experts} experts but the weights hold {num_experts}")


def _forward_mlp(
    x: Tensor,
    w1: Tensor,
    b1: Tensor | None,
    w2: Tensor,
    b2: Tensor | None,
    offsets: Tensor,
    sorted_token: Tensor,
    activation: str,
    glu: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Both expert GEMMs; returns ``(Y, U, Z, table, block_m)``."""
    num_rows = int(sorted_token.shape[0])
    block_m = pick_block_m(num_rows, int(w1.shape[0]))
    # One tile table serves the four varlen-M GEMMs of forward and backward.
    table = tile_table(offsets, num_rows, block_m)
    u, z = grouped_gemm_fwd_op(x, w1, table, b1, sorted_token, None, block_m, False, activation, glu, True)
    y, _ = grouped_gemm_fwd_op(u, w2, table, b2, None, None, block_m, False, "identity", False, False)
    return y, u, z, table, block_m


def _backward_first_layer(
    ctx: torch.autograd.function.FunctionCtx,
    dz: Tensor,
    x: Tensor,
    w1: Tensor,
    offsets: Tensor,
    sorted_token: Tensor,
    row_of_slot: Tensor,
    table: Tensor,
    need_x: bool,
    need_w1: bool,
    need_b1: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    dx = dw1 = db1 = None
    if need_w1 or need_b1:
        dw1, db1_ = grouped_gemm_wgrad_op(x, dz, offsets, sorted_token, True, False, None, need_b1)
        db1 = db1_ if need_b1 else None
        dw1 = dw1 if need_w1 else None
    if need_x:
        dx_rows, _ = grouped_gemm_fwd_op(
            dz,
            w1,
            table,
            None,
            None,
            None,
            ctx.block_m,
            True,
            "identity",
            False,
            False,  # type: ignore[attr-defined]
        )
        dx = combine_fwd_op(dx_rows, row_of_slot, None, None)
    return dx, dw1, db1


class _ExpertMLP(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        w1: Tensor,
        b1: Tensor | None,
        w2: Tensor,
        b2: Tensor | None,
        offsets: Tensor,
        sorted_token: Tensor,
        row_of_slot: Tensor,
        activation: str,
        glu: bool,
    ) -> Tensor:
        y, u, z, table, block_m = _forward_mlp(x, w1, b1, w2, b2, offsets, sorted_token, activation, glu)
        ctx.save_for_backward(x, w1, w2, z, u, offsets, sorted_token, row_of_slot, table)
        ctx.block_m = block_m
        ctx.activation = activation
        ctx.glu = glu
        ctx.has_b1 = b1 is not None
        ctx.has_b2 = b2 is not None
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):  # type: ignore[no-untyped-def, override]
        x, w1, w2, z, u, offsets, sorted_token, row_of_slot, table = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad[:5]
        need_b1 = need_b1 and ctx.has_b1
        need_b2 = need_b2 and ctx.has_b2
        dw2 = db2 = None
        if need_w2 or need_b2:
            dw2, db2_ = grouped_gemm_wgrad_op(u, dy, offsets, None, False, False, None, need_b2)
            db2 = db2_ if need_b2 else None
            dw2 = dw2 if need_w2 else None
        dx = dw1 = db1 = None
        if need_x or need_w1 or need_b1:
            dz = grouped_gemm_bwd_op(dy, w2, z, table, None, None, ctx.block_m, True, ctx.activation, ctx.glu)
            dx, dw1, db1 = _backward_first_layer(
                ctx, dz, x, w1, offsets, sorted_token, row_of_slot, table, need_x, need_w1, need_b1
            )
        return dx, dw1, db1, dw2, db2, None, None, None, None, None


def expert_mlp(
    x: Tensor,
    plan: DispatchPlan,
    w1: Tensor,
    b1: Tensor | None,
    w2: Tensor,
    b2: Tensor | None,
    *,
    activation: str = "gelu",
    glu: bool = False,
) -> Tensor:
    """The expert MLP ``Y_r = act(x[t_r] W1[e]^T + b1[e]) W2[e]^T + b2[e]`` on the plan's grouped rows.

    The same function as :class:`~domain_moe.core.experts.MLPExperts` (``glu=False``) and
    :class:`~domain_moe.core.experts.GLUExperts` (``glu=True``, blocked ``w13``) on the torch backends;
    trash rows are zero. Differentiable w.r.t. ``x`` and all weights and biases.

    Args:
        x: token rows (gathered inside the first GEMM).
        plan: the dispatch plan.
        w1: first-layer weights (``[gate; up]`` blocked with ``glu``).
        b1: first-layer biases or ``None``.
        w2: second-layer weights.
        b2: second-layer biases or ``None``.
        activation: ``"identity"``, ``"relu"``, ``"gelu"``, ``"gelu_tanh"`` or ``"silu"``.
        glu: gated hidden unit ``act(gate) * up``.

    Returns:
        Expert outputs in plan order.

    Shapes:
        - x: ``[T, D]``; w1: ``[E, H_w, D]`` (``H_w = 2H`` with ``glu``); b1: ``[E, H_w]``
        - w2: ``[E, D_out, H]``; b2: ``[E, D_out]``; output: ``[A, D_out]``
    """
    _check_plan(plan, int(w1.shape[0]), "expert_mlp")
    out: Tensor = _ExpertMLP.apply(
        x, w1, b1, w2, b2, plan.expert_offsets, plan.sorted_token, plan.row_of_slot, activation, glu
    )
    return out


class _MoEMLP(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        weight: Tensor,
        w1: Tensor,
        b1: Tensor | None,
        w2: Tensor,
        b2: Tensor | None,
        init: Tensor | None,
        offsets: Tensor,
        sorted_token: Tensor,
        row_of_slot: Tensor,
        slot_of_row: Tensor,
        activation: str,
        glu: bool,
    ) -> Tensor:
        y, u, z, table, block_m = _forward_mlp(x, w1, b1, w2, b2, offsets, sorted_token, activation, glu)
        out = combine_fwd_op(y, row_of_slot, weight, init)
        # Router weight of each grouped row: the scale of the gathered output gradient in backward.
        row_w = weight.reshape(-1).index_select(0, slot_of_row)
        ctx.save_for_backward(x, w1, w2, z, u, y, row_w, offsets, sorted_token, row_of_slot, table)
        ctx.block_m = block_m
        ctx.activation = activation
        ctx.glu = glu
        ctx.has_b1 = b1 is not None
        ctx.has_b2 = b2 is not None
        ctx.weight_dtype = weight.dtype
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):  # type: ignore[no-untyped-def, override]
        x, w1, w2, z, u, y, row_w, offsets, sorted_token, row_of_slot, table = ctx.saved_tensors
        need_x, need_weight, need_w1, need_b1, need_w2, need_b2, need_init = ctx.needs_input_grad[:7]
        need_b1 = need_b1 and ctx.has_b1
        need_b2 = need_b2 and ctx.has_b2
        d_weight = None
        if need_weight:
            d_weight = combine_bwd_op(dout, y, row_of_slot).to(ctx.weight_dtype)
        dw2 = db2 = None
        if need_w2 or need_b2:
            # dY_r = w_r * dOut[t_r] is never materialised: gathered and scaled inside the GEMM's loads.
            dw2, db2_ = grouped_gemm_wgrad_op(u, dout, offsets, sorted_token, False, True, row_w, need_b2)
            db2 = db2_ if need_b2 else None
            dw2 = dw2 if need_w2 else None
        dx = dw1 = db1 = None
        if need_x or need_w1 or need_b1:
            dz = grouped_gemm_bwd_op(
                dout, w2, z, table, sorted_token, row_w, ctx.block_m, True, ctx.activation, ctx.glu
            )
            dx, dw1, db1 = _backward_first_layer(
                ctx, dz, x, w1, offsets, sorted_token, row_of_slot, table, need_x, need_w1, need_b1
            )
        d_init = dout if need_init else None
        return dx, d_weight, dw1, db1, dw2, db2, d_init, None, None, None, None, None, None


def moe_mlp(
    x: Tensor,
    weight: Tensor,
    plan: DispatchPlan,
    w1: Tensor,
    b1: Tensor | None,
    w2: Tensor,
    b2: Tensor | None,
    *,
    activation: str = "gelu",
    glu: bool = False,
    init: Tensor | None = None,
) -> Tensor:
    """Expert MLP and combine in one: ``out[t] = init[t] + sum_k w[t, k] * Y[row(t, k)]``.

    Equals ``combine(expert_mlp(x, plan, ...), weight, plan, init)`` of the reference ops, but the backward
    never materialises the per-row output gradient ``w_r * dOut[t_r]``: both backward GEMMs read ``dOut``
    through ``sorted_token`` and scale it by the router weight in their loads, and the router-weight
    gradient ``dw[t, k] = <dOut[t], Y[row(t, k)]>`` comes from the combine-shaped ``combine_bwd`` kernel.

    Args:
        x: token rows.
        weight: combine weight per slot (the router's ``topk_w``, differentiable).
        plan: the dispatch plan (built from these weights' values).
        w1: first-layer weights.
        b1: first-layer biases or ``None``.
        w2: second-layer weights.
        b2: second-layer biases or ``None``.
        activation: as in :func:`expert_mlp`.
        glu: as in :func:`expert_mlp`.
        init: per-token start value (shared experts, residual) or ``None``.

    Returns:
        Per-token outputs.

    Shapes:
        - x: ``[T, D]``; weight: ``[T, K]``; init, output: ``[T, D_out]``; weights as in :func:`expert_mlp`
    """
    _check_plan(plan, int(w1.shape[0]), "moe_mlp")
    out: Tensor = _MoEMLP.apply(
        x, weight, w1, b1, w2, b2, init, plan.expert_offsets, plan.sorted_token, plan.row_of_slot,
        plan.slot_of_row, activation, glu,
    )  # fmt: skip
    return out


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, sorted_token: Tensor, offsets: Tensor, row_of_slot: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(row_of_slot)
        out: Tensor = gather_rows_fwd_op(x, sorted_token, offsets, None, None)
        return out

    @staticmethod
    def backward(ctx, d_rows: Tensor):  # type: ignore[no-untyped-def, override]
        (row_of_slot,) = ctx.saved_tensors
        return combine_fwd_op(d_rows, row_of_slot, None, None), None, None, None


def gather_rows(x: Tensor, plan: DispatchPlan) -> Tensor:
    """Triton twin of :func:`domain_moe.core.dispatch.gather_rows` (trash rows zero; backward = combine).

    Shapes:
        - x: ``[T, D]``; output: ``[A, D]``
    """
    _check_plan(plan, None, "gather_rows")
    out: Tensor = _GatherRows.apply(x, plan.sorted_token, plan.expert_offsets, plan.row_of_slot)
    return out


class _Combine(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        rows: Tensor,
        weight: Tensor,
        init: Tensor | None,
        row_of_slot: Tensor,
        sorted_token: Tensor,
        offsets: Tensor,
        slot_of_row: Tensor,
    ) -> Tensor:
        ctx.save_for_backward(rows, weight, row_of_slot, sorted_token, offsets, slot_of_row)
        out: Tensor = combine_fwd_op(rows, row_of_slot, weight, init)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):  # type: ignore[no-untyped-def, override]
        rows, weight, row_of_slot, sorted_token, offsets, slot_of_row = ctx.saved_tensors
        d_rows = d_weight = None
        if ctx.needs_input_grad[0]:
            d_rows = gather_rows_fwd_op(dout, sorted_token, offsets, weight, slot_of_row)
        if ctx.needs_input_grad[1]:
            d_weight = combine_bwd_op(dout, rows, row_of_slot).to(weight.dtype)
        d_init = dout if ctx.needs_input_grad[2] else None
        return d_rows, d_weight, d_init, None, None, None, None


def combine(rows: Tensor, weight: Tensor, plan: DispatchPlan, init: Tensor | None = None) -> Tensor:
    """Triton twin of :func:`domain_moe.core.dispatch.combine`.

    Deterministic, and differentiable w.r.t. the rows, the weights (``dw[t, k] = <dOut[t], rows[row(t, k)]>``)
    and ``init``.

    Shapes:
        - rows: ``[A, D]``; weight: ``[T, K]``; init, output: ``[T, D]``
    """
    _check_plan(plan, None, "combine")
    out: Tensor = _Combine.apply(
        rows, weight, init, plan.row_of_slot, plan.sorted_token, plan.expert_offsets, plan.slot_of_row
    )
    return out
