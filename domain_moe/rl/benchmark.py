"""Reproduce T2MIR's claims on CPU-sized task families: variants x seeds -> JSON records + a markdown table.

``python -m domain_moe.rl.benchmark --env dark-room --variants t2mir,ad-dense-matched --seeds 3
--eval-tasks n=10,seed=100 --out results.json``

Every variant of a seed trains on the same learning histories (history seed = training seed) with the same
batch stream and is evaluated on the same held-out goals (``--eval-tasks``: ``n`` goals never used in
training, drawn with ``seed``) with the same environment and sampling seeds. Dark Room trains on 8 independent
learning histories per training goal (``--histories-per-task``): with one history per goal, 39 histories are
memorised rather than distilled into an in-context learner. Variants: ``t2mir``,
``ad-dense`` (AD, dense FFN ``4d``), ``ad-dense-matched`` (dense FFN with T2MIR's active parameters),
``token-only``, ``task-only``, ``t2mir-no-contrastive``.

Records follow ``DESIGN.md``: one per (dataset, method, metric) with mean, std, n, per-seed values, device and
seconds. Metrics: ``first_return`` (first in-context episode), ``final_return`` (mean of the last three),
``return_ep<i>``, ``train_final_return`` (the same on training goals, a sanity check), and for MoE variants
``token_entropy_ratio`` (token-expert load entropy / log E), ``task_nmi`` (NMI between held-out task and top-1
task expert) and ``contrastive_acc``. The method ``source`` holds the held-out goals' source-history returns
per episode. Finished (method, seed) runs are kept in ``<out>.runs.jsonl`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domain_moe.core.moe import collect_aux
from domain_moe.rl.contexts import ContextSampler
from domain_moe.rl.diagnostics import routing_health
from domain_moe.rl.evaluation import in_context_returns
from domain_moe.rl.features import action_dim, is_discrete, state_dim
from domain_moe.rl.histories import generate_histories
from domain_moe.rl.models import ADTransformer
from domain_moe.rl.tasks import action_loss
from domain_moe.rl.tasksets import draw_eval_tasks, split_tasks
from domain_moe.utils.records import RunLog, lower_is_better, summarise

__all__ = ["ENVS", "VARIANTS", "build_model", "main", "parse_eval_tasks", "run_one"]

#: Variant name -> (last_ffn, uses the contrastive loss).
VARIANTS = {
    "t2mir": ("t2mir", True),
    "ad-dense": ("dense", False),
    "ad-dense-matched": ("dense_matched", False),
    "token-only": ("token_only", False),
    "task-only": ("task_only", True),
    "t2mir-no-contrastive": ("t2mir", False),
}

#: Per-family settings sized for a shared 2-core CPU.
ENVS: dict[str, dict[str, Any]] = {
    "dark-room": {
        "env_id": "domain_moe/DarkRoom-v0",
        "env_kwargs": {"grid_size": 7, "episode_length": 15},
        "num_train_tasks": 39,
        "source": "psrl",
        "num_episodes": 12,
        "histories_per_task": 8,
        "context_episodes": 4,
        "tasks_per_batch": 16,
        "token_layout": "step",
        "steps": 1500,
        "eval_episodes": 8,
    },
    "point-robot": {
        "env_id": "domain_moe/PointRobot-v0",
        "env_kwargs": {"episode_length": 20},
        "num_train_tasks": 200,
        "source": "noise",
        "num_episodes": 12,
        "context_episodes": 3,
        "tasks_per_batch": 16,
        "token_layout": "step",
        "steps": 1500,
        "eval_episodes": 8,
    },
}


def parse_eval_tasks(spec: str) -> tuple[int, int]:
    """``"n=10,seed=100"`` -> ``(10, 100)``."""
    values = {"n": 10, "seed": 100}
    for part in filter(None, spec.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in values:
            raise ValueError(f"--eval-tasks: expected 'n=<int>,seed=<int>', got {spec!r}")
        values[key.strip()] = int(value)
    return values["n"], values["seed"]


def build_model(variant: str, cfg: dict[str, Any], d_model: int = 32) -> ADTransformer:
    """The AD transformer of ``variant`` for the family settings ``cfg``."""
    if variant not in VARIANTS:
        raise ValueError(f"build_model: variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    env_id, kwargs = cfg["env_id"], cfg["env_kwargs"]
    horizon = int(kwargs["episode_length"])
    return ADTransformer(
        state_dim(env_id, kwargs),
        action_dim(env_id),
        is_discrete(env_id),
        horizon,
        cfg["context_episodes"] * horizon,
        d_model=d_model,
        num_layers=2,
        num_heads=2,
        last_ffn=VARIANTS[variant][0],
        token_layout=cfg.get("token_layout", "sar"),
    )


def train(
    model: ADTransformer,
    sampler: ContextSampler,
    cfg: dict[str, Any],
    seed: int,
    contrastive_weight: float,
    lr: float = 1e-3,
    warmup: int = 100,
) -> dict[str, float]:
    """AdamW + warm-up/cosine, gradient clip 1; ``L_act + L_bal + w_con L_con``; EMA after every step."""
    steps = int(cfg["steps"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rng = np.random.default_rng([seed, 1])
    model.train()
    tail: list[float] = []
    for step in range(steps):
        batch = sampler.sample(cfg["tasks_per_batch"], rng)
        out = model(batch["states"], batch["actions"], batch["rewards"], batch["timesteps"])
        loss = action_loss(out, batch["targets"], model.discrete_actions)
        total = loss + collect_aux(model)
        con = model.contrastive_loss()
        if con is not None and contrastive_weight:
            total = total + contrastive_weight * con
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        model.ema_update()
        if step >= steps - 50:
            tail.append(float(loss.detach()))
    return {"train_action_loss": float(np.mean(tail))}


def run_one(
    env: str,
    variant: str,
    seed: int,
    eval_n: int,
    eval_seed: int,
    steps: int | None = None,
    contrastive_weight: float = 0.01,
    histories_per_task: int | None = None,
) -> dict[str, Any]:
    """Train one (variant, seed) and evaluate it in context on held-out and training goals."""
    cfg = dict(ENVS[env])
    if steps is not None:
        cfg["steps"] = steps
    if histories_per_task is not None:
        cfg["histories_per_task"] = histories_per_task
    env_id, kwargs = cfg["env_id"], cfg["env_kwargs"]
    start = time.perf_counter()
    train_goals, _ = split_tasks(
        env_id, cfg["num_train_tasks"], 0 if env_id.endswith("PointRobot-v0") else 10, 0, kwargs
    )
    eval_goals = draw_eval_tasks(env_id, eval_n, eval_seed, train_goals, kwargs)
    repeats = int(cfg.get("histories_per_task", 1))
    histories = generate_histories(
        env_id, np.repeat(train_goals, repeats, axis=0), cfg["source"], cfg["num_episodes"], seed, env_kwargs=kwargs
    )
    task_ids = np.repeat(np.arange(len(train_goals)), repeats)
    sampler = ContextSampler(histories, cfg["context_episodes"], task_ids=task_ids)
    torch.manual_seed(seed)
    model = build_model(variant, cfg)
    use_con = VARIANTS[variant][1]
    result: dict[str, Any] = train(model, sampler, cfg, seed, contrastive_weight if use_con else 0.0)
    evaluate = {
        "env_id": env_id,
        "env_kwargs": kwargs,
        "num_episodes": cfg["eval_episodes"],
        "context_episodes": cfg["context_episodes"],
        "rollouts_per_task": 5,
        "seed": eval_seed,
    }
    curve = in_context_returns(model, goals=eval_goals, **evaluate).mean(0)
    train_curve = in_context_returns(model, goals=train_goals[:eval_n], **evaluate).mean(0)
    result.update({f"return_ep{i + 1}": float(v) for i, v in enumerate(curve)})
    result["first_return"] = float(curve[0])
    result["final_return"] = float(curve[-3:].mean())
    result["train_final_return"] = float(train_curve[-3:].mean())
    held_out = generate_histories(
        env_id, eval_goals, cfg["source"], cfg["num_episodes"], seed + 10_000, env_kwargs=kwargs
    )
    result.update(routing_health(model, ContextSampler(held_out, cfg["context_episodes"]), seed=seed))
    result["seconds"] = time.perf_counter() - start
    return result


def source_curve(env: str, seed: int, eval_n: int, eval_seed: int) -> dict[str, Any]:
    """The source algorithm's returns on the held-out goals, first ``eval_episodes`` of its history."""
    cfg = ENVS[env]
    env_id, kwargs = cfg["env_id"], cfg["env_kwargs"]
    train_goals, _ = split_tasks(
        env_id, cfg["num_train_tasks"], 0 if env_id.endswith("PointRobot-v0") else 10, 0, kwargs
    )
    goals = draw_eval_tasks(env_id, eval_n, eval_seed, train_goals, kwargs)
    curve = (
        generate_histories(env_id, goals, cfg["source"], cfg["num_episodes"], seed, env_kwargs=kwargs).returns().mean(0)
    )
    curve = curve[: cfg["eval_episodes"]]  # the episodes the in-context evaluation covers
    out = {f"return_ep{i + 1}": float(v) for i, v in enumerate(curve)}
    out["first_return"] = float(curve[0])
    out["final_return"] = float(curve[-3:].mean())
    out["seconds"] = 0.0
    return out


