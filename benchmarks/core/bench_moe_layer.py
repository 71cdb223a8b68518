"""Forward+backward time of the ``MoE`` layer on CPU against a naive per-expert loop and a dense FFN.

For each shape of a CPU-scaled version of the domain grid (``specs/core.md`` §5.5) and each routing
distribution, one run times, interleaved:

* the ``MoE`` layer (``TopKRouter`` + ``MLPExperts``, GELU, biases) on each backend (``torch_loop``,
  ``torch_grouped``, ``bmm``, ``dense_all``);
* ``naive``: the per-expert loop typical model code uses (``mask = idx == e``, ``nonzero``, index the
  tokens, two ``nn.Linear`` in an ``nn.ModuleList``, ``index_add_`` of the weighted output), with the same
  router and expert weights and the same routing;
* ``naive_stacked``: the same loop on stacked ``[E, out, in]`` weight parameters indexed per expert
  (``F.linear(x[tok], w1[e], b1[e])``), the other common way model code writes it;
* ``dense_ffn``: ``Linear(D, K*H) -> GELU -> Linear(K*H, D)``, a dense FFN with the same active parameters.

Routing is forced so that every candidate sees the same, chosen load: the layer's router is a
``TopKRouter`` subclass whose ``select`` still computes the real logits, softmax and top-k (so the
router's cost and its gradient path are unchanged) but then takes the experts from a pre-drawn index
tensor; the combine weights are the router probabilities at those experts, renormalised over the ``K``
slots exactly as ``TopKRouter`` does. The naive loop recomputes the same weights from the same router
weight. Distributions: ``uniform`` (each token draws ``K`` distinct experts uniformly), ``zipf``
(``K`` distinct experts drawn without replacement with ``p_e`` proportional to ``(e + 1)^-1.2``) and
``hot`` (expert 0 is the first choice of half of the tokens; the other slots, and the first slot of the
other tokens, are uniform over experts 1..E-1).

The timed step is ``y = f(x); y.backward(g)`` with ``x`` requiring grad and parameter gradients cleared
before each call. Auxiliary-loss coefficients are 0 (the naive loop computes none); the layer still
computes its routing statistics. Each candidate is warmed up, then the candidates are called in turn
(rotating the order every round) and the median and inter-quartile range over the rounds are reported.

Example:
    python benchmarks/core/bench_moe_layer.py --out benchmarks/core/out/moe_layer.jsonl
    python benchmarks/core/bench_moe_layer.py --quick --threads 1 2
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from routing_patterns import ROUTINGS, draw_routing
from torch import Tensor, nn

from domain_moe.core import MLPExperts, MoE, TopKRouter

BACKENDS = ("torch_loop", "torch_grouped", "bmm", "dense_all")


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: a domain's token count and widths."""

    domain: str
    T: int
    D: int
    H: int
    E: int
    K: int


def full_grid() -> list[Shape]:
    """The domain grid of specs/core.md §5.5, scaled to a 2-core CPU."""
    grid: list[Shape] = []

    def add(domain: str, T: int, D: int, H: int, experts: tuple[int, ...], ks: tuple[int, ...]) -> None:
        grid.extend(Shape(domain, T, D, H, e, k) for e in experts for k in ks if k <= e)

    add("vision", 4096, 192, 768, (8, 32), (1, 2))
    add("graph", 2708, 64, 128, (4, 8), (1, 2))
    add("timeseries", 4096, 256, 512, (8, 32), (2,))
    add("rl", 256, 64, 128, (4, 16, 128), (1, 2))
    add("recsys", 4096, 128, 256, (4, 16), (1, 2))
    add("distill", 4096, 384, 1536, (4, 16), (1, 2))
    return grid


def quick_grid() -> list[Shape]:
    """A one-minute subset: the E=32 targets and one small shape per regime."""
    return [
        Shape("vision", 4096, 192, 768, 32, 2),
        Shape("timeseries", 4096, 256, 512, 32, 2),
        Shape("graph", 2708, 64, 128, 8, 2),
        Shape("rl", 256, 64, 128, 128, 2),
    ]


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name from ``lscpu`` (else ``platform.processor()``)."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return model


def device_string(threads: int) -> str:
    """CPU model, core count, torch version and thread count."""
    return f"{cpu_model()}, {os.cpu_count()} cpus, torch {torch.__version__}, {threads} threads"


