"""Launchers of the dispatch kernels: validation, allocation, grids, configs, and ``torch.library`` ops.

Two layers per kernel:

* a launcher ``<op>_fwd`` / ``<op>_bwd`` that checks its arguments (``ValueError``/``TypeError`` naming the
  argument, the expected and the got), allocates the outputs (or writes into ``out=`` views, which the
  guard-region tests use), picks the config and launches;
* a ``torch.library.custom_op`` named ``domain_moe::<op>`` around it, with a ``register_fake`` shape
  function, so ``torch.compile(fullgraph=True)`` sees one opaque op instead of a raw Triton launch (which
  fails under the interpreter, specs/core.md §4.10). The ops are the module attributes ``<op>_op``.

Configs: the GEMMs are autotuned over block widths only on CUDA (``autotune_or_first``); under
``TRITON_INTERPRET=1`` the first config is bound, because ``triton.autotune`` needs a GPU driver. The M block
of the varlen-M GEMMs is chosen on the host from the mean rows per expert, since the tile table that drives
the grid depends on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import triton
from torch import Tensor

from domain_moe.core.dispatch.triton import kernels
from domain_moe.core.dispatch.triton.kernels import ACTIVATION_CODES
from domain_moe.core.dispatch.triton.reference_router import RouterTopK, router_topk_backward

__all__ = [
    "ACTIVATIONS",
    "INT64_THRESHOLD",
    "INTERPRET",
    "RouterTopK",
    "autotune_or_first",
    "combine_bwd",
    "combine_bwd_op",
    "combine_fwd",
    "combine_fwd_op",
    "gather_rows_bwd",
    "gather_rows_fwd",
    "gather_rows_fwd_op",
    "grouped_gemm_bwd",
    "grouped_gemm_bwd_op",
    "grouped_gemm_fwd",
    "grouped_gemm_fwd_op",
    "grouped_gemm_wgrad",
    "grouped_gemm_wgrad_op",
    "pick_block_m",
    "router_topk",
    "router_topk_fwd",
    "router_topk_op",
    "tile_table",
]

#: Whether the kernels run in the Triton interpreter (read once: kernels are bound to the mode in which
#: they were decorated).
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
#: Element spans at or above this take the kernels' int64 offset path (a module attribute so tests can
#: lower it and exercise that path on tiny tensors).
INT64_THRESHOLD = 2**31
#: Activations the GEMM epilogues implement.
ACTIVATIONS = tuple(ACTIVATION_CODES)

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_INDICES = (torch.int64, torch.int32)


# --------------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------------


class _FirstConfig:
    """A kernel bound to one config, launched with the same ``kernel[grid](...)`` syntax as an autotuner."""

    def __init__(self, kernel: Any, config: triton.Config) -> None:
        self.kernel = kernel
        self.config = config

    def __getitem__(self, grid: Any) -> Callable[..., Any]:
        launch = self.kernel[grid]
        extra = {**self.config.kwargs, "num_warps": self.config.num_warps, "num_stages": self.config.num_stages}

        def run(*args: Any, **kwargs: Any) -> Any:
            return launch(*args, **extra, **kwargs)

        return run


def autotune_or_first(configs: Sequence[triton.Config], key: list[str]) -> Callable[[Any], Any]:
    """``triton.autotune(configs, key)`` on CUDA; elsewhere (the interpreter) bind the first config.

    ``triton.autotune`` needs an active GPU driver even in interpreter mode, so on a CPU-only machine the
    first config is used as is: list the config that suits tiny interpreter shapes first.

    Args:
        configs: candidate configs (block sizes as kwargs, ``num_warps``, ``num_stages``).
        key: kernel argument names whose values select a tuned config.
    """
    if not configs:
        raise ValueError("autotune_or_first: configs must not be empty")

    def wrap(kernel: Any) -> Any:
        if torch.cuda.is_available() and not INTERPRET:
            return triton.autotune(configs=list(configs), key=key)(kernel)
        return _FirstConfig(kernel, configs[0])

    return wrap


def _cfg(num_warps: int = 4, num_stages: int = 3, **blocks: int) -> triton.Config:
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


# Varlen-M GEMMs: the first config (32 x 32) suits the interpreter and narrow layers; the others cover
# wide layers on Hopper/Ampere (configs that exceed shared memory are discarded by the autotuner).
_GEMM_CONFIGS = [
    _cfg(BLOCK_N=32, BLOCK_K=32, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_N=64, BLOCK_K=32, GROUP_M=8, num_warps=4, num_stages=4),
    _cfg(BLOCK_N=64, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=3),
    _cfg(BLOCK_N=128, BLOCK_K=32, GROUP_M=8, num_warps=4, num_stages=4),
    _cfg(BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3),
    _cfg(BLOCK_N=256, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3),
]
# Varlen-K weight gradient: output tile BLOCK_N x BLOCK_K, rows reduced BLOCK_M at a time.
_WGRAD_CONFIGS = [
    _cfg(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, num_warps=4, num_stages=3),
    _cfg(BLOCK_M=32, BLOCK_N=128, BLOCK_K=128, num_warps=8, num_stages=3),
    _cfg(BLOCK_M=64, BLOCK_N=128, BLOCK_K=128, num_warps=8, num_stages=3),
]
_GEMM_KEY = ["N", "K_DIM", "BLOCK_M", "GLU", "GATHER"]
_WGRAD_KEY = ["N", "K_DIM", "rows_hint", "GATHER_X", "GATHER_G"]

_gemm_fwd_kernel = autotune_or_first(_GEMM_CONFIGS, _GEMM_KEY)(kernels._grouped_gemm_fwd_kernel)
_gemm_bwd_kernel = autotune_or_first(_GEMM_CONFIGS, _GEMM_KEY)(kernels._grouped_gemm_bwd_kernel)


_wgrad_kernel = autotune_or_first(_WGRAD_CONFIGS, _WGRAD_KEY)(kernels._grouped_gemm_wgrad_kernel)


def pick_block_m(num_rows: int, num_experts: int) -> int:
    """M block of the varlen-M GEMMs, from the mean rows per expert (vLLM uses 16 when rows <= experts).

    Small blocks waste fewer MMA rows on the partial last tile of each expert; large blocks reuse each
    weight tile over more rows. Under the interpreter it is always 16 (the smallest ``tl.dot`` shape).

    Args:
        num_rows: grouped rows ``A``.
        num_experts: ``E``.
    """
    if INTERPRET or not torch.cuda.is_available():
        return 16
    mean = num_rows / max(num_experts, 1)
    if mean <= 16:
        return 16
    if mean <= 48:
        return 32
    if mean <= 192:
        return 64
    return 128


def tile_table(expert_offsets: Tensor, num_rows: int, block_m: int) -> Tensor:
    """The M tiles of a varlen-M grouped GEMM, computed on the device with a few torch ops (no sync).

    Expert ``e`` gets ``ceil(count_e / block_m)`` tiles, the trash bucket (rows ``offsets[E]..A``) gets its
    own tiles (they write zeros), and the table is padded to the host bound ``G = ceil(A / block_m) + E``
    with surplus entries whose programs exit at once. No data is padded and no tile straddles two experts.

    Args:
        expert_offsets: the plan's offsets.
        num_rows: grouped rows ``A`` (the plan's host bound).
        block_m: rows per tile.

    Returns:
        ``int32 [3, G]``: bucket (``0..E-1`` expert, ``E`` trash, ``E + 1`` surplus), first row, end row.

    Shapes:
        - expert_offsets: ``[E + 1]``
        - output: ``[3, G]``
    """
    _check_index("expert_offsets", expert_offsets, ndim=1)
    if block_m < 1:
        raise ValueError(f"tile_table: block_m must be >= 1, got {block_m}")
    num_experts = expert_offsets.numel() - 1
    num_tiles = triton.cdiv(num_rows, block_m) + num_experts
    offs = expert_offsets.long()
    bounds = torch.cat((offs, torch.full((1,), num_rows, dtype=torch.long, device=offs.device)))
    tiles = (bounds.diff() + (block_m - 1)).div(block_m, rounding_mode="floor")
    ends = tiles.cumsum(0)
    slot = torch.arange(num_tiles, device=offs.device)
    bucket = torch.searchsorted(ends, slot, right=True)
    b = bucket.clamp_max(num_experts)
    row0 = bounds[b] + (slot - (ends[b] - tiles[b])) * block_m
    return torch.stack((bucket, row0, bounds[b + 1])).to(torch.int32)


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------


def _check_device(op: str, **tensors: Tensor | None) -> torch.device:
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {v.device for v in present.values()}
    if len(devices) != 1:
        got = ", ".join(f"{k} on {v.device}" for k, v in present.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {got}")
    device = devices.pop()
    if device.type != "cuda" and not INTERPRET:
        raise ValueError(
            f"{op}: the triton kernels run on CUDA tensors (or on CPU under TRITON_INTERPRET=1), got {device}"
        )
    return device


def _check_float(op: str, name: str, t: Tensor, ndim: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}")
    if INTERPRET and t.dtype == torch.bfloat16:
        # The interpreter multiplies raw bf16 bit patterns (triton-lang/triton#11584): refuse, never guess.
        raise TypeError(f"{op}: {name} is bfloat16, whose maths is wrong under TRITON_INTERPRET; use fp32/fp16")


def _check_index(name: str, t: Tensor, ndim: int, op: str = "tile_table") -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _INDICES:
        raise TypeError(f"{op}: {name} must be int64 or int32, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{op}: {name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


def _check_shape(op: str, name: str, t: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def _check_out(op: str, name: str, out: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    if out is None:
        return
    _check_shape(op, name, out, shape)
    if out.dtype != dtype:
        raise TypeError(f"{op}: {name} must have dtype {dtype}, got {out.dtype}")


def _span(t: Tensor | None) -> int:
    """One past the largest element offset a kernel can form from ``t``'s sizes and strides."""
    if t is None or t.numel() == 0:
        return 0
    return 1 + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()))


