"""Reproduce Knowledge Concentration's claim: specialists -> one student vs a generalist, with ablations.

``python -m domain_moe.distill.benchmark --dataset fashion-mnist fashion-pairs --methods generalist specialists
concentration concentration-no-selfpaced concentration-no-scl --seeds 3 --out distill_results.json``

Datasets (see :class:`~domain_moe.distill.data.VerticalDataModule`): ``fashion-mnist`` (10 classes in the
verticals tops / footwear / other), ``idx:<dir>`` (any MNIST-format directory; ``--verticals`` gives the
grouping, e.g. ``0,2,4,6/5,7,9/1,3,8``), ``fashion-pairs`` / ``pairs:<dir>`` (two items side by side, 100
classes, verticals by the left item; ``--pair-grouping pair`` gives 9). Run ``i`` uses seed ``i``.

Methods: ``generalist`` (the student's architecture trained on hard labels with the paper's sigmoid loss),
``generalist-ce`` (FC head, softmax cross-entropy), ``specialists`` (one teacher per vertical, the sample's true
vertical given: an oracle upper bound), ``concentration`` (KD from the frozen specialists into an FC-SC head with
self-paced vertical scales), ``concentration-no-selfpaced`` (no normalisation or scales),
``concentration-no-scl`` (an FC-FC head with about the FC-SC head's weight count). Soft targets are cached once
per (dataset, seed); with ``--cross-fit`` (default) they come from teachers trained on the other half of the
vertical's training samples, so they carry the teacher's uncertainty instead of memorised one-hot outputs;
such a teacher trains ``--teacher-epochs`` x 2 epochs (``--cross-fit-epochs``), as many optimizer steps as a
full-data teacher.
``--loss bce`` (default) uses the paper's sigmoid losses everywhere; ``--loss ce`` trains softmax specialists and
distils with the softmax variant of the loss (on 100 classes the small sigmoid student did not train within a
CPU budget). ConvNets pool to a 1x2 grid on pair canvases (``--pool``), so left and right stay apart.

Records follow ``DESIGN.md``: one per (dataset, method, metric). Metrics: test ``acc`` (argmax over all
classes), per vertical ``acc/<name>`` and ``acc_within/<name>`` (argmax inside the vertical), ``params`` (all
parameters used at inference), ``head_weights`` and ``seconds`` (training wall time). Finished runs are kept in
``<out>.runs.jsonl`` and trained specialists in ``<out>.teachers/``, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from domain_moe.distill.data import VerticalDataModule, _as_batch, _Tensors
from domain_moe.distill.models import ConcentrationStudent, ConvNet, TeacherEnsemble, TimmNet, head_weight_count
from domain_moe.distill.tasks import ConcentrationTask, SpecialistTask
from domain_moe.training.task import MoETask
from domain_moe.utils.records import RunLog, lower_is_better, summarise

__all__ = ["METHODS", "main", "matched_fc_width", "parse_verticals", "run_one", "teacher_epochs"]

METHODS = (
    "generalist",
    "generalist-ce",
    "specialists",
    "concentration",
    "concentration-no-selfpaced",
    "concentration-no-scl",
)
DEFAULT_METHODS = ("generalist", "specialists", "concentration", "concentration-no-selfpaced", "concentration-no-scl")


def parse_verticals(text: str | None) -> list[list[int]] | None:
    """``"0,2,4,6/5,7,9/1,3,8"`` -> ``[[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]]``.

    Example:
        >>> parse_verticals("0,2/1")
        [[0, 2], [1]]
    """
    if not text:
        return None
    return [[int(c) for c in group.split(",") if c.strip()] for group in text.split("/")]


def matched_fc_width(in_features: int, shared_width: int, block_width: int, verticals: int, classes: int) -> int:
    """Width ``s2'`` of an FC(s1)-FC(s2') head whose weight count is closest to FC(s1)-SC(s2)'s.

    Example:
        >>> matched_fc_width(32, 64, 16, 3, 10)
        44
    """
    target = head_weight_count("fc_sc", in_features, shared_width, block_width, verticals, classes)
    return max(1, round((target - in_features * shared_width) / (shared_width + classes)))


def _data(dataset: str, seed: int, args: argparse.Namespace, **kwargs: Any) -> VerticalDataModule:
    dm = VerticalDataModule(
        dataset,
        verticals=parse_verticals(args.verticals),
        root=args.data_root,
        pair_grouping=args.pair_grouping,
        num_train=args.num_train,
        num_test=args.num_test,
        batch_size=args.batch_size,
        seed=seed,
        **kwargs,
    )
    dm.setup()
    return dm


def _teacher(args: argparse.Namespace, num_classes: int) -> nn.Module:
    if args.teacher.startswith("convnet"):
        return ConvNet(1, num_classes, widths=tuple(args.teacher_widths), pool=tuple(args.pool))
    return TimmNet(args.teacher, num_classes=num_classes, in_chans=1)


def _student(args: argparse.Namespace, verticals: list[list[int]], head: str, pace: str) -> ConcentrationStudent:
    backbone = ConvNet(1, 0, widths=tuple(args.student_widths), pool=tuple(args.pool))
    block = args.block_width
    if head == "fc":
        n = sum(len(v) for v in verticals)
        block = matched_fc_width(backbone.num_features, args.shared_width, args.block_width, len(verticals), n)
    return ConcentrationStudent(
        backbone,
        verticals,
        head=head,
        shared_width=args.shared_width,
        block_width=block,
        pace=pace,
        pace_init=args.pace_init,
    )


def _scheduler(optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=max(total_steps, 1)
    )


def _fit(
    task_cls: type[MoETask],
    model: nn.Module,
    loader: DataLoader,
    epochs: int,
    args: argparse.Namespace,
    **task_kwargs: Any,
) -> MoETask:
    steps = epochs * len(loader)
    task = task_cls(
        model,
        optimizer=partial(torch.optim.AdamW, lr=args.lr, weight_decay=args.weight_decay),
        scheduler=partial(_scheduler, total_steps=steps),
        scheduler_interval="step",
        **task_kwargs,
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        deterministic=True,
    )
    trainer.fit(task, train_dataloaders=loader)
    return task


def _loader(x: Tensor, *rest: Tensor, batch_size: int, seed: int, shuffle: bool = True) -> DataLoader:
    """Float images in [0, 1] (the DataModule's batch hook does not run for a bare loader)."""
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    data = _Tensors(x.float().div(255.0), *rest)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=_as_batch)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