class ForcedTopKRouter(TopKRouter):
    """A ``TopKRouter`` whose experts come from a fixed index tensor; logits, softmax and top-k still run."""

    def __init__(self, forced_idx: Tensor, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.register_buffer("forced_idx", forced_idx.clone())

    def select(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _, _, probs = super().select(logits)  # the real selection's cost stays in the timing
        topk_idx = self.forced_idx
        topk_w = probs.gather(1, topk_idx)
        if self.renorm and self.top_k > 1:
            topk_w = topk_w / topk_w.sum(-1, keepdim=True).clamp_min(1e-20)
        return topk_idx, topk_w * self.route_scale, probs


class NaiveMoE(nn.Module):
    """The per-expert loop of typical model code, with the routing forced like the layer's."""

    def __init__(self, layer: MoE, forced_idx: Tensor) -> None:
        super().__init__()
        experts = layer.experts
        assert isinstance(experts, MLPExperts)
        self.router_weight = nn.Parameter(layer.router.weight.detach().clone())
        self.top_k = forced_idx.shape[1]
        self.register_buffer("forced_idx", forced_idx.clone())
        self.experts = nn.ModuleList()
        for e in range(experts.num_experts):
            fc1 = nn.Linear(experts.d_model, experts.d_hidden)
            fc2 = nn.Linear(experts.d_hidden, experts.d_out)
            with torch.no_grad():
                fc1.weight.copy_(experts.w1[e])
                fc2.weight.copy_(experts.w2[e])
                assert experts.b1 is not None and experts.b2 is not None
                fc1.bias.copy_(experts.b1[e])
                fc2.bias.copy_(experts.b2[e])
            self.experts.append(nn.Sequential(fc1, nn.GELU(), fc2))

    def forward(self, x: Tensor) -> Tensor:
        probs = F.linear(x.float(), self.router_weight).softmax(-1)
        probs.topk(self.top_k, dim=-1)  # what model code computes before the loop (result replaced)
        idx = self.forced_idx
        weight = probs.gather(1, idx)
        if self.top_k > 1:
            weight = weight / weight.sum(-1, keepdim=True)
        weight = weight.to(x.dtype)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.nonzero(idx == e, as_tuple=True)
            if token.numel() == 0:
                continue
            out.index_add_(0, token, expert(x[token]) * weight[token, slot].unsqueeze(-1))
        return out


class NaiveStackedMoE(nn.Module):
    """The same loop on stacked ``[E, out, in]`` expert weights indexed per expert (``F.linear(x, w1[e])``).

    This is the other common way model code writes the loop (weights stored like ``MLPExperts``). Its
    backward pays for every ``w[e]`` index with a zero-filled ``[E, out, in]`` gradient, so it is slower
    than :class:`NaiveMoE` at large ``E``; both are reported.
    """

    def __init__(self, layer: MoE, forced_idx: Tensor) -> None:
        super().__init__()
        experts = layer.experts
        assert isinstance(experts, MLPExperts) and experts.b1 is not None and experts.b2 is not None
        self.router_weight = nn.Parameter(layer.router.weight.detach().clone())
        self.w1 = nn.Parameter(experts.w1.detach().clone())
        self.b1 = nn.Parameter(experts.b1.detach().clone())
        self.w2 = nn.Parameter(experts.w2.detach().clone())
        self.b2 = nn.Parameter(experts.b2.detach().clone())
        self.top_k = forced_idx.shape[1]
        self.register_buffer("forced_idx", forced_idx.clone())

    def forward(self, x: Tensor) -> Tensor:
        probs = F.linear(x.float(), self.router_weight).softmax(-1)
        probs.topk(self.top_k, dim=-1)
        idx = self.forced_idx
        weight = probs.gather(1, idx)
        if self.top_k > 1:
            weight = weight / weight.sum(-1, keepdim=True)
        weight = weight.to(x.dtype)
        out = torch.zeros_like(x)
        for e in range(self.w1.shape[0]):
            token, slot = torch.nonzero(idx == e, as_tuple=True)
            if token.numel() == 0:
                continue
            h = F.gelu(F.linear(x[token], self.w1[e], self.b1[e]))
            out.index_add_(0, token, F.linear(h, self.w2[e], self.b2[e]) * weight[token, slot].unsqueeze(-1))
        return out


def dense_ffn(shape: Shape) -> nn.Module:
    """A dense FFN with the active parameters of one token's ``K`` experts."""
    width = shape.K * shape.H
    return nn.Sequential(nn.Linear(shape.D, width), nn.GELU(), nn.Linear(width, shape.D))


def make_step(module: nn.Module, x: Tensor, grad: Tensor, threads: int) -> Callable[[], None]:
    """One timed forward+backward of ``module`` on ``x`` with ``threads`` torch threads."""
    params = list(module.parameters())

    def step() -> None:
        torch.set_num_threads(threads)
        for p in params:
            p.grad = None
        x.grad = None
        module(x).backward(grad)

    return step


def time_candidates(
    steps: dict[str, Callable[[], None]],
    flop_factor: dict[str, float],
    args: argparse.Namespace,
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Warm up, then call the candidates in rotating order; per-candidate seconds and skip reasons.

    Keys are ``name@threads``. ``dense_ffn`` is warmed up first; a candidate whose FLOPs are
    ``flop_factor > 1`` times the dense FFN's (``dense_all``, and ``bmm`` whose buffer is padded to the
    largest group) is skipped without running when that predicts a call slower than ``--max-call-s``. The
    prediction uses FLOPs, not a timed call, so a busy machine does not skip the main candidates.
    Rounds: as many as fit in ``--budget-s`` (by the warm-up times), at least 3 and at most ``--repeats``.
    """
    skipped: dict[str, str] = {}
    first: dict[str, float] = {}
    for name in sorted(steps, key=lambda n: not n.startswith("dense_ffn@")):
        factor = flop_factor.get(name, 1.0)
        dense = "dense_ffn@" + name.rsplit("@", 1)[-1]
        predicted = first.get(dense, 0.0) * factor
        if factor > 1.0 and predicted > args.max_call_s:
            skipped[name] = f"predicted {predicted:.1f} s per call ({factor:.1f}x the dense FLOPs)"
            continue
        for _ in range(max(1, args.warmup)):
            start = time.perf_counter()
            steps[name]()
            elapsed = time.perf_counter() - start
            first[name] = min(first.get(name, elapsed), elapsed)
    live = [name for name in steps if name not in skipped]
    per_round = sum(first[name] for name in live)
    rounds = max(3, min(args.repeats, math.floor(args.budget_s / max(per_round, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in live}
    for r in range(rounds):
        order = live[r % len(live) :] + live[: r % len(live)]
        for name in order:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return times, skipped


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """Median and inter-quartile bounds (inclusive method)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def run_shape(shape: Shape, routing: str, args: argparse.Namespace) -> list[dict[str, object]]:
    """Time every candidate at every thread count on one shape and routing; one record per pair.

    All (candidate, thread count) pairs are interleaved in the same rounds, so 1 vs 2 threads is compared
    under the same background load; ratios are taken against the baselines at the same thread count.
    """
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    idx = draw_routing(routing, shape.T, shape.E, shape.K, gen)
    x = torch.randn(shape.T, shape.D, generator=gen, requires_grad=True)
    grad = torch.randn(shape.T, shape.D, generator=gen)
    load = torch.bincount(idx.reshape(-1), minlength=shape.E).float()
    max_load = float(load.max() / load.sum())

    layers: dict[str, MoE] = {}
    reference: MoE | None = None
    for backend in args.backends:
        router = ForcedTopKRouter(idx, shape.D, shape.E, shape.K, balance_coef=0.0, z_coef=0.0)
        layer = MoE(router, MLPExperts(shape.E, shape.D, shape.H), backend=backend)
        if reference is None:
            reference = layer
        else:
            layer.load_state_dict(reference.state_dict())
        layers[backend] = layer
    assert reference is not None
    auto = MoE(ForcedTopKRouter(idx, shape.D, shape.E, shape.K), MLPExperts(shape.E, shape.D, shape.H))
    auto_backend = auto.resolve_backend(x.detach())

    naive = NaiveMoE(reference, idx)
    naive_stacked = NaiveStackedMoE(reference, idx)
    with torch.no_grad():  # same function, same routing: a wrong baseline would make every ratio wrong
        want = naive(x)
        for backend, layer in [*layers.items(), ("naive_stacked", naive_stacked)]:
            got = layer(x)
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"{backend} differs from the naive loop by {(got - want).abs().max():.3g}")

    modules: dict[str, nn.Module] = dict(layers)
    modules["naive"] = naive
    modules["naive_stacked"] = naive_stacked
    modules["dense_ffn"] = dense_ffn(shape)
    steps: dict[str, Callable[[], None]] = {}
    for threads in args.threads:
        for name, module in modules.items():
            steps[f"{name}@{threads}"] = make_step(module, x, grad, threads)

    bmm_factor = shape.E * float(load.max()) / (shape.T * shape.K)  # [E, C] buffer, C = the largest group
    flop_factor = {
        f"{name}@{t}": f for t in args.threads for name, f in (("dense_all", shape.E / shape.K), ("bmm", bmm_factor))
    }
    gc.collect()
    times, skipped = time_candidates(steps, flop_factor, args)
    medians = {key: statistics.median(ts) for key, ts in times.items()}
    records: list[dict[str, object]] = []
    for threads in args.threads:
        naive_ms = medians.get(f"naive@{threads}")
        stacked_ms = medians.get(f"naive_stacked@{threads}")
        dense_ms = medians.get(f"dense_ffn@{threads}")
        for name in modules:
            key = f"{name}@{threads}"
            record: dict[str, object] = {
                "bench": "moe_layer",
                "device": device_string(threads),
                "threads": threads,
                "shape": asdict(shape),
                "routing": routing,
                "max_load": round(max_load, 4),
                "backend": name,
                "auto_backend": auto_backend,
            }
            if key in skipped:
                record["skipped"] = skipped[key]
                records.append(record)
                continue
            q1, q2, q3 = quartiles(times[key])
            mean_k = None
            if name in layers and layers[name].last_aux is not None:
                mean_k = round(float(layers[name].last_aux.mean_k), 4)
            elif name in ("naive", "naive_stacked"):
                mean_k = float(shape.K)
            record.update(
                ms_median=round(q2 * 1e3, 3),
                ms_iqr=round((q3 - q1) * 1e3, 3),
                ms_min=round(min(times[key]) * 1e3, 3),
                repeats=len(times[key]),
                ratio_vs_naive=None if naive_ms is None else round(naive_ms / q2, 3),
                ratio_vs_naive_stacked=None if stacked_ms is None else round(stacked_ms / q2, 3),
                ratio_vs_dense=None if dense_ms is None else round(q2 / dense_ms, 3),
                mean_k=mean_k,
            )
            records.append(record)
    return records


def markdown(records: list[dict[str, object]]) -> str:
    """A markdown table of the records (one row per shape, routing and candidate)."""
    lines = [
        "| threads | shape (domain T D H E K) | routing | backend | ms | x vs naive | x vs naive_stacked "
        "| x vs dense |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in records:
        s = r["shape"]
        assert isinstance(s, dict)
        shape = f"{s['domain']} {s['T']} {s['D']} {s['H']} {s['E']} {s['K']}"
        if "skipped" in r:
            lines.append(f"| {r['threads']} | {shape} | {r['routing']} | {r['backend']} | skipped | | | |")
            continue
        ratios = [r.get(key) for key in ("ratio_vs_naive", "ratio_vs_naive_stacked", "ratio_vs_dense")]
        cells = " | ".join("n/a" if v is None else f"{v:.2f}" for v in ratios)
        lines.append(f"| {r['threads']} | {shape} | {r['routing']} | {r['backend']} | {r['ms_median']:.1f} | {cells} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="JSON-lines output file (overwritten); records also go to stdout")
    p.add_argument("--quick", action="store_true", help="a one-minute subset (4 shapes, uniform + hot)")
    p.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch thread counts, interleaved in the same rounds"
    )
    p.add_argument("--repeats", type=int, default=None, help="most timed rounds per shape (default 15; quick 9)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per candidate before timing")
    p.add_argument(
        "--budget-s", type=float, default=None, help="cap on timed seconds per shape (fewer rounds, at least 3)"
    )
    p.add_argument(
        "--max-call-s", type=float, default=1.0, help="skip dense_all/bmm when their FLOPs predict a slower call"
    )
    p.add_argument("--domains", nargs="+", default=None, help="restrict to these domains")
    p.add_argument("--routings", nargs="+", default=None, choices=ROUTINGS)
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--markdown", action="store_true", help="print a markdown table at the end (stderr)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", type=Path, help="print the markdown table of a saved JSON-lines file and exit")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = [torch.get_num_threads()]
    if args.repeats is None:
        args.repeats = 9 if args.quick else 15
    if args.budget_s is None:
        args.budget_s = 2.0 if args.quick else 4.0
    if args.routings is None:
        args.routings = ["uniform", "hot"] if args.quick else list(ROUTINGS)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the grid and write JSON lines."""
    args = parse_args(argv)
    if args.table is not None:
        with args.table.open() as f:
            print(markdown([json.loads(line) for line in f if line.strip()]))
        return
    grid = quick_grid() if args.quick else full_grid()
    if args.domains:
        grid = [s for s in grid if s.domain in args.domains]
    out = None
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = args.out.open("w")
    records: list[dict[str, object]] = []
    start = time.perf_counter()
    try:
        for shape in grid:
            for routing in args.routings:
                t0 = time.perf_counter()
                for record in run_shape(shape, routing, args):
                    records.append(record)
                    line = json.dumps(record)
                    print(line, flush=True)
                    if out is not None:
                        out.write(line + "\n")
                        out.flush()
                print(f"# {shape} {routing}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    finally:
        if out is not None:
            out.close()
    print(f"# total {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if args.markdown:
        print(markdown(records), file=sys.stderr)


if __name__ == "__main__":
    main()
