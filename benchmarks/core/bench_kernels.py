"""GPU benchmark of the Triton dispatch kernels against the torch backends and a dense bf16 GEMM.

For each shape of the domain grid of ``specs/core.md`` §5.5 (vision, graph, time series, RL, recsys,
distillation) plus the LLM reference shapes (``T = 16384``, ``D in {1024, 2048}``, ``H = 4D``,
``E in {8, 64}``) and each routing distribution (``uniform``; ``zipf``: ``K`` distinct experts drawn
with ``p_e ~ (e + 1)^-1.2``; ``hot``: expert 0 is the first choice of half of the tokens), one run times,
separately:

* ``router``: ``TopKRouter``'s torch selection vs the fused ``router_topk`` kernel (logits given);
* ``plan``: ``build_plan`` (stable argsort, counts, inverse permutation);
* ``fwd``: the expert MLP plus combine, forward only;
* ``fwd_bwd``: the same, forward and backward (gradients of ``x``, the router weights and all expert
  parameters);

for the backends ``triton`` (``MLPExperts`` on the triton backend + the torch combine, i.e. what the layer
runs today), ``triton_fused`` (``moe_mlp``: MLP and combine in one function, the proposed CUDA path of
the layer), ``torch_grouped`` (``F.grouped_mm``) and ``torch_loop``; and ``dense``: a bf16
``torch.matmul`` pair ``[T*K, D] x [D, H_w]``, ``[T*K, H] x [H, D]`` with the same FLOPs.

Each record (one JSON line) has the median time in ms (``triton.testing.do_bench``, with warm-up, which
also runs the autotuner before timing), useful TFLOP/s (``4*T*K*D*H`` forward, ``6*T*K*D*H`` for GLU
experts, x3 for forward+backward), effective GB/s on the minimal byte count of §5.3 (read ``x`` and the
weights, write the hidden activation and the output; backward: read ``dOut``, ``x``, ``Z``, ``U`` and the
weights, write ``dx`` and the weight gradients), ``frac_dense`` (dense time / this time: the fraction of
dense-GEMM throughput reached) and ``speedup_vs_<backend>`` (that backend's time / this time) for the
baselines measured in the same run, and the device string (GPU name, torch and triton versions).

On a machine without CUDA the benchmark refuses to run, unless ``--device cpu --quick`` asks for a tiny
smoke run under the Triton interpreter (timings there only show that the code path works).

Example:
    python benchmarks/core/bench_kernels.py --out benchmarks/core/out/kernels.jsonl
    python benchmarks/core/bench_kernels.py --domains llm --routings uniform hot
    python benchmarks/core/bench_kernels.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from routing_patterns import ROUTINGS, draw_routing

BACKENDS = ("triton", "triton_fused", "torch_grouped", "torch_loop")


@dataclass(frozen=True)
class Shape:
    """One benchmark shape."""

    domain: str
    T: int
    D: int
    H: int
    E: int
    K: int
    glu: bool = False


def full_grid() -> list[Shape]:
    """specs/core.md §5.5 (one or two representative settings per domain) plus the §5.4 T1 shapes."""
    return [
        # vision: ViT-Ti/S/B MoE, 128-256 images x 197 patches
        Shape("vision", 25216, 192, 768, 32, 2),
        Shape("vision", 25216, 384, 1536, 8, 2),
        Shape("vision", 50432, 768, 3072, 16, 1),
        # graph: molecule batches to full-graph node tokens; D = 300 is not a multiple of any block
        Shape("graph", 1024, 64, 256, 4, 2),
        Shape("graph", 16384, 300, 600, 8, 4),
        Shape("graph", 131072, 128, 512, 8, 1),
        # time series: 32 series x 512-4096 steps, coarse and fine-grained (H = D/2) experts
        Shape("timeseries", 16384, 256, 1024, 8, 2),
        Shape("timeseries", 131072, 512, 256, 32, 2),
        # RL: tiny T (launch-bound), specs §5.4 T3
        Shape("rl", 2048, 32, 128, 4, 1),
        Shape("rl", 4096, 64, 256, 64, 2),
        Shape("rl", 30976, 512, 512, 128, 2),
        # recsys: sparse MoE towers
        Shape("recsys", 4096, 128, 256, 4, 1),
        Shape("recsys", 65536, 256, 512, 16, 2),
        # distillation students
        Shape("distill", 16384, 768, 3072, 16, 2),
        # memory-bound floor shapes of §5.3
        Shape("membound", 65536, 64, 256, 8, 2),
        Shape("membound", 262144, 128, 512, 32, 2),
        # LLM reference (T1): coarse experts, fine-grained experts, and a SwiGLU layer
        Shape("llm", 16384, 1024, 4096, 8, 2),
        Shape("llm", 16384, 2048, 8192, 8, 2),
        Shape("llm", 16384, 1024, 4096, 64, 2),
        Shape("llm", 16384, 2048, 8192, 64, 2),
        Shape("llm", 16384, 2048, 1024, 64, 8),
        Shape("llm", 16384, 2048, 1024, 64, 8, glu=True),
    ]


def quick_grid() -> list[Shape]:
    """A tiny interpreter smoke grid (CPU)."""
    return [Shape("smoke", 64, 32, 64, 4, 2), Shape("smoke", 48, 32, 32, 4, 1, glu=True)]


def device_string(device: torch.device) -> str:
    import triton

    versions = f"torch {torch.__version__}, triton {triton.__version__}"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({versions})"
    return f"cpu, TRITON_INTERPRET=1 ({versions})"


def timer(device: torch.device, warmup_ms: int, rep_ms: int, cpu_reps: int) -> Callable[[Callable[[], Any]], float]:
    """Median milliseconds of a callable: ``do_bench`` on CUDA, ``perf_counter`` rounds on CPU."""
    if device.type == "cuda":
        import triton.testing

        def bench(fn: Callable[[], Any]) -> float:
            fn()  # autotuning and lazy initialisation happen here, outside the timing
            torch.cuda.synchronize()
            return float(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))

        return bench

    def bench_cpu(fn: Callable[[], Any]) -> float:
        fn()
        times = []
        for _ in range(cpu_reps):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    return bench_cpu


def flops(shape: Shape, phase: str) -> float:
    per_row = (6 if shape.glu else 4) * shape.D * shape.H
    fwd = float(shape.T * shape.K * per_row)
    return 3 * fwd if phase == "fwd_bwd" else fwd


def min_bytes(shape: Shape, phase: str, elt: int) -> float:
    """The fully fused byte count of specs/core.md §5.3 (forward), and its backward analogue."""
    T, D, H, E, K = shape.T, shape.D, shape.H, shape.E, shape.K
    h_w = 2 * H if shape.glu else H
    weights = E * (h_w * D + D * H)
    fwd = T * D + weights + T * K * H + T * D
    if phase != "fwd_bwd":
        return float(elt * fwd)
    bwd = T * D + T * D + T * K * (h_w + H) + 2 * weights + T * D
    return float(elt * (fwd + bwd))


def run_shape(shape: Shape, routing: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from domain_moe.core import GLUExperts, MLPExperts
    from domain_moe.core.dispatch.reference import build_plan, combine, grouped_mm_supported
    from domain_moe.core.dispatch.triton.autograd import moe_mlp
    from domain_moe.core.dispatch.triton.launch import router_topk_fwd
    from domain_moe.core.routing.top_k import TopKRouter

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator().manual_seed(args.seed)
    idx = draw_routing(routing, shape.T, shape.E, shape.K, gen).to(device)
    x = torch.randn(shape.T, shape.D, generator=gen).to(device, dtype).requires_grad_(True)
    logits = torch.randn(shape.T, shape.E, generator=gen).to(device)
    w_logits = logits.gather(1, idx).softmax(-1)
    weight = w_logits.to(dtype).requires_grad_(True)
    cls = GLUExperts if shape.glu else MLPExperts
    act = "silu" if shape.glu else "gelu"
    experts = cls(shape.E, shape.D, shape.H, activation=act, bias=not shape.glu, device=device, dtype=dtype)
    params = [p for p in experts.parameters()]
    plan = build_plan(idx, weight.detach(), shape.E)
    dout = torch.randn(shape.T, shape.D, generator=gen).to(device, dtype)
    bench = timer(device, args.warmup_ms, args.rep_ms, args.cpu_reps)
    elt = torch.finfo(dtype).bits // 8
    base = {**asdict(shape), "routing": routing, "dtype": str(dtype).replace("torch.", ""), "device": args.device_str}
    records: list[dict[str, Any]] = []
    times: dict[tuple[str, str], float] = {}

    # router: TopKRouter's torch selection vs the fused kernel
    router = TopKRouter(8, shape.E, shape.K, device=device)
    times[("router", "torch")] = bench(lambda: router.select(logits))
    times[("router", "triton")] = bench(lambda: router_topk_fwd(logits, shape.K, renorm=shape.K > 1))
    times[("plan", "torch")] = bench(lambda: build_plan(idx, weight.detach(), shape.E))

    grads = [x, weight, *params]

    def layer_fn(backend: str) -> Callable[[], torch.Tensor]:
        if backend == "triton_fused":
            return lambda: moe_mlp(
                x, weight, plan, experts.w1, experts.b1, experts.w2, experts.b2, activation=act, glu=shape.glu
            )
        return lambda: combine(experts(x, plan, backend), weight, plan)

    def fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            for t in grads:
                t.grad = None
            fn().backward(dout)

        return step

    candidates = [b for b in args.backends if b != "torch_grouped" or grouped_mm_supported(x, experts.w1) is None]
    for backend in candidates:
        fn = layer_fn(backend)
        with torch.no_grad():
            times[("fwd", backend)] = bench(fn)
        times[("fwd_bwd", backend)] = bench(fwd_bwd(fn))

    # dense: the same FLOPs as two plain GEMMs in the benchmark dtype
    rows = shape.T * shape.K
    h_w = 2 * shape.H if shape.glu else shape.H
    a = torch.randn(rows, shape.D, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(shape.D, h_w, device=device, dtype=dtype, requires_grad=True)
    c = torch.randn(rows, shape.H, device=device, dtype=dtype, requires_grad=True)
    d = torch.randn(shape.H, shape.D, device=device, dtype=dtype, requires_grad=True)
    g1 = torch.randn(rows, h_w, device=device, dtype=dtype)
    g2 = torch.randn(rows, shape.D, device=device, dtype=dtype)
    with torch.no_grad():
        times[("fwd", "dense")] = bench(lambda: (a @ b, c @ d))

    def dense_step() -> None:
        for t in (a, b, c, d):
            t.grad = None
        torch.autograd.backward([a @ b, c @ d], [g1, g2])

    times[("fwd_bwd", "dense")] = bench(dense_step)

    for (phase, backend), ms in times.items():
        rec = {**base, "phase": phase, "backend": backend, "ms": ms}
        if phase in ("fwd", "fwd_bwd"):
            rec["tflops"] = flops(shape, phase) / (ms * 1e-3) / 1e12
            rec["gbps"] = min_bytes(shape, phase, elt) / (ms * 1e-3) / 1e9
            if backend == "dense":
                records.append(rec)
                continue
            rec["frac_dense"] = times[(phase, "dense")] / ms
            for other in ("torch_grouped", "torch_loop"):
                if other != backend and (phase, other) in times:
                    rec[f"speedup_vs_{other}"] = times[(phase, other)] / ms
        elif backend == "triton":
            rec["speedup_vs_torch"] = times[(phase, "torch")] / ms
        records.append(rec)
    return records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny smoke grid (with --device cpu: under the interpreter)")
    p.add_argument("--out", type=Path, help="JSON-lines output file (overwritten); records also go to stdout")
    p.add_argument("--domains", nargs="+", default=None, help="restrict to these domains (vision, graph, llm, ...)")
    p.add_argument("--routings", nargs="+", default=list(ROUTINGS), choices=ROUTINGS)
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--warmup-ms", type=int, default=25)
    p.add_argument("--rep-ms", type=int, default=100)
    p.add_argument("--cpu-reps", type=int, default=1, help="timed calls per candidate on CPU")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "bench_kernels: the kernel benchmark needs a CUDA device (none found). "
            "For a smoke run of the code path under the Triton interpreter use: --device cpu --quick"
        )
    if args.device == "cpu":
        if not args.quick:
            raise SystemExit(
                "bench_kernels: the kernel benchmark needs CUDA; on CPU only the tiny interpreter smoke run "
                "is available: --device cpu --quick"
            )
        # Must precede the first import of the kernel modules (kernels bind the mode when decorated).
        os.environ["TRITON_INTERPRET"] = "1"
    device = torch.device(args.device)
    args.device_str = device_string(device)
    shapes = quick_grid() if args.quick else full_grid()
    if args.domains:
        shapes = [s for s in shapes if s.domain in args.domains]
    routings = args.routings[:1] if args.quick and args.device == "cpu" else args.routings
    out = args.out.open("w") if args.out else None
    try:
        for shape in shapes:
            for routing in routings:
                for rec in run_shape(shape, routing, args, device):
                    line = json.dumps(rec)
                    print(line, flush=True)
                    if out is not None:
                        out.write(line + "\n")
                        out.flush()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    finally:
        if out is not None:
            out.close()
    print(f"done: {len(shapes)} shapes x {len(routings)} routings on {args.device_str}", file=sys.stderr)


if __name__ == "__main__":
    main()
