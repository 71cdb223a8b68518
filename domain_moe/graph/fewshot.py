"""Few-shot node classification: seeded k-shot splits, their DataModule, and GMoPE's reproduction benchmark.

``python -m domain_moe.graph.fewshot --targets cora,citeseer,wisconsin --shots 1,3,5 --seeds 3 --out fewshot.json``

For each target graph, GMoPE-style encoders are pre-trained once (contrastive ego-net views, §4.3 of
``specs/graph.md``) on the *other* graphs of ``--sources`` and cached under ``<out dir>/fewshot_ckpt``; then each
method adapts to ``k`` labelled nodes per class (seed ``s`` draws the shots) and is scored on every node outside the
training and validation shots. Methods (Wang et al., GMoPE, arXiv 2511.03251; ablations of ``specs/graph.md``):

* ``gnn-scratch``: a supervised 2-layer GCN on the aligned features, no pre-training;
* ``pretrain-finetune``: the pre-trained 4-expert GMoPE, every parameter fine-tuned;
* ``pretrain-gpf``: a pre-trained single-GNN backbone with one GPF prompt; prompt and head tuned;
* ``gmope``: the pre-trained 4-expert GMoPE, prompt-only tuning (prompts, router, head);
* ``gmope-no-ortho``: as ``gmope``, pre-trained and tuned without the orthogonality loss;
* ``gmope-random-router``: the ``gmope`` encoder with a random router at adaptation and test time;
* ``gmope-frozen-router``: as ``gmope`` with the pre-trained router frozen too (only prompts and head tune).

Records follow ``DESIGN.md`` (one per dataset, method, metric; ``dataset`` is ``<target>-<k>shot``): ``accuracy``,
``trainable_params``, ``adapt_seconds`` (wall time of the adaptation loop), and for the GMoPE variants
``prompt_cos`` (mean absolute cosine between prompts after tuning) and ``load_entropy`` (entropy of the mean gate over
the test graph divided by ``log E``). Finished runs are kept in ``<out>.runs.jsonl``, so the benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from domain_moe.graph.alignment import svd_align
from domain_moe.graph.benchmark import record_run, split_datasets, summarise_runs
from domain_moe.graph.data import DATASETS, GraphDataModule
from domain_moe.graph.gmope_tasks import GMoPEPretrainTask, load_backbone, load_entropy
from domain_moe.graph.models.gmope import GMoPE
from domain_moe.graph.models.gnn import GNN
from domain_moe.graph.pretraining import EgoNetPretrainDataModule, load_graph
from domain_moe.utils.records import RunLog

__all__ = ["METHODS", "FewShotDataModule", "few_shot_split", "main", "pretrain"]

METHODS = (
    "gnn-scratch",
    "pretrain-finetune",
    "pretrain-gpf",
    "gmope",
    "gmope-no-ortho",
    "gmope-random-router",
    "gmope-frozen-router",
)
#: Pre-trained encoder each method starts from (``None``: trained from scratch).
_ENCODER = {
    "gnn-scratch": None,
    "pretrain-finetune": "gmope",
    "pretrain-gpf": "single",
    "gmope": "gmope",
    "gmope-no-ortho": "no-ortho",
    "gmope-random-router": "gmope",
    "gmope-frozen-router": "gmope",
}


def few_shot_split(y: Tensor, shots: int, seed: int = 0, val_shots: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded k-shot masks: ``shots`` training and ``val_shots`` validation nodes per class, the rest for test.

    A class with fewer nodes gives what it has, training first (at least one node is left for test when the
    class has two or more).

    Args:
        y: node labels.
        shots: training nodes per class ``k``.
        seed: seed of the draw (different seeds, different shot samples).
        val_shots: validation nodes per class (default ``k``; 0 for none).

    Returns:
        ``(train_mask, val_mask, test_mask)``, disjoint bool masks covering every node.

    Shapes:
        y: ``[N]`` → three ``[N]`` masks.

    Example:
        >>> train, val, test = few_shot_split(torch.tensor([0, 0, 0, 1, 1, 1, 1]), shots=1, seed=0)
        >>> int(train.sum()), int(val.sum()), int(test.sum())
        (2, 2, 3)
    """
    if y.dim() != 1:
        raise ValueError(f"few_shot_split: y must be [N], got shape {tuple(y.shape)}")
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"few_shot_split: shots must be an int >= 1, got {shots!r}")
    val_shots = shots if val_shots is None else val_shots
    if isinstance(val_shots, bool) or not isinstance(val_shots, int) or val_shots < 0:
        raise ValueError(f"few_shot_split: val_shots must be an int >= 0, got {val_shots!r}")
    gen = torch.Generator().manual_seed(seed)
    y = y.cpu()
    train = torch.zeros(y.numel(), dtype=torch.bool)
    val = torch.zeros_like(train)
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_train = min(shots, idx.numel() - 1) if idx.numel() > 1 else idx.numel()
        n_val = max(min(val_shots, idx.numel() - n_train - 1), 0)
        train[idx[:n_train]] = True
        val[idx[n_train : n_train + n_val]] = True
    return train, val, ~(train | val)