def _int64(*tensors: Tensor | None) -> bool:
    return max(_span(t) for t in tensors) >= INT64_THRESHOLD


def _dot_precision(t: Tensor) -> str:
    # fp32 follows torch's own switch (TF32 off by default), so the kernels compute what F.linear does;
    # 16-bit operands are exact in either mode and keep triton's default.
    if t.dtype != torch.float32 or (t.is_cuda and torch.backends.cuda.matmul.allow_tf32):
        return "tf32"
    return "ieee"


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(n, 1))))


def _activation_code(op: str, activation: str) -> int:
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"{op}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    return ACTIVATION_CODES[activation]


def _weight_strides(weight: Tensor, trans_weight: bool) -> tuple[int, int, int]:
    """(expert, n, k) strides: ``[E, N, K]`` (nn.Linear layout) or ``[E, K, N]`` when transposed."""
    se, s1, s2 = weight.stride()
    return (se, s2, s1) if trans_weight else (se, s1, s2)


def _check_table(op: str, table: Tensor, num_rows: int, num_experts: int, block_m: int) -> None:
    if table.dtype != torch.int32 or table.dim() != 2 or table.shape[0] != 3:
        raise ValueError(f"{op}: table must be an int32 [3, G] tile table, got {table.dtype} {tuple(table.shape)}")
    want = triton.cdiv(num_rows, block_m) + num_experts
    if table.shape[1] != want:
        raise ValueError(
            f"{op}: table has {table.shape[1]} tiles but A={num_rows}, E={num_experts}, block_m={block_m} "
            f"need {want}; build it with tile_table(expert_offsets, {num_rows}, {block_m})"
        )
    if not table.is_contiguous():
        raise ValueError(f"{op}: table must be contiguous")


def _rows_source(op: str, x: Tensor, gather_index: Tensor | None) -> int:
    if gather_index is None:
        return int(x.shape[0])
    _check_index("gather_index", gather_index, 1, op)
    return int(gather_index.shape[0])


# --------------------------------------------------------------------------------------------------
# grouped GEMM (varlen-M), forward epilogue
# --------------------------------------------------------------------------------------------------


