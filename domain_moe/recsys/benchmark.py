"""Reproduce the multi-task MoE claims: models x datasets x seeds -> JSON records + a markdown table.

``python -m domain_moe.recsys.benchmark --dataset mmoe:p=0.5 --models shared-bottom,omoe,mmoe --seeds 10
--out results.json``

Datasets: ``mmoe:p=<corr>[,n=<train rows>,epochs=<E>,data_seed=<s>]`` (MMoE's synthetic benchmark; by default
each seed draws its own data set), ``home-synthetic[:seed=<data seed>,n=<rows>,epochs=<E>]`` (the HoME stress
test), ``census-income[:group=1|2,epochs=<E>]`` and ``movielens[:epochs=<E>]`` (read from ``--data-root``).
Models: ``shared-bottom``, ``omoe``, ``mmoe``, ``cgc``, ``ple``, ``home`` and the ablations ``home-no-norm``
(ReLU, no BatchNorm), ``home-no-mask``, ``home-no-fgate``, ``home-no-sgate``.

Records follow ``DESIGN.md``: one per (dataset, method, metric) with mean, std, n, per-seed values, device and
seconds; per-task rows use the dataset name ``<dataset>/<task>``, the task average is a row named
``<dataset>`` (metric ``auc_mean`` or ``mse_mean``), and the expert-health diagnostics are rows with metrics
``diag_*`` (``own_mass`` per task). Finished (dataset, method, seed) runs are kept in ``<out>.runs.jsonl``,
so an interrupted benchmark resumes where it stopped. The trained model is selected on the validation split
(best epoch) and scored on the test split.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domain_moe.recsys.data import (
    CensusIncomeDataModule,
    HoMESyntheticDataModule,
    MMoESyntheticDataModule,
    MovieLensDataModule,
    RecDataModule,
)
from domain_moe.recsys.diagnostics import ExpertHealth
from domain_moe.recsys.metrics import auc, gauc
from domain_moe.recsys.models import CGC, PLE, HoME, MMoE, OMoE, SharedBottom
from domain_moe.recsys.tasks import multitask_loss
from domain_moe.utils.records import RunLog, lower_is_better, record

__all__ = ["MODELS", "build_model", "main", "parse_dataset", "run_one"]

MODELS = (
    "shared-bottom",
    "omoe",
    "mmoe",
    "cgc",
    "ple",
    "home",
    "home-no-norm",
    "home-no-mask",
    "home-no-fgate",
    "home-no-sgate",
)
HOME_ABLATIONS = {
    "home": {},
    "home-no-norm": {"expert_norm": None, "activation": "relu"},
    "home-no-mask": {"hierarchy_mask": False},
    "home-no-fgate": {"feature_gate": False},
    "home-no-sgate": {"self_gate": False},
}


def parse_dataset(spec: str) -> tuple[str, dict[str, str]]:
    """``"mmoe:p=0.5,n=20000"`` -> ``("mmoe", {"p": "0.5", "n": "20000"})``."""
    name, _, rest = spec.partition(":")
    options = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"dataset option {part!r} in {spec!r} must be key=value")
        options[key.strip()] = value.strip()
    if name not in ("mmoe", "home-synthetic", "census-income", "movielens"):
        raise ValueError(f"unknown dataset {name!r}; use mmoe, home-synthetic, census-income or movielens")
    return name, options


def make_data(name: str, options: dict[str, str], seed: int, data_root: Path) -> RecDataModule:
    """The DataModule of a dataset spec for one seed."""
    if name == "mmoe":
        data_seed = int(options.get("data_seed", seed))
        n = int(options.get("n", 20_000))
        return MMoESyntheticDataModule(
            correlation=float(options.get("p", 0.5)), num_train=n, num_val=2_000, num_test=5_000,
            batch_size=int(options.get("batch", 256)), seed=data_seed,
        )
    if name == "home-synthetic":
        return HoMESyntheticDataModule(
            num_samples=int(options.get("n", 200_000)), num_users=int(options.get("users", 2_000)),
            num_items=int(options.get("items", 1_000)), batch_size=int(options.get("batch", 1024)),
            seed=int(options.get("seed", 0)),
        )
    if name == "census-income":
        return CensusIncomeDataModule(
            data_root / "recsys" / "census-income", group=int(options.get("group", 1)),
            batch_size=int(options.get("batch", 1024)), seed=seed,
        )
    root = data_root / "recsys" / "ml-latest-small"
    return MovieLensDataModule(root, batch_size=int(options.get("batch", 1024)), seed=seed)


def build_model(method: str, dataset: str, dm: RecDataModule) -> nn.Module:
    """The model ``method`` at the size used for ``dataset`` (MMoE's sizes on the synthetic benchmark)."""
    common: dict[str, Any] = {"task_names": dm.task_names, "cardinalities": dm.cardinalities, "num_dense": dm.num_dense}
    small = dataset == "mmoe"
    tower = [8] if small else [32]
    width = 16 if small else 64
    if method == "shared-bottom":
        return SharedBottom(**common, d_hidden=113 if small else [128, 64], tower_hidden=tower)
    if method in ("omoe", "mmoe"):
        cls = OMoE if method == "omoe" else MMoE
        return cls(**common, num_experts=8, d_hidden=width, tower_hidden=tower)
    if method in ("cgc", "ple"):
        shared = 4 if small else 2
        if method == "cgc":
            return CGC(**common, num_specific=1, num_shared=shared, d_hidden=width, tower_hidden=tower)
        return PLE(**common, num_levels=2, num_specific=1, num_shared=shared, d_hidden=width, tower_hidden=tower)
    if method in HOME_ABLATIONS:
        sizes = {"num_shared_meta": 2, "num_group_meta": 1, "num_global_experts": 2, "num_group_experts": 1}
        if dm.task_groups is None:  # one group per task: group experts would duplicate task experts
            sizes["num_group_experts"] = 0
        return HoME(
            **common, task_groups=dm.task_groups, **sizes, num_task_experts=1, d_hidden=width, tower_hidden=tower,
            lora_rank=4 if small else 8, **HOME_ABLATIONS[method],
        )
    raise ValueError(f"unknown model {method!r}; choose from {MODELS}")


@torch.no_grad()
def evaluate(model: nn.Module, dm: RecDataModule, split: str, health: ExpertHealth | None = None) -> dict[str, float]:
    """Per-task metrics on a split: ``<task>/auc``, ``<task>/gauc`` (binary) or ``<task>/mse`` (regression)."""
    model.eval()
    assert dm.splits is not None
    data = dm.splits[split].data
    logits = []
    for lo in range(0, len(data), dm.eval_batch_size):
        sl = slice(lo, lo + dm.eval_batch_size)
        dense = None if data.dense is None else data.dense[sl]
        logits.append(model(dense, None if data.sparse is None else data.sparse[sl]))
        if health is not None:
            health.update()
    out = torch.cat(logits)
    metrics: dict[str, float] = {}
    for t, (name, kind) in enumerate(zip(dm.task_names, dm.task_types)):
        keep = data.mask[:, t] if data.mask is not None else torch.ones(len(data), dtype=torch.bool)
        pred, target = out[keep, t], data.labels[keep, t]
        if kind == "binary":
            metrics[f"{name}/auc"] = float(auc(pred, target))
            if data.user is not None:
                metrics[f"{name}/gauc"] = float(gauc(pred, target, data.user[keep]))
        else:
            metrics[f"{name}/mse"] = float((pred - target).square().mean())
    model.train()
    return metrics


def _selection_score(metrics: dict[str, float]) -> float:
    """Higher is better: mean AUC when there are binary tasks, else minus the mean MSE."""
    aucs = [v for k, v in metrics.items() if k.endswith("/auc")]
    if aucs:
        return sum(aucs) / len(aucs)
    return -sum(v for k, v in metrics.items() if k.endswith("/mse"))


def run_one(dataset: str, options: dict[str, str], method: str, seed: int, data_root: Path) -> dict[str, float]:
    """Train one model with one seed; test metrics of the best validation epoch plus diagnostics."""
    dm = make_data(dataset, options, seed, data_root)
    dm.setup()
    torch.manual_seed(seed)
    model = build_model(method, dataset, dm)
    epochs = int(options.get("epochs", {"mmoe": 20, "home-synthetic": 3}.get(dataset, 10)))
    lr = float(options.get("lr", 1e-3))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    weights = torch.ones(len(dm.task_names))
    best, best_state = -math.inf, None
    loader = dm.train_dataloader()  # one loader: its generator advances, so every epoch has a new order
    for _ in range(epochs):
        for batch in loader:
            logits = model(batch.dense, batch.sparse)
            loss, _ = multitask_loss(logits, batch.labels, dm.task_types, weights, batch.mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = _selection_score(evaluate(model, dm, "val"))
        if score > best or best_state is None:
            best, best_state = score, copy.deepcopy(model.state_dict())
    assert best_state is not None
    model.load_state_dict(best_state)
    health = ExpertHealth(model)
    result = evaluate(model, dm, "test", health)
    layers = health.compute()
    if layers:
        summaries = [h.summary for h in layers.values()]
        last = list(layers.values())[-1]
        result["diag_collapsed_experts"] = sum(s["collapsed_experts"] for s in summaries)
        result["diag_max_zero_rate"] = max(s["max_zero_rate"] for s in summaries)
        result["diag_std_ratio"] = max(s["std_ratio"] for s in summaries)
        result["diag_max_shared_share"] = last.summary["max_shared_share"]
        result["diag_max_global_share"] = last.summary["max_global_share"]
        for gate, own in zip(last.gate_names, last.own_mass.tolist()):
            if own == own:
                result[f"{gate}/own_mass"] = own
    return result


def device_string() -> str:
    """CPU model, core count, torch version and thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} thread), torch {torch.__version__}"


# Errors and expert-health alarms: smaller is better; every other metric (AUC, GAUC, own mass) is a score.
_higher_is_better = lower_is_better(
    {
        "diag_collapsed_experts",
        "diag_max_zero_rate",
        "diag_std_ratio",
        "diag_max_shared_share",
        "diag_max_global_share",
    },
    suffixes=("mse", "mse_mean"),
)


def aggregate(runs: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """Records (one per dataset, method, metric) from the per-seed runs."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        cells.setdefault((r["dataset"], r["method"]), []).append(r)
    records = []
    for (dataset, method), rs in cells.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        keys = sorted({k for r in rs for k in r["metrics"]})
        per_seed_avg: dict[str, list[float]] = {}
        for r in rs:
            for kind in ("auc", "mse", "gauc"):
                vals = [v for k, v in r["metrics"].items() if k.endswith(f"/{kind}") and v == v]
                if vals:
                    per_seed_avg.setdefault(f"{kind}_mean", []).append(sum(vals) / len(vals))
        rows = []
        for key in keys:
            values = [r["metrics"][key] for r in rs if key in r["metrics"]]
            if "/" in key:
                task, metric = key.rsplit("/", 1)
                rows.append((f"{dataset}/{task}", metric, values))
            else:
                rows.append((dataset, key, values))
        rows += [(dataset, metric, values) for metric, values in per_seed_avg.items()]
        seconds = round(sum(r["seconds"] for r in rs), 2)
        # NaN (a task without both classes in a tiny split) is written as null: JSON has no NaN.
        records += [
            record(ds, method, metric, values, higher_is_better=_higher_is_better(metric), device=device,
                   seconds=seconds, nan="null")
            for ds, metric, values in rows
        ]
    return records


def markdown(records: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """Per dataset spec, a table of task metrics and one of diagnostics: a row per method, ``mean ± std``."""
    table = {(r["method"], r["dataset"], r["metric"]): r for r in records}
    specs: list[str] = []
    for r in records:
        spec = r["dataset"].split("/", 1)[0]
        if spec not in specs:
            specs.append(spec)
    out = []
    for spec in specs:
        cols: dict[str, list[tuple[str, str]]] = {"metrics": [], "diagnostics": []}
        for r in records:
            ds, metric = r["dataset"], r["metric"]
            if ds.split("/", 1)[0] != spec:
                continue
            kind = "diagnostics" if metric.startswith("diag_") or metric == "own_mass" else "metrics"
            if (ds, metric) not in cols[kind]:
                cols[kind].append((ds, metric))
        for kind, keys in cols.items():
            if not keys:
                continue
            keys.sort(key=lambda k: (k[0] == spec, k[1], k[0]))
            heads = [f"{ds.split('/', 1)[1] if '/' in ds else 'all'} {m}" for ds, m in keys]
            lines = [f"**{spec}** ({kind})", "", "| method | " + " | ".join(heads) + " |"]
            lines.append("|---" * (len(keys) + 1) + "|")
            for method in methods:
                cells = []
                for ds, m in keys:
                    r = table.get((method, ds, m))
                    ok = r is not None and r["mean"] is not None
                    cells.append(f"{r['mean']:.4f} ± {r['std']:.4f}" if ok else "-")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            out.append("\n".join(lines))
    return "\n\n".join(out)


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the records."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", "--datasets", dest="datasets", action="append", required=True,
                        help="dataset spec (repeat or comma-free list), e.g. mmoe:p=0.5")
    parser.add_argument("--models", "--methods", dest="models", default="shared-bottom,mmoe,ple,home",
                        help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (records); <out>.runs.jsonl resumes")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("DOMAIN_MOE_DATA", "../shared/data")))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small models)")
    args = parser.parse_args(argv)
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in methods if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {MODELS}")
    specs = [(spec, *parse_dataset(spec)) for spec in args.datasets]
    run_log = RunLog.beside(args.out)
    runs = run_log.load()
    done = run_log.done("dataset", "method", "seed")
    device = device_string()
    total = len(specs) * len(methods) * args.seeds
    count = 0
    for spec, name, options in specs:
        for method in methods:
            for seed in range(args.seeds):
                count += 1
                if (spec, method, seed) in done:
                    continue
                start = time.perf_counter()
                metrics = run_one(name, options, method, seed, args.data_root)
                seconds = time.perf_counter() - start
                run = {"dataset": spec, "method": method, "seed": seed, "metrics": metrics, "seconds": seconds}
                runs.append(run)
                run_log.append(run)
                main_metric = {k: round(v, 4) for k, v in metrics.items() if k.endswith(("/auc", "/mse"))}
                log(f"[{count}/{total}] {spec} {method} seed={seed} {seconds:.1f}s {main_metric}")
    wanted = {(s, m) for s, _, _ in specs for m in methods}
    records = aggregate([r for r in runs if (r["dataset"], r["method"]) in wanted and r["seed"] < args.seeds], device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1))
    print(f"device: {device}\n")
    print(markdown(records, methods))
    return records


if __name__ == "__main__":
    main()
