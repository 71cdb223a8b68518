"""``@triton.jit`` bodies of the dispatch kernels (specs/core.md §4.8).

Every kernel uses plain pointer arithmetic (block pointers are gone from recent triton releases), masks
every load and store (an out-of-bounds store corrupts the interpreter's heap), accumulates in fp32 and
takes an ``INT64`` path that widens row indices before they are multiplied by a stride (rows x width can
exceed 2**31 on large layers). Launch logic, validation and configs live in ``launch.py``; the header
comment of each kernel gives its shapes and dtypes.

Notation: ``A`` grouped rows (the plan's host bound ``T * K``), ``T`` tokens, ``E`` experts, ``K_DIM`` the
reduction width, ``N`` the output width, ``G`` tiles in the tile table.

The tile table of the varlen-M GEMMs is an ``int32 [3, G]`` tensor: row 0 the bucket of each M tile
(``0..E-1`` an expert, ``E`` the trash bucket whose tiles only write zeros, ``E + 1`` a surplus program that
exits at once), row 1 its first grouped row, row 2 one past its bucket's last row.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "ACTIVATION_CODES",
    "_combine_dw_kernel",
    "_combine_kernel",
    "_gather_rows_kernel",
    "_grouped_gemm_bwd_kernel",
    "_grouped_gemm_fwd_kernel",
    "_grouped_gemm_wgrad_kernel",
    "_router_topk_kernel",
]

#: Activation name -> the ``ACT`` constexpr of the GEMM epilogues.
ACTIVATION_CODES = {"identity": 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "silu": 4}


@triton.jit
def _tanh(x):
    # tl has no tanh on every release we support; 2*sigmoid(2x) - 1 never overflows in fp32.
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _act(z, ACT: tl.constexpr):
    """Activation of an fp32 tile (codes from ACTIVATION_CODES)."""
    out = z
    if ACT == 1:
        out = tl.maximum(z, 0.0)
    elif ACT == 2:
        out = 0.5 * z * (1.0 + tl.erf(z * 0.7071067811865476))
    elif ACT == 3:
        inner = 0.7978845608028654 * (z + 0.044715 * z * z * z)
        out = 0.5 * z * (1.0 + _tanh(inner))
    elif ACT == 4:
        out = z * tl.sigmoid(z)
    return out


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    """Derivative of the activation at an fp32 tile (the formulas of torch's own backward kernels)."""
    out = tl.full(z.shape, 1.0, tl.float32)
    if ACT == 1:
        out = tl.where(z > 0.0, 1.0, 0.0)
    elif ACT == 2:
        cdf = 0.5 * (1.0 + tl.erf(z * 0.7071067811865476))
        pdf = tl.exp(-0.5 * z * z) * 0.3989422804014327
        out = cdf + z * pdf
    elif ACT == 3:
        inner = 0.7978845608028654 * (z + 0.044715 * z * z * z)
        t = _tanh(inner)
        out = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * z * z)
    elif ACT == 4:
        s = tl.sigmoid(z)
        out = s * (1.0 + z * (1.0 - s))
    return out