class _Specialists:
    """Trained teachers of one (dataset, seed): full-data ones for the oracle, cross-fitted ones for targets."""

    def __init__(self, dataset: str, seed: int, dm: VerticalDataModule, args: argparse.Namespace) -> None:
        self.dataset, self.seed, self.dm, self.args = dataset, seed, dm, args
        self.cache = Path(args.out).with_name(Path(args.out).name + ".teachers") / _slug(dataset) / f"seed{seed}"
        self.seconds = 0.0

    def teacher(self, v: int, part: int | None) -> nn.Module:
        """Teacher of vertical ``v`` trained on fold ``part`` of its samples (``None``: all of them)."""
        args, dm = self.args, self.dm
        n_v = len(dm.verticals[v])
        name = f"v{v}" if part is None else f"v{v}-part{part}"
        path = self.cache / f"{name}.pt"
        model = _teacher(args, n_v)
        if path.exists():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        L.seed_everything(self.seed * 100 + v * 10 + (0 if part is None else part + 1), verbose=False)
        x, y = dm.split("train")
        keep = dm.class_to_vertical[y] == v
        if part is not None:
            keep &= dm.train_fold == part
        local = torch.full((dm.num_classes,), -1, dtype=torch.long)
        local[dm.verticals[v]] = torch.arange(n_v)
        loader = _loader(x[keep], local[y[keep]], batch_size=args.batch_size, seed=self.seed)
        start = time.perf_counter()
        _fit(SpecialistTask, model, loader, teacher_epochs(args, dm.train_parts, part), args, loss=args.loss)
        self.seconds += time.perf_counter() - start
        self.cache.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
        return model.eval()

    def ensemble(self) -> TeacherEnsemble:
        teachers = [self.teacher(v, None) for v in range(len(self.dm.verticals))]
        return TeacherEnsemble(
            teachers, self.dm.verticals, temperature=self.args.temperature, activation=_activation(self.args)
        )

    def soft_targets(self) -> Tensor:
        """Teacher probabilities ``[N_train, N]`` for every training sample (cross-fitted with ``--cross-fit``)."""
        dm, args = self.dm, self.args
        x, y = dm.split("train")
        vertical = dm.class_to_vertical[y]
        if not args.cross_fit:
            return _predict(self.ensemble(), x, vertical)
        out = torch.zeros(x.shape[0], dm.num_classes)
        for part in range(dm.train_parts):
            teachers = [self.teacher(v, part) for v in range(len(dm.verticals))]
            ens = TeacherEnsemble(teachers, dm.verticals, temperature=args.temperature, activation=_activation(args))
            other = dm.train_fold != part
            out[other] += _predict(ens, x[other], vertical[other]) / (dm.train_parts - 1)
        return out