def device_string() -> str:
    """CPU model, core count and torch version."""
    return f"cpu ({platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread)"


def aggregate(runs: list[dict[str, Any]], dataset: str, device: str) -> list[dict[str, Any]]:
    """One record per (method, metric) over seeds: the metrics of a method's first run, seconds summed."""
    first: dict[str, list[str]] = {}
    shaped = []
    for r in runs:
        # Runs carry no dataset and keep their wall time among the metrics (``seconds``).
        metrics = first.setdefault(r["method"], [k for k in r["metrics"] if k != "seconds"])
        values = {k: float(r["metrics"][k]) for k in metrics if k in r["metrics"]}
        shaped.append(
            {"dataset": dataset, "method": r["method"], "metrics": values, "seconds": r["metrics"].get("seconds", 0.0)}
        )
    return summarise(shaped, device, lower_is_better(suffixes=("loss",)))


def markdown(records: list[dict[str, Any]]) -> str:
    """Methods x headline metrics, ``mean ± std (n)``."""
    columns = [
        "first_return",
        "final_return",
        "train_final_return",
        "token_entropy_ratio",
        "task_nmi",
        "contrastive_acc",
    ]
    methods = list(dict.fromkeys(r["method"] for r in records))
    cell = {(r["method"], r["metric"]): r for r in records}
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for m in methods:
        row = []
        for c in columns:
            r = cell.get((m, c))
            row.append("-" if r is None else f"{r['mean']:.3f} ± {r['std']:.3f} ({r['n']})")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    curves = sorted({r["metric"] for r in records if r["metric"].startswith("return_ep")}, key=lambda s: int(s[9:]))
    lines += [
        "",
        "| method | " + " | ".join(c.replace("return_", "") for c in curves) + " |",
        "|---" * (len(curves) + 1) + "|",
    ]
    for m in methods:
        lines.append(
            f"| {m} | " + " | ".join(f"{cell[(m, c)]['mean']:.2f}" if (m, c) in cell else "-" for c in curves) + " |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Command-line entry point; returns the records."""
    parser = argparse.ArgumentParser(prog="python -m domain_moe.rl.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=sorted(ENVS), default="dark-room")
    parser.add_argument("--variants", default="t2mir,ad-dense,ad-dense-matched,t2mir-no-contrastive")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (histories and init)")
    parser.add_argument("--eval-tasks", default="n=10,seed=100", help="held-out goals: n=<count>,seed=<seed>")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: per env)")
    parser.add_argument("--contrastive-weight", type=float, default=0.01)
    parser.add_argument(
        "--histories-per-task", type=int, default=None, help="independent learning histories per training goal"
    )
    parser.add_argument("--out", type=Path, required=True, help="results JSON; <out>.runs.jsonl resumes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    eval_n, eval_seed = parse_eval_tasks(args.eval_tasks)
    run_log = RunLog.beside(args.out)
    runs = run_log.load()
    done = run_log.done("method", "seed")
    jobs = [("source", s) for s in range(args.seeds)] + [(v, s) for v in variants for s in range(args.seeds)]
    for i, (method, seed) in enumerate(jobs):
        if (method, seed) in done:
            continue
        if method == "source":
            metrics = source_curve(args.env, seed, eval_n, eval_seed)
        else:
            metrics = run_one(
                args.env,
                method,
                seed,
                eval_n,
                eval_seed,
                args.steps,
                args.contrastive_weight,
                args.histories_per_task,
            )
        run = {"method": method, "seed": seed, "metrics": metrics}
        runs.append(run)
        run_log.append(run)
        log(
            f"[{i + 1}/{len(jobs)}] {method} seed={seed}: first={metrics['first_return']:.2f} "
            f"final={metrics['final_return']:.2f} ({metrics['seconds']:.0f}s)"
        )
    records = aggregate([r for r in runs if r["method"] in {"source", *variants}], args.env, device_string())
    args.out.write_text(json.dumps(records, indent=1))
    log(markdown(records))
    return records


if __name__ == "__main__":
    main()