class FewShotDataModule(GraphDataModule):
    """One graph with a seeded k-shot split (:func:`few_shot_split`) and optionally SVD-aligned features.

    Args:
        graph: :func:`~domain_moe.graph.pretraining.load_graph` name: a registered dataset, ``npz:<path>`` or
            ``csbm[:options]``.
        root: folder holding the dataset folders (default ``$DOMAIN_MOE_DATA/graph``).
        shots: training nodes per class.
        seed: seed of the shot draw.
        val_shots: validation nodes per class (default ``shots``).
        num_features: SVD-aligned width (:func:`~domain_moe.graph.alignment.svd_align`), or ``None`` for the raw
            features.
        normalize_features: row-normalise real datasets' features before alignment.
        metric: ``"auto"``, ``"accuracy"`` or ``"auroc"``.

    Example:
        >>> dm = FewShotDataModule("csbm:num_nodes=100,num_classes=4", shots=2, num_features=16)
        >>> dm.num_features, dm.num_classes, int(dm.data.train_mask.sum())
        (16, 4, 8)
    """

    def __init__(
        self,
        graph: str = "csbm",
        root: str | None = None,
        shots: int = 5,
        seed: int = 0,
        val_shots: int | None = None,
        num_features: int | None = 64,
        normalize_features: bool = True,
        metric: str = "auto",
    ) -> None:
        super().__init__(split=0, metric=metric)  # type: ignore[arg-type]
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
            raise ValueError(f"FewShotDataModule: shots must be an int >= 1, got {shots!r}")
        if num_features is not None and (
            isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1
        ):
            raise ValueError(f"FewShotDataModule: num_features must be None or an int >= 1, got {num_features!r}")
        self.graph = graph
        self.root = root
        self.shots = shots
        self.seed = seed
        self.val_shots = val_shots
        self.aligned_features = num_features
        self.normalize_features = normalize_features

    @property
    def num_features(self) -> int:
        """Feature width after alignment."""
        return self.aligned_features if self.aligned_features is not None else super().num_features

    def load(self) -> Data:
        """Read the graph, align its features and draw the shots."""
        graph = load_graph(self.graph, self.root, self.normalize_features)
        x = graph.x if self.aligned_features is None else svd_align(graph.x, self.aligned_features)
        train, val, test = few_shot_split(graph.y, self.shots, self.seed, self.val_shots)
        return Data(x=x, edge_index=graph.edge_index, y=graph.y, train_mask=train, val_mask=val, test_mask=test)


# ---------------------------------------------------------------------------------------------- benchmark