def teacher_epochs(args: argparse.Namespace, train_parts: int, part: int | None) -> int:
    """Epochs of a teacher: ``--teacher-epochs`` on all samples, ``--cross-fit-epochs`` on one fold.

    A fold holds ``1 / train_parts`` of the samples, so by default a cross-fitted teacher trains
    ``train_parts`` times as many epochs: the same number of optimizer steps as the full-data teacher (with
    the same epochs they would be step-starved and far weaker than the specialists they stand in for).

    Example:
        >>> teacher_epochs(argparse.Namespace(teacher_epochs=3, cross_fit_epochs=None), 2, 0)
        6
    """
    if part is None:
        return args.teacher_epochs
    fixed = getattr(args, "cross_fit_epochs", None)
    return int(fixed) if fixed is not None else args.teacher_epochs * train_parts


def _activation(args: argparse.Namespace) -> str:
    return "sigmoid" if args.loss == "bce" else "softmax"


def _predict(ens: TeacherEnsemble, x: Tensor, vertical: Tensor, batch: int = 1024) -> Tensor:
    return torch.cat([ens(x[i : i + batch].float() / 255.0, vertical[i : i + batch]) for i in range(0, len(x), batch)])


def _evaluate(model: nn.Module, dm: VerticalDataModule, oracle: TeacherEnsemble | None = None) -> dict[str, float]:
    """Test accuracy overall and per vertical (argmax over all classes and inside the vertical)."""
    x, y = dm.split("test")
    c2v = dm.class_to_vertical
    logits = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), 1024):
            xb = x[i : i + 1024].float() / 255.0
            logits.append(oracle(xb, c2v[y[i : i + 1024]]) if oracle is not None else model(xb))
    out = torch.cat(logits)
    pred = out.argmax(1)
    same = c2v.unsqueeze(0) == c2v[y].unsqueeze(1)
    within = out.masked_fill(~same, float("-inf")).argmax(1)
    metrics = {"acc": 100.0 * float((pred == y).float().mean())}
    for v, name in enumerate(dm.vertical_names):
        mask = c2v[y] == v
        metrics[f"acc/{name}"] = 100.0 * float((pred[mask] == y[mask]).float().mean())
        metrics[f"acc_within/{name}"] = 100.0 * float((within[mask] == y[mask]).float().mean())
    return metrics


def run_one(dataset: str, method: str, seed: int, args: argparse.Namespace, cache: dict[Any, Any]) -> dict[str, float]:
    """Train and evaluate one (dataset, method, seed); ``cache`` shares data and teachers between methods."""
    key = (dataset, seed)
    if key not in cache:
        dm = _data(dataset, seed, args)
        cache.clear()  # one (dataset, seed) at a time keeps memory flat
        cache[key] = {"dm": dm, "specialists": _Specialists(dataset, seed, dm, args)}
    dm: VerticalDataModule = cache[key]["dm"]
    specialists: _Specialists = cache[key]["specialists"]
    if method == "specialists":
        before = specialists.seconds
        ens = specialists.ensemble()
        metrics = _evaluate(ens, dm, oracle=ens)
        metrics["params"] = float(sum(p.numel() for p in ens.parameters()))
        metrics["seconds"] = specialists.seconds - before
        return metrics
    head = "fc" if method in ("concentration-no-scl", "generalist-ce") else args.head
    pace = "none" if method in ("concentration-no-selfpaced", "generalist-ce") else args.pace
    kd = method.startswith("concentration")
    x, y = dm.split("train")
    rest: list[Tensor] = [y]
    if kd:
        if "targets" not in cache[key]:
            cache[key]["targets"] = specialists.soft_targets()
        rest.append(cache[key]["targets"])
    L.seed_everything(seed, verbose=False)
    model = _student(args, dm.verticals, head, pace)
    loader = _loader(x, *rest, batch_size=args.batch_size, seed=seed)
    start = time.perf_counter()
    _fit(
        ConcentrationTask,
        model,
        loader,
        args.epochs,
        args,
        vertical_names=dm.vertical_names,
        top_k=args.top_k,
        hard_mix=args.hard_mix,
        loss="ce" if method == "generalist-ce" else args.loss,
        kd_loss="bce" if args.loss == "bce" else "softmax",
    )
    seconds = time.perf_counter() - start
    metrics = _evaluate(model, dm)
    metrics["params"] = float(sum(p.numel() for p in model.parameters()))
    metrics["head_weights"] = float(model.head.weight_count())
    metrics["seconds"] = seconds
    return metrics


# Sizes and wall time: smaller is better; every other metric is an accuracy.
_LOWER_IS_BETTER = ("params", "head_weights", "seconds")


