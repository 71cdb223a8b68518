"""Reproduce Mowst's claim: Mowst(*) vs its MLP and GNN experts over datasets x splits -> JSON + markdown.

``python -m domain_moe.graph.benchmark --datasets csbm,cora,texas --methods mlp,gcn,mowst-gcn --splits 3
--out results.json``

Datasets: the registered names of :data:`domain_moe.graph.data.DATASETS` (read from ``--data-root``), with
options after a colon (``cora:split=public`` keeps Planetoid's public split and varies only the seed),
``csbm[:homophily=0.7,informative_fraction=0.5,num_nodes=1000,...]`` (the generated contextual SBM) and
``npz:<path>`` (any heterophilous-graphs ``.npz`` file). Run ``i`` uses split ``i`` and seed ``i``.
Methods: ``mlp``, ``gcn``, ``sage``, ``gat``, ``gin``, ``mowst-<conv>``, ``mowst-star-<conv>``.

Records follow ``DESIGN.md``: one per (dataset, method, metric). Metrics: the test ``accuracy`` or ``auroc``
(checkpoint chosen on the validation metric), ``epoch_seconds`` (mean training-epoch wall time), and for
Mowst: ``mean_confidence`` (test nodes), ``weak_share`` (share routed to the weak expert in one seeded
sampled inference), ``gnn_work_saved`` (fraction of GNN node evaluations skipped by lazy inference),
``weak_metric``/``strong_metric`` (each expert alone on the test nodes). Finished runs are kept in
``<out>.runs.jsonl``, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from domain_moe.graph.data import DATASETS, ContextualSBMDataModule, GraphDataModule, NodeClassificationDataModule
from domain_moe.graph.models import GNN, Mowst, NodeMLP
from domain_moe.graph.tasks import MowstStarTask, MowstTask, NodeClassificationTask

__all__ = ["METHODS", "build_task", "main", "parse_dataset", "run_one", "split_datasets"]

CONVS = ("gcn", "sage", "gat", "gin")
METHODS = ("mlp", *CONVS, *(f"mowst-{c}" for c in CONVS), *(f"mowst-star-{c}" for c in CONVS))


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


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
    name, _, opts = spec.partition(":")
    options = {k: _value(v) for k, v in (o.split("=", 1) for o in opts.split(",") if o)}
    if name == "csbm":
        options.setdefault("num_splits", max(split + 1, 3))
        options.setdefault("seed", 0)
        return ContextualSBMDataModule(split=split, **options)
    if name.lower() not in DATASETS:
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
    if method in CONVS:
        return NodeClassificationTask(GNN(f, q, conv=method, **common), **opt)
    if method.startswith("mowst-star-") and method[11:] in CONVS:
        model = Mowst(num_features=f, num_classes=q, variant="mowst_star", conv=method[11:], **common)
        return MowstStarTask(model, pretrain_strong_epochs=args.pretrain, **opt)
    if method.startswith("mowst-") and method[6:] in CONVS:
        model = Mowst(num_features=f, num_classes=q, conv=method[6:], **common)
        return MowstTask(
            model, pretrain_strong_epochs=args.pretrain, weak_turn_epochs=args.turn, strong_turn_epochs=args.turn, **opt
        )
    raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")


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
    epochs = args.epochs if not isinstance(task, MowstTask) else args.pretrain + 4 * args.turn
    timer = _EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = ModelCheckpoint(dirpath=tmp, monitor="val/metric", mode="max", save_weights_only=True)
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator=args.accelerator,
            devices=1,
            logger=False,
            callbacks=[ckpt, timer],
            enable_progress_bar=False,
            enable_model_summary=False,
            check_val_every_n_epoch=args.eval_every,
            num_sanity_val_steps=0,
        )
        trainer.fit(task, datamodule=dm)
        result = trainer.test(task, datamodule=dm, ckpt_path="best", verbose=False)[0]
    metrics = {dm.metric: 100.0 * result["test/metric"], "epoch_seconds": sum(timer.times) / max(len(timer.times), 1)}
    if isinstance(task, MowstTask):
        metrics["mean_confidence"] = result["test/mean_confidence"]
        metrics["weak_metric"] = 100.0 * result["test/weak_metric"]
        metrics["strong_metric"] = 100.0 * result["test/strong_metric"]
        data = dm.data.to(task.device)
        model = task.mowst.eval()
        with torch.no_grad():
            gen = torch.Generator(device=data.x.device).manual_seed(split)
            sample = model.sample_predict(data.x, data.edge_index, generator=gen, lazy=True)
        metrics["weak_share"] = float(sample.to_weak.float().mean())
        metrics["gnn_work_saved"] = sample.gnn_work_saved
    return metrics


def _summarise(runs: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for run in runs:
        for metric, value in run["metrics"].items():
            cells.setdefault((run["dataset"], run["method"], metric), []).append((value, run["seconds"]))
    records = []
    for (dataset, method, metric), pairs in cells.items():
        values = [v for v, _ in pairs]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))
        records.append(
            {
                "dataset": dataset,
                "method": method,
                "metric": metric,
                "mean": mean,
                "std": std,
                "n": len(values),
                "values": values,
                "higher_is_better": metric not in ("epoch_seconds",),
                "device": device,
                "seconds": sum(s for _, s in pairs),
            }
        )
    return records


def _markdown(records: list[dict[str, Any]], methods: Sequence[str]) -> str:
    main = {(r["dataset"], r["method"]): r for r in records if r["metric"] in ("accuracy", "auroc")}
    datasets = sorted({d for d, _ in main}, key=lambda d: [r["dataset"] for r in records].index(d))
    lines = ["| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for d in datasets:
        cells = [f"{main[(d, m)]['mean']:.2f} ± {main[(d, m)]['std']:.2f}" if (d, m) in main else "—" for m in methods]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    extra = [r for r in records if r["metric"] in ("mean_confidence", "weak_share", "gnn_work_saved", "epoch_seconds")]
    if extra:
        lines += ["", "| dataset | method | metric | mean ± std |", "|---|---|---|---|"]
        lines += [
            f"| {r['dataset']} | {r['method']} | {r['metric']} | {r['mean']:.4f} ± {r['std']:.4f} |" for r in extra
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the records it wrote."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--datasets", default="csbm")
    p.add_argument("--methods", default="mlp,gcn,mowst-gcn,mowst-star-gcn")
    p.add_argument("--splits", type=int, default=3)
    p.add_argument("--out", default="graph_results.json")
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=200, help="baseline epochs")
    p.add_argument("--pretrain", type=int, default=100, help="Mowst strong-expert pre-training epochs")
    p.add_argument("--turn", type=int, default=50, help="epochs per Mowst turn (4 turns after pre-training)")
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
    runs_path = out.with_name(out.name + ".runs.jsonl")
    runs = [json.loads(line) for line in runs_path.read_text().splitlines()] if runs_path.exists() else []
    done = {(r["dataset"], r["method"], r["split"]) for r in runs}
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"cpu ({platform.processor() or 'cpu'})"
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
                print(json.dumps(run), flush=True)
                runs.append(run)
                with runs_path.open("a") as fh:
                    fh.write(json.dumps(run) + "\n")
    records = _summarise(runs, device)
    out.write_text(json.dumps(records, indent=1))
    print(_markdown(records, methods))
    return records


if __name__ == "__main__":
    main()
