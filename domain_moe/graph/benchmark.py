"""Reproduce Mowst's claim: Mowst(*) vs its MLP and GNN experts over datasets x splits -> JSON + markdown.

``python -m domain_moe.graph.benchmark --datasets csbm,cora,texas --methods mlp,gcn,mowst-gcn --splits 3
--out results.json``

Datasets: the registered names of :data:`domain_moe.graph.data.DATASETS` (read from ``--data-root``), with
options after a colon (``cora:split=public`` keeps Planetoid's public split and varies only the seed),
``csbm[:homophily=0.7,informative_fraction=0.5,num_nodes=1000,...]`` (the generated contextual SBM) and
``npz:<path>`` (any heterophilous-graphs ``.npz`` file). Run ``i`` uses split ``i`` and seed ``i``.
Methods: ``mlp``, ``gcn``, ``sage``, ``gat``, ``gin``, ``mowst-<conv>``, ``mowst-star-<conv>``.

Training: baselines stop early on the validation metric (``--patience`` checks); Mowst pre-trains its GNN
with early stopping, then alternates weak/strong turns with per-turn patience, best-weight restore and an
outer patience over rounds (:class:`~domain_moe.graph.tasks.MowstTask`); Mowst* trains jointly until its
patience runs out. Everything is selected on validation nodes. Mowst is scored by the expectation of the
paper's sampled inference (``eval_mode="sample"``), Mowst* by the mixture.

Records follow ``DESIGN.md``: one per (dataset, method, metric). Metrics: the test ``accuracy`` or ``auroc``
(checkpoint chosen on the validation metric), ``epoch_seconds`` (mean training-epoch wall time through
Lightning), ``epochs`` (trained), ``step_ms`` (median model-only training step, no Lightning; for Mowst the
mean of ``weak_step_ms`` and ``strong_step_ms``), and for Mowst: ``expected_<metric>`` (the mixture
``C p + (1-C) p'``), ``mean_confidence`` (test nodes), ``weak_share`` (share of test nodes routed to the
weak expert in one seeded sampled inference), ``weak_routed_acc``/``strong_routed_acc`` (accuracy of each
expert on the test nodes routed to it), ``gnn_work_saved`` (fraction of GNN node evaluations skipped by
lazy inference over the whole graph), ``weak_metric``/``strong_metric`` (each expert alone on the test
nodes). Finished runs are kept in ``<out>.runs.jsonl``, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import Tensor
from torch_geometric.data import Data

from domain_moe.graph.data import (
    DATASETS,
    ContextualSBMDataModule,
    GraphDataModule,
    NodeClassificationDataModule,
    parse_graph_spec,
)
from domain_moe.graph.models import GNN, Mowst, MowstOutput, NodeMLP
from domain_moe.graph.tasks import MowstStarTask, MowstTask, NodeClassificationTask, node_metric
from domain_moe.utils.records import RunLog, lower_is_better, summarise

__all__ = [
    "METHODS",
    "build_task",
    "interleaved_step_times",
    "main",
    "parse_dataset",
    "run_one",
    "split_datasets",
    "step_closures",
    "step_times",
]

CONVS = ("gcn", "sage", "gat", "gin")
METHODS = ("mlp", *CONVS, *(f"mowst-{c}" for c in CONVS), *(f"mowst-star-{c}" for c in CONVS))


def split_datasets(text: str) -> list[str]:
    """Split ``--datasets`` on commas, keeping ``k=v`` options with their dataset (``csbm:a=1,b=2,cora``).

    Example:
        >>> split_datasets("csbm:homophily=0.3,signal=2,cora:split=public,texas")
        ['csbm:homophily=0.3,signal=2', 'cora:split=public', 'texas']
    """
    out: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if out and "=" in token and ":" not in token.split("=", 1)[0]:
            out[-1] += "," + token
        else:
            out.append(token)
    return out


def parse_dataset(spec: str, split: int, root: str | None) -> GraphDataModule:
    """Build the DataModule of a dataset string for run ``split``.

    Args:
        spec: ``name[:k=v,...]``, ``csbm[:k=v,...]`` or ``npz:<path>``.
        split: run index (split index and generator seed).
        root: folder of the offline graphs.

    Returns:
        The DataModule.
    """
    if spec.startswith("npz:"):
        return NodeClassificationDataModule(spec, split=split)
    name, options = parse_graph_spec(spec)
    if name == "csbm":
        options.setdefault("num_splits", max(split + 1, 3))
        options.setdefault("seed", 0)
        return ContextualSBMDataModule(split=split, **options)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {spec!r}: expected one of {sorted(DATASETS)}, csbm[:...] or npz:<path>")
    chosen = options.pop("split", split)
    return NodeClassificationDataModule(name, root=root, split=chosen, **options)


def build_task(method: str, dm: GraphDataModule, args: argparse.Namespace) -> NodeClassificationTask:
    """The task of a method name on a DataModule, with the benchmark's hyperparameters."""
    common = {
        "hidden_channels": args.hidden,
        "num_layers": args.layers,
        "dropout": args.dropout,
        "norm": args.batch_norm,
    }
    opt = {
        "optimizer": lambda p: torch.optim.Adam(p, lr=args.lr, weight_decay=args.weight_decay),
        "metric": dm.metric,
        "num_classes": dm.num_classes,
    }
    f, q = dm.num_features, dm.num_classes
    if method == "mlp":
        return NodeClassificationTask(NodeMLP(f, q, **common), **opt)
    conv = method.removeprefix("mowst-star-").removeprefix("mowst-")
    if conv not in CONVS or method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    strong = GNN(f, q, conv=conv, sparse=args.sparse and conv != "gat", **common)  # type: ignore[arg-type]
    if method == conv:
        return NodeClassificationTask(strong, **opt)
    gate = {
        "gate_kind": args.gate,
        "gate_on_features": args.gate_features,
        "gate_dropout": args.gate_dropout,
    }
    schedule = {
        "pretrain_strong_epochs": args.pretrain,
        "pretrain_weak_epochs": args.pretrain_weak,
        "pretrain_patience": args.pretrain_patience or None,
        "turn_patience": args.turn_patience or None,
        "restore_best": True,
        "gate_holdout": args.gate_holdout,
    }
    weak = NodeMLP(f, q, **common)
    if method.startswith("mowst-star-"):
        model = Mowst(weak, strong, num_features=f, num_classes=q, variant="mowst_star", **gate)  # type: ignore[arg-type]
        return MowstStarTask(model, **schedule, **opt)
    model = Mowst(weak, strong, num_features=f, num_classes=q, **gate)  # type: ignore[arg-type]
    return MowstTask(
        model,
        weak_turn_epochs=args.turn,
        strong_turn_epochs=args.turn,
        outer_patience=args.outer_patience or None,
        eval_mode="sample",
        **schedule,
        **opt,
    )