def _encoder_config(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    experts = 1 if kind == "single" else args.experts
    orth = 0.0 if kind in ("single", "no-ortho") else args.orth_weight
    return {
        "num_features": args.num_features,
        "num_experts": experts,
        "hidden_channels": args.hidden,
        "num_layers": args.layers,
        "orth_weight": orth,
        "balance_weight": 0.0,
    }


def pretrain(
    kind: str, dm: EgoNetPretrainDataModule, path: Path, args: argparse.Namespace
) -> tuple[float, dict[str, float]]:
    """Pre-train (or reuse) the encoder ``kind`` on ``dm``'s ego-nets; returns seconds and final diagnostics."""
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return float(meta["seconds"]), meta["diagnostics"]
    L.seed_everything(args.pretrain_seed, verbose=False)
    model = GMoPE(num_classes=1, **_encoder_config(kind, args))
    task = GMoPEPretrainTask(
        model, optimizer=lambda p: torch.optim.Adam(p, lr=args.pretrain_lr), readout=getattr(args, "readout", "center")
    )
    trainer = L.Trainer(
        max_epochs=args.pretrain_epochs,
        accelerator=args.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=max(args.pretrain_epochs, 1),
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    seconds = time.perf_counter() - start
    diagnostics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    meta_path.write_text(json.dumps({"seconds": seconds, "diagnostics": diagnostics, "kind": kind}))
    return seconds, diagnostics


def _build(method: str, num_classes: int, ckpt: Path | None, args: argparse.Namespace) -> tuple[nn.Module, str]:
    if method == "gnn-scratch":
        return GNN(args.num_features, num_classes, args.hidden, args.layers, "gcn", dropout=0.5, norm=False), "full"
    kind = _ENCODER[method]
    assert kind is not None and ckpt is not None
    config = _encoder_config(kind, args)
    if method == "gmope-random-router":
        config["router"] = "random"
    model = GMoPE(num_classes=num_classes, **config)
    load_backbone(model, ckpt)
    tune = {"pretrain-finetune": "full", "gmope-frozen-router": "prompt_head"}.get(method, "prompt")
    return model, tune


def adapt(model: nn.Module, data: Data, tune: str, args: argparse.Namespace) -> dict[str, float]:
    """Train ``model`` on ``data.train_mask`` for ``args.tune_epochs`` full-batch steps and score the test nodes."""
    if isinstance(model, GMoPE):
        trainable = model.freeze(tune)  # type: ignore[arg-type]
        params = model.tunable_parameters(tune)  # type: ignore[arg-type]
    else:
        params = list(model.parameters())
        trainable = sum(p.numel() for p in params)
    lr = args.prompt_lr if tune.startswith("prompt") else args.lr
    opt = torch.optim.Adam(params, lr=lr, weight_decay=args.weight_decay)
    x, ei, y, mask = data.x, data.edge_index, data.y, data.train_mask
    start = time.perf_counter()
    for _ in range(args.tune_epochs):
        model.train()
        if isinstance(model, GMoPE) and tune != "full":
            model.backbone.eval()
        opt.zero_grad()
        loss = F.cross_entropy(model(x, ei)[mask], y[mask])
        loss.backward()
        opt.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = model(x, ei).argmax(-1)
    test = data.test_mask
    out = {
        "accuracy": 100.0 * float((pred[test] == y[test]).float().mean()),
        "trainable_params": float(trainable),
        "adapt_seconds": seconds,
    }
    if isinstance(model, GMoPE) and model.num_experts > 1:
        out["prompt_cos"] = float(model.prompts.mean_abs_cosine())
        load = model.expert_load()
        if load is not None:
            out["load_entropy"] = float(load_entropy(load))
    return out


def markdown(records: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """Accuracy table (mean ± std), then trainable parameters, adaptation time and the GMoPE diagnostics."""
    by = {(r["dataset"], r["method"], r["metric"]): r for r in records}
    datasets = list(dict.fromkeys(r["dataset"] for r in records))

    def table(metric: str, fmt: str) -> list[str]:
        rows = ["| dataset | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for d in datasets:
            cells = []
            for m in methods:
                r = by.get((d, m, metric))
                cells.append("—" if r is None else f"{r['mean']:{fmt}} ± {r['std']:{fmt}}")
            rows.append(f"| {d} | " + " | ".join(cells) + " |")
        return rows

    lines = ["Test accuracy (%)", "", *table("accuracy", ".2f")]
    for metric, title, fmt in (
        ("trainable_params", "Trainable parameters", ".0f"),
        ("adapt_seconds", "Adaptation seconds", ".3f"),
        ("prompt_cos", "Prompt mean |cos| (lower = more diverse)", ".3f"),
        ("load_entropy", "Normalised entropy of the mean gate (1 = balanced)", ".3f"),
    ):
        if any(r["metric"] == metric for r in records):
            lines += ["", title, "", *table(metric, fmt)]
    return "\n".join(lines)


def _device(accelerator: str) -> str:
    if accelerator == "gpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s))"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the records it wrote."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--targets", default="cora,citeseer,wisconsin")
    p.add_argument("--sources", default=",".join(DATASETS), help="pre-training pool (each target is left out)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--shots", default="1,3,5")
    p.add_argument("--seeds", type=int, default=3, help="shot samples per (target, k)")
    p.add_argument("--out", default="fewshot_results.json")
    p.add_argument("--data-root", default=None)
    p.add_argument("--num-features", type=int, default=64, help="SVD-aligned width")
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--orth-weight", type=float, default=0.1)
    p.add_argument("--egos-per-graph", type=int, default=200)
    p.add_argument("--max-nodes", type=int, default=32, help="node cap per ego-net")
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--readout", choices=("center", "mean"), default="center", help="ego-net read-out in pre-training")
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--pretrain-seed", type=int, default=0)
    p.add_argument("--tune-epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01, help="full fine-tuning / scratch learning rate")
    p.add_argument("--prompt-lr", type=float, default=0.01, help="prompt-tuning learning rate")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--accelerator", "--trainer.accelerator", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}")
    shots = [int(s) for s in args.shots.split(",") if s.strip()]
    targets = split_datasets(args.targets)
    sources = split_datasets(args.sources)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    run_log = RunLog.beside(out)
    runs = run_log.load()
    done = run_log.done("dataset", "method", "seed")
    device_name = _device(args.accelerator)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    ckpt_dir = out.parent / "fewshot_ckpt"
    for target in targets:
        pool = [s for s in sources if s != target]
        todo = [
            (k, m, s)
            for k in shots
            for m in methods
            for s in range(args.seeds)
            if (f"{target}-{k}shot", m, s) not in done
        ]
        if not todo:
            continue
        kinds = sorted({_ENCODER[m] for _, m, _ in todo} - {None})  # type: ignore[type-var]
        ckpts: dict[str, Path] = {}
        dm: EgoNetPretrainDataModule | None = None
        for kind in kinds:
            path = ckpt_dir / f"{target}-{kind}-F{args.num_features}-E{args.pretrain_epochs}.pt"
            if not (path.is_file() and path.with_suffix(".json").is_file()):
                if dm is None:
                    dm = EgoNetPretrainDataModule(
                        pool,
                        root=args.data_root,
                        num_features=args.num_features,
                        egos_per_graph=args.egos_per_graph,
                        max_nodes=args.max_nodes,
                        seed=args.pretrain_seed,
                    )
                    dm.setup()
            seconds, diag = pretrain(kind, dm, path, args)  # type: ignore[arg-type]
            print(
                json.dumps({"target": target, "pretrain": kind, "sources": pool, "seconds": seconds, **diag}),
                flush=True,
            )
            ckpts[kind] = path
        graph = load_graph(target, args.data_root)
        x = svd_align(graph.x, args.num_features)
        num_classes = int(graph.y.max()) + 1
        for k, method, seed in todo:
            train, val, test = few_shot_split(graph.y, k, seed)
            data = Data(x=x, edge_index=graph.edge_index, y=graph.y, train_mask=train, val_mask=val, test_mask=test).to(
                device
            )
            torch.manual_seed(seed)
            kind = _ENCODER[method]
            start = time.perf_counter()
            model, tune = _build(method, num_classes, None if kind is None else ckpts[kind], args)
            metrics = adapt(model.to(device), data, tune, args)
            run = {
                "dataset": f"{target}-{k}shot",
                "method": method,
                "seed": seed,
                "metrics": metrics,
                "seconds": time.perf_counter() - start,
            }
            record_run(run, runs, run_log)
    records = summarise_runs(runs, device_name)
    out.write_text(json.dumps(records, indent=1))
    print(markdown(records, methods))
    return records


if __name__ == "__main__":
    main()