@triton.jit
def _tile_of(table_ptr, num_tiles_m, N, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """Map the 1-D program id to (M tile, N tile) and read the M tile's table entry.

    The GROUP_M swizzle makes programs that run together share weight tiles of one expert and row tiles
    in L2.
    """
    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * num_pid_n
    first_m = (pid // width) * GROUP_M
    size_m = tl.minimum(num_tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m
    bucket = tl.load(table_ptr + pid_m)
    row0 = tl.load(table_ptr + num_tiles_m + pid_m)
    row_end = tl.load(table_ptr + 2 * num_tiles_m + pid_m)
    return pid_n, bucket, row0, row_end


@triton.jit
def _gemm_tile(
    x_ptr,
    w_ptr,
    src,
    src_mask,
    expert,
    cols,
    col_mask,
    k_end,
    K_DIM,
    up_offset,
    stride_xm,
    stride_xk,
    stride_we,
    stride_wn,
    stride_wk,
    TWO: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """``acc[m, n] = sum_k X[src[m], k] * W[expert, cols[n], k]`` over ``k < k_end``, in fp32.

    With TWO, the same for the weight rows ``cols + up_offset`` (the GLU's up half), sharing each loaded
    X tile.
    """
    ks = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + src[:, None] * stride_xm + ks[None, :] * stride_xk
    w_ptrs = w_ptr + expert * stride_we + cols[None, :] * stride_wn + ks[:, None] * stride_wk
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k_end, BLOCK_K):
        k_mask = (k0 + ks) < K_DIM
        a = tl.load(x_ptrs, mask=src_mask[:, None] & k_mask[None, :], other=0.0)
        w_mask = k_mask[:, None] & col_mask[None, :]
        b = tl.load(w_ptrs, mask=w_mask, other=0.0)
        acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
        if TWO:
            b_up = tl.load(w_ptrs + up_offset * stride_wn, mask=w_mask, other=0.0)
            acc_up = tl.dot(a, b_up, acc_up, input_precision=DOT_PRECISION)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk
    return acc, acc_up


# grouped_gemm_fwd (varlen-M):
#   x     [T, K_DIM] when GATHER (read through src) else [A, K_DIM]; fp32 | fp16 | bf16
#   w     [E, N * (2 if GLU else 1), K_DIM] addressed by (stride_we, stride_wn, stride_wk), so the
#         transposed layout [E, K_DIM, N] is the same kernel with swapped strides; dtype of x
#   b     [E, N * (2 if GLU else 1)] or unused;  src [A] int64;  scale [A] any float, or unused
#   table [3, G] int32 (see module docstring)
#   out   [A, N] dtype of x:  act(scale_r * x[src(r)] @ w[e(r)]^T + b[e(r)]); GLU: act(gate) * up
#   z     [A, N * (2 if GLU else 1)] dtype of x: the pre-activation (STORE_Z), GLU blocked [gate | up]
#   Trash-bucket rows are written as zeros; surplus programs exit.
@triton.jit
def _grouped_gemm_fwd_kernel(
    x_ptr,
    w_ptr,
    b_ptr,
    src_ptr,
    scale_ptr,
    table_ptr,
    out_ptr,
    z_ptr,
    N,
    K_DIM,
    num_experts,
    num_src_rows,
    num_tiles_m,
    stride_xm,
    stride_xk,
    stride_we,
    stride_wn,
    stride_wk,
    stride_be,
    stride_bn,
    stride_om,
    stride_on,
    stride_zm,
    stride_zn,
    ACT: tl.constexpr,
    GLU: tl.constexpr,
    GATHER: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    STORE_Z: tl.constexpr,
    INT64: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid_n, bucket, row0, row_end = _tile_of(table_ptr, num_tiles_m, N, BLOCK_N, GROUP_M)
    if bucket > num_experts:
        return
    live = bucket < num_experts
    rows = row0 + tl.arange(0, BLOCK_M)
    row_mask = rows < row_end
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    if GATHER:
        src = tl.load(src_ptr + rows, mask=row_mask, other=0)
        src_mask = row_mask & (src >= 0) & (src < num_src_rows)
    else:
        src = rows
        src_mask = row_mask
    expert = bucket
    if INT64:
        rows = rows.to(tl.int64)
        src = src.to(tl.int64)
        cols = cols.to(tl.int64)
        expert = expert.to(tl.int64)
    # Trash tiles skip the reduction: a zero accumulator with a masked bias gives act(0) = 0 rows.
    k_end = tl.where(live, K_DIM, 0)
    acc, acc_up = _gemm_tile(
        x_ptr, w_ptr, src, src_mask, expert, cols, col_mask, k_end, K_DIM, N,
        stride_xm, stride_xk, stride_we, stride_wn, stride_wk,
        GLU, DOT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_K,
    )  # fmt: skip
    if HAS_SCALE:
        scale = tl.load(scale_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
        acc = acc * scale[:, None]
        acc_up = acc_up * scale[:, None]
    if HAS_BIAS:
        b_ptrs = b_ptr + expert * stride_be + cols * stride_bn
        acc += tl.load(b_ptrs, mask=col_mask & live, other=0.0).to(tl.float32)[None, :]
        if GLU:
            acc_up += tl.load(b_ptrs + N * stride_bn, mask=col_mask & live, other=0.0).to(tl.float32)[None, :]
    out_dtype = out_ptr.dtype.element_ty
    # The activation sees the pre-activation rounded to the storage dtype, exactly what backward reloads.
    acc = acc.to(out_dtype).to(tl.float32)
    acc_up = acc_up.to(out_dtype).to(tl.float32)
    out_mask = row_mask[:, None] & col_mask[None, :]
    if STORE_Z:
        z_ptrs = z_ptr + rows[:, None] * stride_zm + cols[None, :] * stride_zn
        tl.store(z_ptrs, acc.to(out_dtype), mask=out_mask)
        if GLU:
            tl.store(z_ptrs + N * stride_zn, acc_up.to(out_dtype), mask=out_mask)
    h = _act(acc, ACT)
    if GLU:
        h = h * acc_up
    out_ptrs = out_ptr + rows[:, None] * stride_om + cols[None, :] * stride_on
    tl.store(out_ptrs, h.to(out_dtype), mask=out_mask)


# grouped_gemm_bwd (varlen-M data gradient with the activation-derivative epilogue):
#   g     [T, K_DIM] when GATHER else [A, K_DIM]: the gradient of the layer's output rows (K_DIM = D_out)
#   w     [E, K_DIM, N] read as [E, N, K_DIM] through strides (the second layer's weight, H = N)
#   z     [A, N * (2 if GLU else 1)]: the saved pre-activation;  scale [A] or unused;  table [3, G] int32
#   dz    [A, N * (2 if GLU else 1)] dtype of g:  dU = scale_r * g[src(r)] @ w[e(r)], then
#         dz = dU * act'(z) or, for GLU, [dU * up * act'(gate) | dU * act(gate)]. Trash rows are zeros.
@triton.jit
def _grouped_gemm_bwd_kernel(
    g_ptr,
    w_ptr,
    src_ptr,
    scale_ptr,
    table_ptr,
    z_ptr,
    dz_ptr,
    N,
    K_DIM,
    num_experts,
    num_src_rows,
    num_tiles_m,
    stride_gm,
    stride_gk,
    stride_we,
    stride_wn,
    stride_wk,
    stride_zm,
    stride_zn,
    stride_dm,
    stride_dn,
    ACT: tl.constexpr,
    GLU: tl.constexpr,
    GATHER: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    INT64: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid_n, bucket, row0, row_end = _tile_of(table_ptr, num_tiles_m, N, BLOCK_N, GROUP_M)
    if bucket > num_experts:
        return
    live = bucket < num_experts
    rows = row0 + tl.arange(0, BLOCK_M)
    row_mask = rows < row_end
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    if GATHER:
        src = tl.load(src_ptr + rows, mask=row_mask, other=0)
        src_mask = row_mask & (src >= 0) & (src < num_src_rows)
    else:
        src = rows
        src_mask = row_mask
    expert = bucket
    if INT64:
        rows = rows.to(tl.int64)
        src = src.to(tl.int64)
        cols = cols.to(tl.int64)
        expert = expert.to(tl.int64)
    k_end = tl.where(live, K_DIM, 0)
    acc, _unused = _gemm_tile(
        g_ptr, w_ptr, src, src_mask, expert, cols, col_mask, k_end, K_DIM, 0,
        stride_gm, stride_gk, stride_we, stride_wn, stride_wk,
        False, DOT_PRECISION, BLOCK_M, BLOCK_N, BLOCK_K,
    )  # fmt: skip
    if HAS_SCALE:
        scale = tl.load(scale_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
        acc = acc * scale[:, None]
    out_dtype = dz_ptr.dtype.element_ty
    acc = acc.to(out_dtype).to(tl.float32)
    out_mask = row_mask[:, None] & col_mask[None, :]
    z_mask = out_mask & live
    z_ptrs = z_ptr + rows[:, None] * stride_zm + cols[None, :] * stride_zn
    gate = tl.load(z_ptrs, mask=z_mask, other=0.0).to(tl.float32)
    dz_ptrs = dz_ptr + rows[:, None] * stride_dm + cols[None, :] * stride_dn
    if GLU:
        up = tl.load(z_ptrs + N * stride_zn, mask=z_mask, other=0.0).to(tl.float32)
        tl.store(dz_ptrs, (acc * up * _act_grad(gate, ACT)).to(out_dtype), mask=out_mask)
        tl.store(dz_ptrs + N * stride_dn, (acc * _act(gate, ACT)).to(out_dtype), mask=out_mask)
    else:
        tl.store(dz_ptrs, (acc * _act_grad(gate, ACT)).to(out_dtype), mask=out_mask)


# grouped_gemm_wgrad (varlen-K):  dw[e] = sum_{r in e} G_r^T X_r,  db[e] = sum_{r in e} G_r
#   x     [T, K_DIM] when GATHER_X (read through src) else [A, K_DIM]
#   g     [T, N] when GATHER_G else [A, N]; G_r = scale_r * g[row] when HAS_SCALE
#   offs  [E + 1] int64 expert offsets;  src [A] int64;  scale [A] or unused
#   dw    [E, N, K_DIM] (dtype of x);  db [E, N] (HAS_BIAS)
#   Grid (E, cdiv(N, BLOCK_N) * cdiv(K_DIM, BLOCK_K)): each program owns one output tile and walks its
#   expert's rows in a fixed order, so the result is deterministic without atomics.
@triton.jit
def _grouped_gemm_wgrad_kernel(
    x_ptr,
    g_ptr,
    offs_ptr,
    src_ptr,
    scale_ptr,
    dw_ptr,
    db_ptr,
    N,
    K_DIM,
    num_src_rows,
    rows_hint,  # unused by the body: the autotuner keys on it (a power-of-2 bucket of rows per expert)
    stride_xm,
    stride_xk,
    stride_gm,
    stride_gn,
    stride_de,
    stride_dn,
    stride_dk,
    stride_be,
    stride_bn,
    GATHER_X: tl.constexpr,
    GATHER_G: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    INT64: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    expert = tl.program_id(0)
    pid = tl.program_id(1)
    num_pid_k = tl.cdiv(K_DIM, BLOCK_K)
    pid_n = pid // num_pid_k
    pid_k = pid % num_pid_k
    start = tl.load(offs_ptr + expert)
    end = tl.load(offs_ptr + expert + 1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    ks = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    k_mask = ks < K_DIM
    if INT64:
        cols = cols.to(tl.int64)
        ks = ks.to(tl.int64)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    db = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for m0 in range(start, end, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_mask = rows < end
        if GATHER_X or GATHER_G:
            src = tl.load(src_ptr + rows, mask=row_mask, other=0)
            src_ok = row_mask & (src >= 0) & (src < num_src_rows)
        else:
            src = rows
            src_ok = row_mask
        x_rows = rows
        x_mask = row_mask
        if GATHER_X:
            x_rows = src
            x_mask = src_ok
        g_rows = rows
        g_mask = row_mask
        if GATHER_G:
            g_rows = src
            g_mask = src_ok
        if INT64:
            x_rows = x_rows.to(tl.int64)
            g_rows = g_rows.to(tl.int64)
        g_t = tl.load(
            g_ptr + g_rows[None, :] * stride_gm + cols[:, None] * stride_gn,
            mask=g_mask[None, :] & col_mask[:, None],
            other=0.0,
        )
        if HAS_SCALE:
            scale = tl.load(scale_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
            # Rounded back to the operand dtype, as the unfused gradient would be before its GEMM.
            g_t = (g_t.to(tl.float32) * scale[None, :]).to(g_ptr.dtype.element_ty)
        x = tl.load(
            x_ptr + x_rows[:, None] * stride_xm + ks[None, :] * stride_xk,
            mask=x_mask[:, None] & k_mask[None, :],
            other=0.0,
        )
        acc = tl.dot(g_t, x, acc, input_precision=DOT_PRECISION)
        if HAS_BIAS:
            db += tl.sum(g_t.to(tl.float32), axis=1)
    e = expert
    if INT64:
        e = e.to(tl.int64)
    dw_ptrs = dw_ptr + e * stride_de + cols[:, None] * stride_dn + ks[None, :] * stride_dk
    tl.store(dw_ptrs, acc.to(dw_ptr.dtype.element_ty), mask=col_mask[:, None] & k_mask[None, :])
    if HAS_BIAS:
        db_ptrs = db_ptr + e * stride_be + cols * stride_bn
        tl.store(db_ptrs, db.to(db_ptr.dtype.element_ty), mask=col_mask & (pid_k == 0))


# combine:  out[t] = init[t] + sum_{j < K} w[t, j] * y[row_of_slot[t, j]]  (rows < 0 or >= A skipped)
#   y [A, D] any float;  row_of_slot [T, K] int64;  w [T, K] any float (HAS_WEIGHT, else 1);
#   init [T, D] (HAS_INIT);  out [T, D]. Grid (cdiv(T, BLOCK_T), cdiv(D, BLOCK_D)); the slot loop runs in
#   a fixed order with an fp32 accumulator, so the result is bitwise reproducible.
@triton.jit
def _combine_kernel(
    y_ptr,
    row_ptr,
    w_ptr,
    init_ptr,
    out_ptr,
    num_tokens,
    D,
    top_k,
    num_rows,
    stride_ym,
    stride_yd,
    stride_rt,
    stride_rk,
    stride_wt,
    stride_wk,
    stride_it,
    stride_id,
    stride_ot,
    stride_od,
    HAS_WEIGHT: tl.constexpr,
    HAS_INIT: tl.constexpr,
    INT64: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    t_mask = tokens < num_tokens
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = cols < D
    if INT64:
        tokens = tokens.to(tl.int64)
        cols = cols.to(tl.int64)
    mask = t_mask[:, None] & d_mask[None, :]
    acc = tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32)
    if HAS_INIT:
        init_ptrs = init_ptr + tokens[:, None] * stride_it + cols[None, :] * stride_id
        acc += tl.load(init_ptrs, mask=mask, other=0.0).to(tl.float32)
    for j in range(0, top_k):
        row = tl.load(row_ptr + tokens * stride_rt + j * stride_rk, mask=t_mask, other=-1)
        valid = t_mask & (row >= 0) & (row < num_rows)
        if INT64:
            row = row.to(tl.int64)
        y_ptrs = y_ptr + row[:, None] * stride_ym + cols[None, :] * stride_yd
        y = tl.load(y_ptrs, mask=valid[:, None] & d_mask[None, :], other=0.0)
        if HAS_WEIGHT:
            w = tl.load(w_ptr + tokens * stride_wt + j * stride_wk, mask=valid, other=0.0).to(tl.float32)
            acc += w[:, None] * y.to(tl.float32)
        else:
            acc += y.to(tl.float32)
    out_ptrs = out_ptr + tokens[:, None] * stride_ot + cols[None, :] * stride_od
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


# combine_dw (router-weight gradient):  dw[t, j] = <dout[t], y[row_of_slot[t, j]]>, 0 for rows < 0
#   dout [T, D];  y [A, D];  row_of_slot [T, K] int64;  dw [T, K] fp32.
#   Grid (cdiv(T, BLOCK_T),): each program walks the whole width in a fixed order (no atomics).
@triton.jit
def _combine_dw_kernel(
    dout_ptr,
    y_ptr,
    row_ptr,
    dw_ptr,
    num_tokens,
    D,
    top_k,
    num_rows,
    stride_gt,
    stride_gd,
    stride_ym,
    stride_yd,
    stride_rt,
    stride_rk,
    stride_wt,
    stride_wk,
    INT64: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    t_mask = tokens < num_tokens
    if INT64:
        tokens = tokens.to(tl.int64)
    slots = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_T, BLOCK_K), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        cols = d0 + tl.arange(0, BLOCK_D)
        d_mask = cols < D
        g = tl.load(
            dout_ptr + tokens[:, None] * stride_gt + cols[None, :] * stride_gd,
            mask=t_mask[:, None] & d_mask[None, :],
            other=0.0,
        ).to(tl.float32)
        for j in range(0, top_k):
            row = tl.load(row_ptr + tokens * stride_rt + j * stride_rk, mask=t_mask, other=-1)
            valid = t_mask & (row >= 0) & (row < num_rows)
            if INT64:
                row = row.to(tl.int64)
            y = tl.load(
                y_ptr + row[:, None] * stride_ym + cols[None, :] * stride_yd,
                mask=valid[:, None] & d_mask[None, :],
                other=0.0,
            ).to(tl.float32)
            part = tl.sum(g * y, axis=1)
            acc = tl.where(slots[None, :] == j, acc + part[:, None], acc)
    dw_ptrs = dw_ptr + tokens[:, None] * stride_wt + slots[None, :] * stride_wk
    tl.store(dw_ptrs, acc, mask=t_mask[:, None] & (slots[None, :] < top_k))


# gather_rows:  out[r] = scale_r * x[src[r]] for r < offs[E], zeros for the trash rows r >= offs[E]
#   x [T, D];  src [A] int64;  offs [E + 1] int64;  scale_r = w[slot_of_row[r] // K, slot_of_row[r] % K]
#   with w [T, K] (HAS_WEIGHT) else 1;  out [A, D] dtype of x. Grid (cdiv(A, BLOCK_R), cdiv(D, BLOCK_D)).
@triton.jit
def _gather_rows_kernel(
    x_ptr,
    src_ptr,
    offs_ptr,
    w_ptr,
    slot_ptr,
    out_ptr,
    num_rows,
    num_tokens,
    D,
    num_experts,
    top_k,
    stride_xt,
    stride_xd,
    stride_wt,
    stride_wk,
    stride_om,
    stride_od,
    HAS_WEIGHT: tl.constexpr,
    INT64: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = cols < D
    in_range = rows < num_rows
    valid_rows = tl.load(offs_ptr + num_experts)
    src = tl.load(src_ptr + rows, mask=in_range, other=0)
    valid = in_range & (rows < valid_rows) & (src >= 0) & (src < num_tokens)
    if INT64:
        rows = rows.to(tl.int64)
        src = src.to(tl.int64)
        cols = cols.to(tl.int64)
    x_ptrs = x_ptr + src[:, None] * stride_xt + cols[None, :] * stride_xd
    x = tl.load(x_ptrs, mask=valid[:, None] & d_mask[None, :], other=0.0)
    if HAS_WEIGHT:
        slot = tl.load(slot_ptr + rows, mask=valid, other=0)
        w = tl.load(w_ptr + (slot // top_k) * stride_wt + (slot % top_k) * stride_wk, mask=valid, other=0.0)
        x = x.to(tl.float32) * w.to(tl.float32)[:, None]
    out_ptrs = out_ptr + rows[:, None] * stride_om + cols[None, :] * stride_od
    tl.store(out_ptrs, x.to(out_ptr.dtype.element_ty), mask=in_range[:, None] & d_mask[None, :])


# router_topk:  logits [T, E] (any float, read as fp32) -> probs = softmax | sigmoid, selection on
#   probs (+ bias [E] fp32, HAS_BIAS) by an iterative max/argmax loop (ties go to the lowest index),
#   weights = probs at the chosen experts, renormalised (RENORM) and scaled by route_scale.
#   Outputs: idx [T, K] int64, w [T, K] fp32, lse [T] fp32 (logsumexp of the logits),
#   counts [E] int64 (+= selections of this block: integer atomics are order-independent, hence
#   deterministic), prob_part [num_programs, E] fp32: per-block sums of the balance-loss probabilities
#   (softmax probs, or the sigmoid scores normalised per token), reduced by the launcher in a fixed order.
@triton.jit
def _router_topk_kernel(
    logits_ptr,
    bias_ptr,
    idx_ptr,
    w_ptr,
    lse_ptr,
    counts_ptr,
    part_ptr,
    num_tokens,
    num_experts,
    route_scale,
    stride_lt,
    stride_le,
    SIGMOID: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    RENORM: tl.constexpr,
    TOP_K: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_E: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    tokens = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    t_mask = tokens < num_tokens
    experts = tl.arange(0, BLOCK_E)
    e_mask = experts < num_experts
    mask = t_mask[:, None] & e_mask[None, :]
    tok64 = tokens.to(tl.int64)
    logits = tl.load(logits_ptr + tok64[:, None] * stride_lt + experts[None, :] * stride_le, mask=mask, other=0.0)
    logits = logits.to(tl.float32)
    # Padding experts get -inf so they are never the max nor selected; padding tokens keep finite zeros.
    logits = tl.where(e_mask[None, :], logits, float("-inf"))
    row_max = tl.max(logits, axis=1)
    ex = tl.exp(logits - row_max[:, None])
    denom = tl.sum(ex, axis=1)
    lse = row_max + tl.log(denom)
    if SIGMOID:
        probs = tl.where(e_mask[None, :], tl.sigmoid(logits), 0.0)
        balance = probs / tl.maximum(tl.sum(probs, axis=1), 1e-20)[:, None]
    else:
        probs = ex / denom[:, None]
        balance = probs
    select = probs
    if HAS_BIAS:
        bias = tl.load(bias_ptr + experts, mask=e_mask, other=0.0).to(tl.float32)
        select = select + bias[None, :]
    select = tl.where(e_mask[None, :], select, float("-inf"))
    slots = tl.arange(0, BLOCK_K)
    chosen_w = tl.zeros((BLOCK_T, BLOCK_K), dtype=tl.float32)
    chosen_i = tl.zeros((BLOCK_T, BLOCK_K), dtype=tl.int32)
    picked = tl.zeros((BLOCK_T, BLOCK_E), dtype=tl.int32)
    for k in tl.static_range(TOP_K):
        best = tl.argmax(select, axis=1, tie_break_left=True)
        hit = experts[None, :] == best[:, None]
        w_k = tl.sum(tl.where(hit, probs, 0.0), axis=1)
        chosen_w = tl.where(slots[None, :] == k, w_k[:, None], chosen_w)
        chosen_i = tl.where(slots[None, :] == k, best[:, None], chosen_i)
        picked += hit.to(tl.int32)
        select = tl.where(hit, float("-inf"), select)
    if RENORM:
        chosen_w = chosen_w / tl.maximum(tl.sum(chosen_w, axis=1), 1e-20)[:, None]
    chosen_w = chosen_w * route_scale
    k_mask = t_mask[:, None] & (slots[None, :] < TOP_K)
    out_off = tok64[:, None] * TOP_K + slots[None, :]
    tl.store(idx_ptr + out_off, chosen_i.to(tl.int64), mask=k_mask)
    tl.store(w_ptr + out_off, chosen_w, mask=k_mask)
    tl.store(lse_ptr + tok64, lse, mask=t_mask)
    picked = tl.where(t_mask[:, None], picked, 0)
    tl.atomic_add(counts_ptr + experts, tl.sum(picked, axis=0).to(tl.int64), mask=e_mask)
    part = tl.sum(tl.where(mask, balance, 0.0), axis=0)
    tl.store(part_ptr + pid * num_experts + experts, part, mask=e_mask)