def step_closures(task: NodeClassificationTask, data: Data) -> dict[str, Callable[[], None]]:
    """One full-batch training step of the model alone (no Lightning) per kind of step, on a copy of the model.

    Baselines: ``"step"`` (forward, cross-entropy, backward, Adam step). Mowst: ``"weak_step"`` and
    ``"strong_step"``, the steps of a weak and a strong turn as :class:`MowstTask` runs them (the frozen side
    computed once per turn and reused, here once when the closure is built); Mowst*: ``"step"``, a joint step.
    """
    model = copy.deepcopy(task.model)
    mask, y = data.train_mask, data.y

    def closure(params: list[torch.nn.Parameter], loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        opt = torch.optim.Adam(params, lr=1e-3)

        def step() -> None:
            opt.zero_grad()
            loss_fn().backward()
            opt.step()
            if data.x.is_cuda:
                torch.cuda.synchronize()

        return step

    model.train()
    if not isinstance(model, Mowst):
        loss = lambda: F.cross_entropy(model(data.x, data.edge_index)[mask], y[mask])  # noqa: E731
        return {"step": closure(list(model.parameters()), loss)}
    if model.variant == "mowst_star":
        loss = lambda: model.loss(model(data.x, data.edge_index), y, mask)  # noqa: E731
        return {"step": closure(list(model.parameters()), loss)}
    steps = {}
    for side, frozen in (("weak", "strong"), ("strong", "weak")):
        parts = (model.strong,) if frozen == "strong" else (model.weak, model.gate)
        for part in parts:
            part.eval()
        with torch.no_grad():
            cache = model(data.x, data.edge_index, frozen=frozen)
        for part in parts:
            part.train()
        params = model.weak_parameters() + model.gate_parameters() if side == "weak" else model.strong_parameters()

        def loss(
            frozen: str = frozen, cache: MowstOutput = cache, parts: tuple[torch.nn.Module, ...] = parts
        ) -> Tensor:
            for part in parts:  # the frozen side of the turn runs in eval()
                part.eval()
            out = model(data.x, data.edge_index, frozen=frozen, reuse=cache)  # type: ignore[arg-type]
            for part in parts:
                part.train()
            return model.loss(out, y, mask)

        steps[f"{side}_step"] = closure(params, loss)
    return steps


def _median_ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times)