def markdown(records: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """One table per dataset: methods as rows, accuracy overall and per vertical (mean ± std) as columns."""
    lines: list[str] = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = {(r["method"], r["metric"]): r for r in records if r["dataset"] == dataset}
        metrics = [m for m in dict.fromkeys(r["metric"] for r in records if r["dataset"] == dataset)]
        acc = (
            ["acc"] + [m for m in metrics if m.startswith("acc/")] + [m for m in metrics if m.startswith("acc_within/")]
        )
        cols = [*acc, "params"]
        lines += [f"**{dataset}** (test accuracy %, mean ± std over seeds)", ""]
        lines += ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for method in methods:
            if not any((method, c) in rows for c in cols):
                continue
            cells = []
            for c in cols:
                r = rows.get((method, c))
                if r is None:
                    cells.append("—")
                elif c == "params":
                    cells.append(f"{int(r['mean']):,}")
                else:
                    cells.append(f"{r['mean']:.2f} ± {r['std']:.2f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the records it wrote."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--dataset", "--datasets", nargs="+", default=["fashion-mnist"])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed ... first-seed + seeds - 1")
    p.add_argument("--out", default="distill_results.json")
    p.add_argument("--data-root", default=None, help="directory of the Fashion-MNIST idx files")
    p.add_argument("--verticals", default=None, help="grouping of an idx dataset, e.g. 0,2,4,6/5,7,9/1,3,8")
    p.add_argument("--pair-grouping", choices=("left", "pair"), default="left")
    p.add_argument("--num-train", type=int, default=20000, help="training samples (pairs: generated)")
    p.add_argument("--num-test", type=int, default=None, help="test samples (pairs: generated, default 10000)")
    p.add_argument("--epochs", type=int, default=8, help="student and generalist epochs")
    p.add_argument("--teacher-epochs", type=int, default=4)
    p.add_argument("--teacher", default="test_resnet", help="a timm model name or 'convnet'")
    p.add_argument("--teacher-widths", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--student-widths", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument(
        "--pool", type=int, nargs=2, default=None, help="ConvNet output grid (default: 1 2 for pairs, else 1 1)"
    )
    p.add_argument("--head", choices=("fc_sc", "sc_sc"), default="fc_sc")
    p.add_argument("--shared-width", type=int, default=64)
    p.add_argument("--block-width", type=int, default=16)
    p.add_argument("--pace", choices=("learned", "fixed", "none"), default="learned")
    p.add_argument("--pace-init", type=float, default=None, help="initial vertical scale (default sqrt(N_v))")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--hard-mix", default="max", help="'max', 'none' or the hard label's weight")
    p.add_argument("--temperature", type=float, default=1.0, help="teacher temperature (1: the paper)")
    p.add_argument("--cross-fit", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--cross-fit-epochs",
        type=int,
        default=None,
        help="epochs of a cross-fitted teacher (default: teacher-epochs x folds, i.e. the same optimizer steps)",
    )
    p.add_argument(
        "--loss",
        choices=("bce", "ce"),
        default="bce",
        help="bce: the paper's sigmoid losses everywhere; ce: softmax specialists, softmax KD and generalist",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.pool is None:
        pairs = any(d == "fashion-pairs" or d.startswith("pairs:") for d in args.dataset)
        args.pool = [1, 2] if pairs else [1, 1]
    if args.hard_mix not in ("max", "none"):
        args.hard_mix = float(args.hard_mix)
    torch.set_num_threads(args.threads)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    run_log = RunLog.beside(out)
    runs = run_log.load()
    done = run_log.done("dataset", "method", "seed")
    device = f"cpu ({platform.processor() or platform.machine()}), {args.threads} thread(s)"
    cache: dict[Any, Any] = {}
    todo = [
        (d, s, m)
        for d in args.dataset
        for s in range(args.first_seed, args.first_seed + args.seeds)
        for m in args.methods
        if (d, m, s) not in done
    ]
    for i, (dataset, seed, method) in enumerate(todo, 1):
        start = time.perf_counter()
        metrics = run_one(dataset, method, seed, args, cache)
        run = {
            "dataset": dataset,
            "method": method,
            "seed": seed,
            "metrics": metrics,
            "seconds": time.perf_counter() - start,
        }
        print(
            f"[{i}/{len(todo)}] {dataset} {method} seed={seed}: acc={metrics['acc']:.2f} ({run['seconds']:.0f}s)",
            flush=True,
        )
        runs.append(run)
        run_log.append(run)
    keep = [r for r in runs if r["dataset"] in args.dataset and r["method"] in args.methods]
    records = summarise(keep, device, lower_is_better(_LOWER_IS_BETTER))
    out.write_text(json.dumps(records, indent=1))
    print(markdown(records, args.methods))
    return records


if __name__ == "__main__":
    main()