def grouped_gemm_fwd(
    x: Tensor,
    weight: Tensor,
    table: Tensor,
    *,
    block_m: int,
    bias: Tensor | None = None,
    gather_index: Tensor | None = None,
    row_scale: Tensor | None = None,
    trans_weight: bool = False,
    activation: str = "identity",
    glu: bool = False,
    store_preact: bool = False,
    out: Tensor | None = None,
    preact_out: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Varlen-M grouped GEMM ``out[r] = act(scale_r * x[src(r)] @ W[e(r)]^T + b[e(r)])``.

    Rows of expert ``e`` are ``offsets[e]..offsets[e+1]`` (encoded in ``table``); trash rows are zero.
    With ``glu`` the weight is blocked ``[gate; up]`` along its output rows and the epilogue computes
    ``act(gate) * up`` (SwiGLU with ``"silu"``, GeGLU with ``"gelu"``).

    Args:
        x: input rows, or tokens read through ``gather_index`` (the fused gather).
        weight: expert weights, ``[E, N_w, K]`` (nn.Linear layout) or ``[E, K, N_w]`` with ``trans_weight``;
            ``N_w = 2N`` with ``glu``.
        table: :func:`tile_table` of the plan for ``block_m``.
        block_m: rows per tile (the value the table was built with).
        bias: expert biases.
        gather_index: source token of each grouped row (the plan's ``sorted_token``).
        row_scale: per-row factor on the product (before the bias).
        trans_weight: read ``weight`` as ``[E, K, N_w]`` (``out = x @ W``).
        activation: one of :data:`ACTIVATIONS`.
        glu: gated epilogue on a blocked weight.
        store_preact: also return the pre-activation (needed by backward).
        out: optional output buffer (a view is fine).
        preact_out: optional pre-activation buffer.

    Returns:
        ``(out, preact)``; ``preact`` is ``None`` unless ``store_preact``.

    Shapes:
        - x: ``[A, K]`` or ``[T, K]`` with ``gather_index: [A]``
        - weight: ``[E, N_w, K]``; bias: ``[E, N_w]``; row_scale: ``[A]``; table: ``[3, G]``
        - out: ``[A, N]``; preact: ``[A, N_w]``
    """
    op = "grouped_gemm_fwd"
    act = _activation_code(op, activation)
    _check_float(op, "x", x, 2)
    _check_float(op, "weight", weight, 3)
    if weight.dtype != x.dtype:
        raise TypeError(f"{op}: weight must have the dtype of x ({x.dtype}), got {weight.dtype}")
    if glu and trans_weight:
        raise ValueError(f"{op}: glu=True needs the nn.Linear weight layout (trans_weight=False)")
    num_experts = int(weight.shape[0])
    n_w = int(weight.shape[2] if trans_weight else weight.shape[1])
    k_dim = int(weight.shape[1] if trans_weight else weight.shape[2])
    if glu and n_w % 2:
        raise ValueError(f"{op}: a GLU weight has an even number of output rows (gate; up), got {n_w}")
    n = n_w // 2 if glu else n_w
    if x.shape[1] != k_dim:
        raise ValueError(f"{op}: x must have width {k_dim} (the weight's input width), got {tuple(x.shape)}")
    num_rows = _rows_source(op, x, gather_index)
    _check_table(op, table, num_rows, num_experts, block_m)
    if bias is not None:
        _check_float(op, "bias", bias, 2)
        _check_shape(op, "bias", bias, (num_experts, n_w))
    if row_scale is not None:
        _check_float(op, "row_scale", row_scale, 1)
        _check_shape(op, "row_scale", row_scale, (num_rows,))
    _check_out(op, "out", out, (num_rows, n), x.dtype)
    _check_out(op, "preact_out", preact_out, (num_rows, n_w), x.dtype)
    _check_device(op, x=x, weight=weight, table=table, bias=bias, gather_index=gather_index,
                  row_scale=row_scale, out=out, preact_out=preact_out)  # fmt: skip
    out = x.new_empty(num_rows, n) if out is None else out
    z = None
    if store_preact:
        z = x.new_empty(num_rows, n_w) if preact_out is None else preact_out
    if num_rows == 0 or n == 0:
        return out, z
    if k_dim == 0:
        raise ValueError(f"{op}: the reduction width K must be positive, got {k_dim}")
    z_arg = out if z is None else z
    se, sn, sk = _weight_strides(weight, trans_weight)
    num_tiles = int(table.shape[1])

    def grid(meta: dict[str, Any]) -> tuple[int]:
        return (num_tiles * triton.cdiv(n, meta["BLOCK_N"]),)

    _gemm_fwd_kernel[grid](
        x, weight, out if bias is None else bias, table if gather_index is None else gather_index,
        out if row_scale is None else row_scale, table, out, z_arg,
        n, k_dim, num_experts, int(x.shape[0]), num_tiles,
        x.stride(0), x.stride(1), se, sn, sk,
        0 if bias is None else bias.stride(0), 0 if bias is None else bias.stride(1),
        out.stride(0), out.stride(1), z_arg.stride(0), z_arg.stride(1),
        ACT=act, GLU=glu, GATHER=gather_index is not None, HAS_SCALE=row_scale is not None,
        HAS_BIAS=bias is not None, STORE_Z=z is not None,
        INT64=_int64(x, weight, out, z, bias), DOT_PRECISION=_dot_precision(x), BLOCK_M=block_m,
    )  # fmt: skip
    return out, z


@torch.library.custom_op("domain_moe::grouped_gemm_fwd", mutates_args=())
def grouped_gemm_fwd_op(
    x: Tensor,
    weight: Tensor,
    table: Tensor,
    bias: Tensor | None,
    gather_index: Tensor | None,
    row_scale: Tensor | None,
    block_m: int,
    trans_weight: bool,
    activation: str,
    glu: bool,
    store_preact: bool,
) -> tuple[Tensor, Tensor]:
    """``domain_moe::grouped_gemm_fwd``: :func:`grouped_gemm_fwd`; ``preact`` is empty when not stored."""
    out, z = grouped_gemm_fwd(
        x, weight, table, block_m=block_m, bias=bias, gather_index=gather_index, row_scale=row_scale,
        trans_weight=trans_weight, activation=activation, glu=glu, store_preact=store_preact,
    )  # fmt: skip
    return out, (x.new_empty(0) if z is None else z)


@grouped_gemm_fwd_op.register_fake
def _(x, weight, table, bias, gather_index, row_scale, block_m, trans_weight, activation, glu, store_preact):  # type: ignore[no-untyped-def]
    rows = x.shape[0] if gather_index is None else gather_index.shape[0]
    n_w = weight.shape[2] if trans_weight else weight.shape[1]
    n = n_w // 2 if glu else n_w
    z = x.new_empty(rows, n_w) if store_preact else x.new_empty(0)
    return x.new_empty(rows, n), z


# --------------------------------------------------------------------------------------------------
# grouped GEMM (varlen-M), activation-derivative epilogue
# --------------------------------------------------------------------------------------------------


def grouped_gemm_bwd(
    grad: Tensor,
    weight: Tensor,
    preact: Tensor,
    table: Tensor,
    *,
    block_m: int,
    gather_index: Tensor | None = None,
    row_scale: Tensor | None = None,
    trans_weight: bool = True,
    activation: str = "identity",
    glu: bool = False,
    out: Tensor | None = None,
) -> Tensor:
    """Gradient of the pre-activation: ``dZ = (scale_r * grad[src(r)] @ W2[e(r)]) * act'(Z)``.

    This is the backward of the second expert layer fused with the derivative of the first layer's
    activation (GLU: ``[dU * up * act'(gate) | dU * act(gate)]``).

    Args:
        grad: gradient of the expert output rows, or per-token output gradients read through
            ``gather_index`` (then ``row_scale`` usually carries the router weight).
        weight: the second layer's weights ``[E, K, N]`` (nn.Linear layout of ``W2``) with
            ``trans_weight=True``, or ``[E, N, K]`` with ``trans_weight=False``.
        preact: the saved pre-activation ``Z``.
        table: :func:`tile_table` for ``block_m``.
        block_m: rows per tile.
        gather_index: source token of each grouped row.
        row_scale: per-row factor on the product.
        trans_weight: layout of ``weight`` (see above).
        activation: the forward activation.
        glu: the forward was gated.
        out: optional output buffer.

    Returns:
        ``dZ`` in the layout of ``preact``.

    Shapes:
        - grad: ``[A, K]`` or ``[T, K]`` with ``gather_index: [A]``
        - weight: ``[E, K, N]``; preact, output: ``[A, N_w]`` (``N_w = 2N`` with ``glu``)
    """
    op = "grouped_gemm_bwd"
    act = _activation_code(op, activation)
    _check_float(op, "grad", grad, 2)
    _check_float(op, "weight", weight, 3)
    _check_float(op, "preact", preact, 2)
    for name, t in (("weight", weight), ("preact", preact)):
        if t.dtype != grad.dtype:
            raise TypeError(f"{op}: {name} must have the dtype of grad ({grad.dtype}), got {t.dtype}")
    num_experts = int(weight.shape[0])
    n = int(weight.shape[2] if trans_weight else weight.shape[1])
    k_dim = int(weight.shape[1] if trans_weight else weight.shape[2])
    if grad.shape[1] != k_dim:
        raise ValueError(f"{op}: grad must have width {k_dim}, got {tuple(grad.shape)}")
    num_rows = _rows_source(op, grad, gather_index)
    n_w = 2 * n if glu else n
    _check_shape(op, "preact", preact, (num_rows, n_w))
    _check_table(op, table, num_rows, num_experts, block_m)
    if row_scale is not None:
        _check_float(op, "row_scale", row_scale, 1)
        _check_shape(op, "row_scale", row_scale, (num_rows,))
    _check_out(op, "out", out, (num_rows, n_w), grad.dtype)
    _check_device(op, grad=grad, weight=weight, preact=preact, table=table, gather_index=gather_index,
                  row_scale=row_scale, out=out)  # fmt: skip
    out = grad.new_empty(num_rows, n_w) if out is None else out
    if num_rows == 0 or n == 0:
        return out
    if k_dim == 0:
        raise ValueError(f"{op}: the reduction width K must be positive, got {k_dim}")
    se, sn, sk = _weight_strides(weight, trans_weight)
    num_tiles = int(table.shape[1])

    def grid(meta: dict[str, Any]) -> tuple[int]:
        return (num_tiles * triton.cdiv(n, meta["BLOCK_N"]),)

    _gemm_bwd_kernel[grid](
        grad, weight, table if gather_index is None else gather_index,
        out if row_scale is None else row_scale, table, preact, out,
        n, k_dim, num_experts, int(grad.shape[0]), num_tiles,
        grad.stride(0), grad.stride(1), se, sn, sk,
        preact.stride(0), preact.stride(1), out.stride(0), out.stride(1),
        ACT=act, GLU=glu, GATHER=gather_index is not None, HAS_SCALE=row_scale is not None,
        INT64=_int64(grad, weight, preact, out), DOT_PRECISION=_dot_precision(grad), BLOCK_M=block_m,
    )  # fmt: skip
    return out


@torch.library.custom_op("domain_moe::grouped_gemm_bwd", mutates_args=())
def grouped_gemm_bwd_op(
    grad: Tensor,
    weight: Tensor,
    preact: Tensor,
    table: Tensor,
    gather_index: Tensor | None,
    row_scale: Tensor | None,
    block_m: int,
    trans_weight: bool,
    activation: str,
    glu: bool,
) -> Tensor:
    """``domain_moe::grouped_gemm_bwd``: :func:`grouped_gemm_bwd`."""
    return grouped_gemm_bwd(
        grad, weight, preact, table, block_m=block_m, gather_index=gather_index, row_scale=row_scale,
        trans_weight=trans_weight, activation=activation, glu=glu,
    )  # fmt: skip


@grouped_gemm_bwd_op.register_fake
def _(grad, weight, preact, table, gather_index, row_scale, block_m, trans_weight, activation, glu):  # type: ignore[no-untyped-def]
    return preact.new_empty(preact.shape)


# --------------------------------------------------------------------------------------------------
# weight-gradient grouped GEMM (varlen-K)
# --------------------------------------------------------------------------------------------------


def grouped_gemm_wgrad(
    x: Tensor,
    grad: Tensor,
    expert_offsets: Tensor,
    *,
    gather_index: Tensor | None = None,
    gather_x: bool = False,
    gather_grad: bool = False,
    grad_scale: Tensor | None = None,
    with_bias: bool = False,
    out: Tensor | None = None,
    bias_out: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Per-expert weight gradient ``dW[e] = sum_{r in e} G_r^T X_r`` and ``db[e] = sum_{r in e} G_r``.

    ``X_r`` is ``x[src(r)]`` with ``gather_x`` else ``x[r]``; ``G_r`` is ``scale_r * grad[src(r)]`` with
    ``gather_grad`` (and ``grad_scale``) else ``grad[r]``. One program per expert and output tile walks
    the expert's rows in a fixed order: deterministic, no atomics; empty experts get zeros.

    Args:
        x: the layer input (rows or tokens).
        grad: the gradient of the layer output (rows or tokens).
        expert_offsets: the plan's offsets.
        gather_index: the plan's ``sorted_token`` (needed by ``gather_x``/``gather_grad``).
        gather_x: read ``x`` through ``gather_index``.
        gather_grad: read ``grad`` through ``gather_index``.
        grad_scale: per-row factor on ``G`` (the router weight when ``grad`` is per token).
        with_bias: also return ``db``.
        out: optional ``dW`` buffer.
        bias_out: optional ``db`` buffer.

    Returns:
        ``(dW, db)`` in the nn.Linear layout (``db`` is ``None`` unless ``with_bias``).

    Shapes:
        - x: ``[A, K]`` (or ``[T, K]``); grad: ``[A, N]`` (or ``[T, N]``); gather_index, grad_scale: ``[A]``
        - dW: ``[E, N, K]``; db: ``[E, N]``
    """
    op = "grouped_gemm_wgrad"
    _check_float(op, "x", x, 2)
    _check_float(op, "grad", grad, 2)
    if grad.dtype != x.dtype:
        raise TypeError(f"{op}: grad must have the dtype of x ({x.dtype}), got {grad.dtype}")
    _check_index("expert_offsets", expert_offsets, 1, op)
    num_experts = int(expert_offsets.numel()) - 1
    if num_experts < 1:
        raise ValueError(f"{op}: expert_offsets must have E + 1 >= 2 entries, got {expert_offsets.numel()}")
    if (gather_x or gather_grad) and gather_index is None:
        raise ValueError(f"{op}: gather_x/gather_grad need gather_index")
    if gather_index is not None:
        _check_index("gather_index", gather_index, 1, op)
        num_rows = int(gather_index.shape[0])
    else:
        num_rows = int(x.shape[0])
    for name, t, gathered in (("x", x, gather_x), ("grad", grad, gather_grad)):
        if not gathered and t.shape[0] != num_rows:
            raise ValueError(f"{op}: {name} must have {num_rows} rows (one per grouped row), got {tuple(t.shape)}")
    if gather_x and gather_grad and x.shape[0] != grad.shape[0]:
        raise ValueError(f"{op}: gathered x and grad must have the same tokens, got {x.shape[0]} and {grad.shape[0]}")
    if grad_scale is not None:
        _check_float(op, "grad_scale", grad_scale, 1)
        _check_shape(op, "grad_scale", grad_scale, (num_rows,))
    n, k_dim = int(grad.shape[1]), int(x.shape[1])
    _check_out(op, "out", out, (num_experts, n, k_dim), x.dtype)
    _check_out(op, "bias_out", bias_out, (num_experts, n), x.dtype)
    _check_device(op, x=x, grad=grad, expert_offsets=expert_offsets, gather_index=gather_index,
                  grad_scale=grad_scale, out=out, bias_out=bias_out)  # fmt: skip
    dw = x.new_empty(num_experts, n, k_dim) if out is None else out
    db = None
    if with_bias:
        db = x.new_empty(num_experts, n) if bias_out is None else bias_out
    if n == 0 or k_dim == 0:
        if db is not None:
            db.zero_()
        return dw, db
    db_arg = dw if db is None else db
    src_arg = expert_offsets if gather_index is None else gather_index
    gathered_rows = x.shape[0] if gather_x else grad.shape[0]
    rows_hint = _pow2(num_rows // num_experts, 16, 4096)

    def grid(meta: dict[str, Any]) -> tuple[int, int]:
        return (num_experts, triton.cdiv(n, meta["BLOCK_N"]) * triton.cdiv(k_dim, meta["BLOCK_K"]))

    _wgrad_kernel[grid](
        x, grad, expert_offsets, src_arg, dw if grad_scale is None else grad_scale, dw, db_arg,
        n, k_dim, int(gathered_rows) if (gather_x or gather_grad) else num_rows, rows_hint,
        x.stride(0), x.stride(1), grad.stride(0), grad.stride(1),
        dw.stride(0), dw.stride(1), dw.stride(2), db_arg.stride(0), db_arg.stride(1) if db is not None else 0,
        GATHER_X=gather_x, GATHER_G=gather_grad, HAS_SCALE=grad_scale is not None, HAS_BIAS=db is not None,
        INT64=_int64(x, grad, dw), DOT_PRECISION=_dot_precision(x),
    )  # fmt: skip
    return dw, db


@torch.library.custom_op("domain_moe::grouped_gemm_wgrad", mutates_args=())
def grouped_gemm_wgrad_op(
    x: Tensor,
    grad: Tensor,
    expert_offsets: Tensor,
    gather_index: Tensor | None,
    gather_x: bool,
    gather_grad: bool,
    grad_scale: Tensor | None,
    with_bias: bool,
) -> tuple[Tensor, Tensor]:
    """``domain_moe::grouped_gemm_wgrad``: :func:`grouped_gemm_wgrad`; ``db`` is empty without bias."""
    dw, db = grouped_gemm_wgrad(
        x, grad, expert_offsets, gather_index=gather_index, gather_x=gather_x, gather_grad=gather_grad,
        grad_scale=grad_scale, with_bias=with_bias,
    )  # fmt: skip
    return dw, (x.new_empty(0) if db is None else db)


@grouped_gemm_wgrad_op.register_fake
def _(x, grad, expert_offsets, gather_index, gather_x, gather_grad, grad_scale, with_bias):  # type: ignore[no-untyped-def]
    num_experts = expert_offsets.shape[0] - 1
    db = x.new_empty(num_experts, grad.shape[1]) if with_bias else x.new_empty(0)
    return x.new_empty(num_experts, grad.shape[1], x.shape[1]), db


# --------------------------------------------------------------------------------------------------
# combine and gather
# --------------------------------------------------------------------------------------------------


def _combine_blocks(width: int) -> tuple[int, int]:
    block_d = _pow2(width, 16, 128)
    return (16 if INTERPRET else 32), block_d


def combine_fwd(
    rows: Tensor,
    row_of_slot: Tensor,
    *,
    weight: Tensor | None = None,
    init: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """Deterministic combine ``out[t] = init[t] + sum_k w[t, k] * rows[row_of_slot[t, k]]``.

    Slots with row ``-1`` (no expert) are skipped; the sum over slots runs in a fixed order with an fp32
    accumulator, so reruns are bitwise identical. With ``weight=None`` (unit weights) it is the backward
    of the row gather: ``dX[t] = sum_k dX_rows[row(t, k)]``.

    Args:
        rows: expert output rows in plan order.
        row_of_slot: the plan's ``row_of_slot``.
        weight: combine weight per slot (``None`` = 1).
        init: per-token start value (shared experts, residual).
        out: optional output buffer.

    Returns:
        Per-token outputs in the dtype of ``rows``.

    Shapes:
        - rows: ``[A, D]``; row_of_slot, weight: ``[T, K]``; init, output: ``[T, D]``
    """
    op = "combine_fwd"
    _check_float(op, "rows", rows, 2)
    _check_index("row_of_slot", row_of_slot, 2, op)
    num_tokens, top_k = (int(s) for s in row_of_slot.shape)
    width = int(rows.shape[1])
    if weight is not None:
        _check_float(op, "weight", weight, 2)
        _check_shape(op, "weight", weight, (num_tokens, top_k))
    if init is not None:
        _check_float(op, "init", init, 2)
        _check_shape(op, "init", init, (num_tokens, width))
    _check_out(op, "out", out, (num_tokens, width), rows.dtype)
    _check_device(op, rows=rows, row_of_slot=row_of_slot, weight=weight, init=init, out=out)
    out = rows.new_empty(num_tokens, width) if out is None else out
    if num_tokens == 0 or width == 0:
        return out
    block_t, block_d = _combine_blocks(width)
    grid = (triton.cdiv(num_tokens, block_t), triton.cdiv(width, block_d))
    w_arg = row_of_slot if weight is None else weight
    i_arg = out if init is None else init
    kernels._combine_kernel[grid](
        rows, row_of_slot, w_arg, i_arg, out,
        num_tokens, width, top_k, int(rows.shape[0]),
        rows.stride(0), rows.stride(1), row_of_slot.stride(0), row_of_slot.stride(1),
        w_arg.stride(0), w_arg.stride(1), i_arg.stride(0), i_arg.stride(1), out.stride(0), out.stride(1),
        HAS_WEIGHT=weight is not None, HAS_INIT=init is not None, INT64=_int64(rows, init, out),
        BLOCK_T=block_t, BLOCK_D=block_d, num_warps=4,
    )  # fmt: skip
    return out


@torch.library.custom_op("domain_moe::combine_fwd", mutates_args=())
def combine_fwd_op(rows: Tensor, row_of_slot: Tensor, weight: Tensor | None, init: Tensor | None) -> Tensor:
    """``domain_moe::combine_fwd``: :func:`combine_fwd`."""
    return combine_fwd(rows, row_of_slot, weight=weight, init=init)


@combine_fwd_op.register_fake
def _(rows, row_of_slot, weight, init):  # type: ignore[no-untyped-def]
    return rows.new_empty(row_of_slot.shape[0], rows.shape[1])


def combine_bwd(grad_out: Tensor, rows: Tensor, row_of_slot: Tensor, *, out: Tensor | None = None) -> Tensor:
    """Router-weight gradient of the combine: ``dw[t, k] = <grad_out[t], rows[row_of_slot[t, k]]>``.

    The rows' own gradient (``w[t, k] * grad_out[t]`` per row) is :func:`gather_rows_fwd` with the weight.
    Slots without expert get 0. Each program owns a block of tokens and walks the whole width in a fixed
    order (no atomics), accumulating in fp32.

    Args:
        grad_out: gradient of the combined output.
        rows: the expert output rows saved from the forward.
        row_of_slot: the plan's ``row_of_slot``.
        out: optional fp32 output buffer.

    Returns:
        ``dw`` in float32.

    Shapes:
        - grad_out: ``[T, D]``; rows: ``[A, D]``; row_of_slot, output: ``[T, K]``
    """
    op = "combine_bwd"
    _check_float(op, "grad_out", grad_out, 2)
    _check_float(op, "rows", rows, 2)
    _check_index("row_of_slot", row_of_slot, 2, op)
    num_tokens, top_k = (int(s) for s in row_of_slot.shape)
    width = int(rows.shape[1])
    _check_shape(op, "grad_out", grad_out, (num_tokens, width))
    _check_out(op, "out", out, (num_tokens, top_k), torch.float32)
    _check_device(op, grad_out=grad_out, rows=rows, row_of_slot=row_of_slot, out=out)
    out = grad_out.new_empty(num_tokens, top_k, dtype=torch.float32) if out is None else out
    if num_tokens == 0 or top_k == 0:
        return out
    block_t, block_d = _combine_blocks(width)
    kernels._combine_dw_kernel[(triton.cdiv(num_tokens, block_t),)](
        grad_out, rows, row_of_slot, out,
        num_tokens, width, top_k, int(rows.shape[0]),
        grad_out.stride(0), grad_out.stride(1), rows.stride(0), rows.stride(1),
        row_of_slot.stride(0), row_of_slot.stride(1), out.stride(0), out.stride(1),
        INT64=_int64(grad_out, rows), BLOCK_T=block_t, BLOCK_D=block_d, BLOCK_K=_pow2(top_k, 2, 1 << 16),
        num_warps=4,
    )  # fmt: skip
    return out


@torch.library.custom_op("domain_moe::combine_bwd", mutates_args=())
def combine_bwd_op(grad_out: Tensor, rows: Tensor, row_of_slot: Tensor) -> Tensor:
    """``domain_moe::combine_bwd``: :func:`combine_bwd`."""
    return combine_bwd(grad_out, rows, row_of_slot)


@combine_bwd_op.register_fake
def _(grad_out, rows, row_of_slot):  # type: ignore[no-untyped-def]
    return grad_out.new_empty(row_of_slot.shape, dtype=torch.float32)


def gather_rows_fwd(
    x: Tensor,
    sorted_token: Tensor,
    expert_offsets: Tensor,
    *,
    weight: Tensor | None = None,
    slot_of_row: Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """Row gather ``out[r] = w_r * x[sorted_token[r]]``, zero for trash rows ``r >= offsets[E]``.

    For consumers that cannot fuse the gather into their first GEMM. With ``weight`` (and the plan's
    ``slot_of_row``) each row is scaled by its slot's weight: the rows' gradient of a weighted combine.

    Args:
        x: token rows.
        sorted_token: the plan's ``sorted_token``.
        expert_offsets: the plan's offsets (``offsets[E]`` valid rows).
        weight: per-slot weights ``[T, K]`` (``None`` = 1).
        slot_of_row: the plan's ``slot_of_row`` (needed with ``weight``).
        out: optional output buffer.

    Returns:
        Rows in plan order, dtype of ``x``.

    Shapes:
        - x: ``[T, D]``; sorted_token, slot_of_row: ``[A]``; expert_offsets: ``[E + 1]``; output: ``[A, D]``
    """
    op = "gather_rows_fwd"
    _check_float(op, "x", x, 2)
    _check_index("sorted_token", sorted_token, 1, op)
    _check_index("expert_offsets", expert_offsets, 1, op)
    if expert_offsets.numel() < 2:
        raise ValueError(f"{op}: expert_offsets must have E + 1 >= 2 entries, got {expert_offsets.numel()}")
    num_rows, width = int(sorted_token.shape[0]), int(x.shape[1])
    if weight is not None:
        _check_float(op, "weight", weight, 2)
        if slot_of_row is None:
            raise ValueError(f"{op}: weight needs slot_of_row (the plan's inverse permutation)")
        _check_index("slot_of_row", slot_of_row, 1, op)
        _check_shape(op, "slot_of_row", slot_of_row, (num_rows,))
        if weight.numel() != num_rows or weight.shape[0] != x.shape[0]:
            raise ValueError(
                f"{op}: weight must have shape [T={x.shape[0]}, K] with T*K={num_rows}, got {tuple(weight.shape)}"
            )
    _check_out(op, "out", out, (num_rows, width), x.dtype)
    _check_device(op, x=x, sorted_token=sorted_token, expert_offsets=expert_offsets, weight=weight,
                  slot_of_row=slot_of_row, out=out)  # fmt: skip
    out = x.new_empty(num_rows, width) if out is None else out
    if num_rows == 0 or width == 0:
        return out
    top_k = 1 if weight is None else int(weight.shape[1])
    block_r, block_d = _combine_blocks(width)
    w_arg = sorted_token.view(1, -1) if weight is None else weight
    s_arg = sorted_token if slot_of_row is None else slot_of_row
    grid = (triton.cdiv(num_rows, block_r), triton.cdiv(width, block_d))
    kernels._gather_rows_kernel[grid](
        x, sorted_token, expert_offsets, w_arg, s_arg, out,
        num_rows, int(x.shape[0]), width, int(expert_offsets.numel()) - 1, top_k,
        x.stride(0), x.stride(1), w_arg.stride(0), w_arg.stride(1), out.stride(0), out.stride(1),
        HAS_WEIGHT=weight is not None, INT64=_int64(x, out), BLOCK_R=block_r, BLOCK_D=block_d, num_warps=4,
    )  # fmt: skip
    return out


@torch.library.custom_op("domain_moe::gather_rows_fwd", mutates_args=())
def gather_rows_fwd_op(
    x: Tensor,
    sorted_token: Tensor,
    expert_offsets: Tensor,
    weight: Tensor | None,
    slot_of_row: Tensor | None,
) -> Tensor:
    """``domain_moe::gather_rows_fwd``: :func:`gather_rows_fwd`."""
    return gather_rows_fwd(x, sorted_token, expert_offsets, weight=weight, slot_of_row=slot_of_row)


@gather_rows_fwd_op.register_fake
def _(x, sorted_token, expert_offsets, weight, slot_of_row):  # type: ignore[no-untyped-def]
    return x.new_empty(sorted_token.shape[0], x.shape[1])


def gather_rows_bwd(grad_rows: Tensor, row_of_slot: Tensor, *, out: Tensor | None = None) -> Tensor:
    """Backward of :func:`gather_rows_fwd` without weight: the unit-weight combine ``dX[t] = sum_k dRows``.

    Shapes:
        - grad_rows: ``[A, D]``; row_of_slot: ``[T, K]``; output: ``[T, D]``
    """
    return combine_fwd(grad_rows, row_of_slot, out=out)


# --------------------------------------------------------------------------------------------------
# fused router
# --------------------------------------------------------------------------------------------------




_SCORE_FNS = ("softmax", "sigmoid")


def router_topk_fwd(
    logits: Tensor,
    top_k: int,
    *,
    score_fn: str = "softmax",
    renorm: bool = True,
    route_scale: float = 1.0,
    selection_bias: Tensor | None = None,
) -> RouterTopK:
    """Fused router: scores, biased top-k selection, renormalised weights, counts and loss statistics.

    Selection follows :meth:`~domain_moe.core.routing.TopKRouter.select`: experts are chosen on
    ``probs + selection_bias`` and weighted by the unbiased ``probs``; ``renorm`` divides the chosen weights
    by their sum (clamped at 1e-20). Ties go to the lowest expert index. One kernel replaces the 4-6
    torch launches of the unfused router, which matters at small ``T``.

    Args:
        logits: router logits (read as fp32).
        top_k: experts per token ``K``.
        score_fn: ``"softmax"`` or ``"sigmoid"``.
        renorm: renormalise the chosen weights (pass ``renorm and (K > 1 or sigmoid)`` to mirror
            ``TopKRouter``).
        route_scale: factor on the weights.
        selection_bias: aux-loss-free balancing bias added for selection only.

    Returns:
        :class:`RouterTopK`.

    Shapes:
        - logits: ``[T, E]``; selection_bias: ``[E]``
    """
    op = "router_topk"
    _check_float(op, "logits", logits, 2)
    num_tokens, num_experts = (int(s) for s in logits.shape)
    if not isinstance(top_k, int) or not 1 <= top_k <= num_experts:
        raise ValueError(f"{op}: top_k must be an int in [1, E={num_experts}], got {top_k!r}")
    if num_experts > 1024:
        raise ValueError(f"{op}: the kernel keeps a token's scores in registers: E <= 1024, got {num_experts}")
    if score_fn not in _SCORE_FNS:
        raise ValueError(f"{op}: score_fn must be one of {_SCORE_FNS}, got {score_fn!r}")
    if selection_bias is not None:
        _check_float(op, "selection_bias", selection_bias, 1)
        _check_shape(op, "selection_bias", selection_bias, (num_experts,))
    device = _check_device(op, logits=logits, selection_bias=selection_bias)
    idx = torch.empty(num_tokens, top_k, dtype=torch.int64, device=device)
    w = torch.empty(num_tokens, top_k, dtype=torch.float32, device=device)
    lse = torch.empty(num_tokens, dtype=torch.float32, device=device)
    counts = torch.zeros(num_experts, dtype=torch.int64, device=device)
    if num_tokens == 0:
        return RouterTopK(idx, w, counts, lse, torch.zeros(num_experts, dtype=torch.float32, device=device))
    # Blocks of at least 2: size-1 reductions are a corner some triton releases handle badly.
    block_e = max(2, triton.next_power_of_2(num_experts))
    block_t = 16 if (INTERPRET or block_e > 128) else 32
    programs = triton.cdiv(num_tokens, block_t)
    part = torch.empty(programs, num_experts, dtype=torch.float32, device=device)
    kernels._router_topk_kernel[(programs,)](
        logits, logits if selection_bias is None else selection_bias, idx, w, lse, counts, part,
        num_tokens, num_experts, float(route_scale), logits.stride(0), logits.stride(1),
        SIGMOID=score_fn == "sigmoid", HAS_BIAS=selection_bias is not None, RENORM=bool(renorm), TOP_K=top_k,
        BLOCK_T=block_t, BLOCK_E=block_e, BLOCK_K=max(2, triton.next_power_of_2(top_k)), num_warps=4,
    )  # fmt: skip
    # A fixed-order reduction of the per-block partial sums keeps the statistics deterministic.
    return RouterTopK(idx, w, counts, lse, part.sum(0))


@torch.library.custom_op("domain_moe::router_topk", mutates_args=())
def router_topk_op(
    logits: Tensor,
    top_k: int,
    score_fn: str,
    renorm: bool,
    route_scale: float,
    selection_bias: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``domain_moe::router_topk``: :func:`router_topk_fwd`, differentiable w.r.t. ``logits``.

    Returns ``(topk_w, topk_idx, counts, lse, prob_sum)``: the float weights come first (some torch
    tooling sums the outputs starting from the first one, which must then not be an integer tensor).
    """
    res = router_topk_fwd(
        logits, top_k, score_fn=score_fn, renorm=renorm, route_scale=route_scale, selection_bias=selection_bias
    )
    return res.topk_w, res.topk_idx, res.counts, res.lse, res.prob_sum


@router_topk_op.register_fake
def _(logits, top_k, score_fn, renorm, route_scale, selection_bias):  # type: ignore[no-untyped-def]
    num_tokens, num_experts = logits.shape
    f32 = {"dtype": torch.float32}
    return (
        logits.new_empty(num_tokens, top_k, **f32),
        logits.new_empty(num_tokens, top_k, dtype=torch.int64),
        logits.new_empty(num_experts, dtype=torch.int64),
        logits.new_empty(num_tokens, **f32),
        logits.new_empty(num_experts, **f32),
    )


def _router_setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
    logits, _top_k, score_fn, renorm, route_scale, _bias = inputs
    idx = output[1]
    ctx.save_for_backward(logits, idx)
    ctx.score_fn = score_fn
    ctx.renorm = renorm
    ctx.route_scale = route_scale


def _router_backward(ctx, d_w, d_idx, d_counts, d_lse, d_prob_sum):  # type: ignore[no-untyped-def]
    logits, idx = ctx.saved_tensors
    d_logits = router_topk_backward(
        logits, idx, d_w, d_lse, d_prob_sum, score_fn=ctx.score_fn, renorm=ctx.renorm, route_scale=ctx.route_scale
    )
    return d_logits.to(logits.dtype), None, None, None, None, None


router_topk_op.register_autograd(_router_backward, setup_context=_router_setup_context)


def router_topk(
    logits: Tensor,
    top_k: int,
    *,
    score_fn: str = "softmax",
    renorm: bool = True,
    route_scale: float = 1.0,
    selection_bias: Tensor | None = None,
) -> RouterTopK:
    """The fused router as a differentiable op (``domain_moe::router_topk``); see :func:`router_topk_fwd`.

    Gradients reach ``logits`` through ``topk_w``, ``lse`` and ``prob_sum`` (computed in torch from the
    saved logits and choices, :func:`~domain_moe.core.dispatch.triton.reference_router.router_topk_backward`).

    Shapes:
        - logits: ``[T, E]``; outputs as in :class:`RouterTopK`
    """
    w, idx, counts, lse, prob_sum = router_topk_op(logits, top_k, score_fn, renorm, float(route_scale), selection_bias)
    return RouterTopK(idx, w, counts, lse, prob_sum)