def step_times(task: NodeClassificationTask, data: Data, reps: int) -> dict[str, float]:
    """Median milliseconds of each of :func:`step_closures`' steps (after two warm-up steps).

    For Mowst, ``step_ms`` is the mean of ``weak_step_ms`` and ``strong_step_ms`` (turns of equal length).
    """
    times: dict[str, list[float]] = {}
    for name, step in step_closures(task, data).items():
        for i in range(reps + 2):
            start = time.perf_counter()
            step()
            if i >= 2:
                times.setdefault(name, []).append(time.perf_counter() - start)
    out = {f"{name}_ms": _median_ms(t) for name, t in times.items()}
    if "weak_step_ms" in out:
        out["step_ms"] = (out["weak_step_ms"] + out["strong_step_ms"]) / 2
    return out


def interleaved_step_times(dataset: str, methods: Sequence[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Step times of several methods on one graph, taken round-robin so that machine load hits all alike.

    Returns, per method, ``step_ms`` (median; Mowst: mean of its weak and strong turn steps) and, for
    ``mowst-<conv>``/``mowst-star-<conv>``, ``step_ratio``: the median over rounds of its step time over the
    step time of ``<conv>`` alone in the same round (the cost of Mowst relative to its strong expert).
    """
    dm = parse_dataset(dataset, 0, args.data_root)
    data = dm.data.to("cuda" if args.accelerator == "gpu" else "cpu")
    needed = list(dict.fromkeys([*methods, *(m.removeprefix("mowst-star-").removeprefix("mowst-") for m in methods)]))
    needed = [m for m in needed if m in METHODS]
    closures = {m: step_closures(build_task(m, dm, args).to(data.x.device), data) for m in needed}
    rounds: list[dict[str, float]] = []
    for i in range(args.step_reps + 2):
        row = {}
        for method, steps in closures.items():
            parts = []
            for step in steps.values():
                start = time.perf_counter()
                step()
                parts.append(time.perf_counter() - start)
            row[method] = sum(parts) / len(parts)
        if i >= 2:
            rounds.append(row)
    result: dict[str, dict[str, Any]] = {}
    for method in methods:
        times = [r[method] for r in rounds]
        entry: dict[str, Any] = {"step_ms": _median_ms(times)}
        base = method.removeprefix("mowst-star-").removeprefix("mowst-")
        if base != method:
            entry["step_ratio"] = statistics.median(r[method] / r[base] for r in rounds)
        result[method] = entry
    return result


class _EpochTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times.append(time.perf_counter() - self._start)


def run_one(dataset: str, method: str, split: int, args: argparse.Namespace) -> dict[str, float]:
    """Train one (dataset, method, split) and return its metrics."""
    L.seed_everything(split, verbose=False)
    dm = parse_dataset(dataset, split, args.data_root)
    task = build_task(method, dm, args)
    mowst = isinstance(task, MowstTask)
    epochs = args.pretrain + args.pretrain_weak + 2 * args.rounds * args.turn if mowst else args.epochs
    timer = _EpochTimer()
    callbacks: list[Callback] = [timer]
    if not mowst and args.patience:
        callbacks.append(EarlyStopping(monitor="val/metric", mode="max", patience=args.patience))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = ModelCheckpoint(dirpath=tmp, monitor="val/metric", mode="max", save_weights_only=True)
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=args.accelerator,
            devices=1,
            logger=False,
            callbacks=[ckpt, *callbacks],
            enable_progress_bar=False,
            enable_model_summary=False,
            check_val_every_n_epoch=args.eval_every,
            num_sanity_val_steps=0,
        )
        trainer.fit(task, datamodule=dm)
        result = trainer.test(task, datamodule=dm, ckpt_path="best", verbose=False)[0]
    metrics = {
        dm.metric: 100.0 * result["test/metric"],
        "epoch_seconds": sum(timer.times) / max(len(timer.times), 1),
        "epochs": float(trainer.current_epoch),
    }
    data = dm.data.to(task.device)
    if args.step_reps:
        metrics.update(step_times(task, data, args.step_reps))
    if mowst:
        metrics["mean_confidence"] = result["test/mean_confidence"]
        metrics["weak_metric"] = 100.0 * result["test/weak_metric"]
        metrics["strong_metric"] = 100.0 * result["test/strong_metric"]
        model = task.mowst.eval()
        test = data.test_mask
        with torch.no_grad():
            out = model(data.x, data.edge_index)
            sel = MowstOutput(*(t[test] for t in out))
            metrics[f"expected_{dm.metric}"] = 100.0 * float(
                node_metric(Mowst.mixture_log_proba(sel).exp(), data.y[test], dm.metric)
            )
            gen = torch.Generator(device=data.x.device).manual_seed(split)
            sample = model.sample_predict(data.x, data.edge_index, generator=gen, lazy=True)
        right = sample.proba.argmax(-1) == data.y
        to_weak = sample.to_weak & test
        to_strong = ~sample.to_weak & test
        metrics["weak_share"] = float(to_weak.sum() / test.sum())
        metrics["gnn_work_saved"] = sample.gnn_work_saved
        if to_weak.any():
            metrics["weak_routed_acc"] = 100.0 * float(right[to_weak].float().mean())
        if to_strong.any():
            metrics["strong_routed_acc"] = 100.0 * float(right[to_strong].float().mean())
    return metrics


# Metrics where smaller is better; every other metric of the graph benchmarks (but ``*_ms`` timings) is a score.
LOWER_IS_BETTER = frozenset(
    {"epoch_seconds", "epochs", "step_ratio", "trainable_params", "adapt_seconds", "prompt_cos"}
)


def record_run(run: dict[str, Any], runs: list[dict[str, Any]], run_log: RunLog) -> None:
    """Print a finished run, keep it, and append it to the run log so an interrupted benchmark resumes."""
    print(json.dumps(run), flush=True)
    runs.append(run)
    run_log.append(run)


def summarise_runs(runs: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """Aggregate run records (``dataset, method, metrics, seconds``) into the DESIGN.md benchmark records.

    One record per (dataset, method, metric) (:func:`~domain_moe.utils.records.summarise`), false
    ``higher_is_better`` for :data:`LOWER_IS_BETTER` and ``*_ms`` timings, seconds summed over the runs that
    have the metric. Shared by the Mowst benchmark and the few-shot benchmark.
    """
    return summarise(runs, device, lower_is_better(LOWER_IS_BETTER, suffixes=("_ms",)), seconds="cell")


def _markdown(records: list[dict[str, Any]], methods: Sequence[str]) -> str:
    main = {(r["dataset"], r["method"]): r for r in records if r["metric"] in ("accuracy", "auroc")}
    datasets = sorted({d for d, _ in main}, key=lambda d: [r["dataset"] for r in records].index(d))
    lines = ["| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for d in datasets:
        cells = [f"{main[(d, m)]['mean']:.2f} ± {main[(d, m)]['std']:.2f}" if (d, m) in main else "—" for m in methods]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    columns = (
        "epochs",
        "step_ms",
        "mean_confidence",
        "weak_share",
        "weak_routed_acc",
        "strong_routed_acc",
        "gnn_work_saved",
    )
    by_cell = {(r["dataset"], r["method"], r["metric"]): r for r in records}
    if any(metric in columns for _, _, metric in by_cell):
        lines += ["", "| dataset | method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
        for d in datasets:
            for m in methods:
                cells = [by_cell.get((d, m, c)) for c in columns]
                if any(cells):
                    text = [f"{c['mean']:.3g} ± {c['std']:.2g}" if c else "—" for c in cells]
                    lines.append(f"| {d} | {m} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the records it wrote."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--datasets", default="csbm")
    p.add_argument("--methods", default="mlp,gcn,mowst-gcn,mowst-star-gcn")
    p.add_argument("--splits", type=int, default=3)
    p.add_argument("--out", default="graph_results.json")
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=200, help="baseline epochs (at most)")
    p.add_argument("--patience", type=int, default=10, help="baseline early stopping, validation checks (0: off)")
    p.add_argument("--pretrain", type=int, default=100, help="Mowst strong-expert pre-training epochs (at most)")
    p.add_argument("--pretrain-weak", type=int, default=0, help="Mowst weak-expert pre-training epochs (at most)")
    p.add_argument("--pretrain-patience", type=int, default=10, help="pre-training patience, checks (0: off)")
    p.add_argument("--turn", type=int, default=50, help="epochs per Mowst turn (at most)")
    p.add_argument("--turn-patience", type=int, default=5, help="turn / Mowst* patience, checks (0: off)")
    p.add_argument("--rounds", type=int, default=3, help="weak+strong rounds after pre-training (at most)")
    p.add_argument("--outer-patience", type=int, default=2, help="rounds without a new best before stopping")
    p.add_argument("--gate", choices=("mlp", "hyper"), default="mlp", help="Mowst gate form")
    p.add_argument("--gate-features", action="store_true", help="feed node features to the gate too")
    p.add_argument("--gate-dropout", type=float, default=0.0)
    p.add_argument("--gate-holdout", type=float, default=0.0, help="share of training nodes that fit only the gate")
    p.add_argument("--no-sparse", dest="sparse", action="store_false", help="message passing on edge_index")
    p.add_argument("--step-reps", type=int, default=10, help="timed model-only training steps (0: skip)")
    p.add_argument(
        "--timing",
        action="store_true",
        help="no training: time the methods' model-only steps round-robin on each graph (step_ms, step_ratio)",
    )
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-norm", action="store_true", help="BatchNorm in the experts (off: it hurts on Cora)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny full-batch graphs: 1 is fastest)")
    p.add_argument("--accelerator", "--trainer.accelerator", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}")
    datasets = split_datasets(args.datasets)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Lightning's per-run banners (GPU available, checkpoint restored...) would drown the progress lines.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    run_log = RunLog.beside(out)
    runs = run_log.load()
    done = run_log.done("dataset", "method", "split")
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"cpu ({platform.processor() or 'cpu'})"
    if args.timing:
        for dataset in datasets:
            if any((dataset, m, "timing") in done for m in methods):
                continue
            for method, metrics in interleaved_step_times(dataset, methods, args).items():
                run = {"dataset": dataset, "method": method, "split": "timing", "metrics": metrics, "seconds": 0.0}
                record_run(run, runs, run_log)
        datasets = []
    for dataset in datasets:
        for method in methods:
            for split in range(args.splits):
                if (dataset, method, split) in done:
                    continue
                start = time.perf_counter()
                metrics = run_one(dataset, method, split, args)
                run = {
                    "dataset": dataset,
                    "method": method,
                    "split": split,
                    "metrics": metrics,
                    "seconds": time.perf_counter() - start,
                }
                record_run(run, runs, run_log)
    records = summarise_runs(runs, device)
    out.write_text(json.dumps(records, indent=1))
    print(_markdown(records, methods))
    return records


if __name__ == "__main__":
    main()
