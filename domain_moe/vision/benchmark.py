"""Reproduce MoVA's and Astrea's claims on multi-object canvases: fused experts vs single experts -> JSON + markdown.

``python -m domain_moe.vision.benchmark --dataset fashion-mnist --seeds 3 --out results.json``

Pipeline (spec VIS-0..2), per dataset:

1. **Experts** (once per dataset, cached in ``--cache-dir``): the base (``test_vit`` on 32 px canvases, class
   presence), classification (``test_resnet`` on single items), captioning (``test_byobnet``, GRU decoder),
   detection (``test_efficientnet``, CenterNet) and segmentation (``test_convnext``), each trained for its own
   task with :class:`~domain_moe.vision.tasks.ExpertPretrainTask`, then frozen. Their own-task test metrics are
   recorded (``own_metric``).
2. **Feature cache**: base tokens and every expert's map aligned to the ``--grid`` base grid, for all canvases,
   written next to the experts (extracted once). ``--question-train`` adds fresh training canvases (same
   training items, new layouts) for the question stages: at 2000 canvases the fusion models overfit (train
   accuracy far above the probes', test below).
3. Per seed and method, on the cache (same canvases and test set for every method):

   * ``expert-matrix``: every source (``matrix:base``, ``matrix:<role>``) on every own task, a probe head on
     its frozen native map (:func:`~domain_moe.vision.matrix.expert_matrix`: single-item classification
     accuracy, segmentation mIoU, box mAP@0.5 / mAP@[.5:.95] / hit rate, caption token accuracy and BLEU),
     plus ``best-matrix`` (the best per column);
   * ``single-experts``: one question-answering probe per source (``expert:base`` and ``expert:<role>``),
     plus ``best-single-expert`` (per metric, the best of those rows); with describing on (default), also a
     caption + retrieval probe per source (the heads of Astrea's describe branch on that source alone);
   * ``mova``: cross-fitted probe losses -> routing annotations (MoVA's loss-driven rule) -> router (BCE) ->
     adapter on annotation routes -> adapter on the router's routes; evaluated with the router. The
     annotation probes train as long as the fusion (``--probe-steps 0``): shorter probes see no gain from any
     expert on the class-level templates and the router learns to send them to no expert;
   * ``mova-random-router``: the same, with random routes of the router's per-sample K;
   * ``mova-all-experts``: every expert routed, dynamic gate (optional);
   * ``astrea`` and ``astrea-no-prealign``, ``astrea-no-stochastic-residual``, ``astrea-no-moco``,
     ``astrea-no-allocator``; with describing on, Astrea also trains caption decoding and image <-> caption
     retrieval from its fused tokens (:class:`~domain_moe.vision.models.Describer`), and
     ``astrea-no-describe`` trains it on the questions alone (the caption targets are extra supervision the
     question probes do not get).

Every probe and every fusion stage uses AdamW at ``--lr`` with the same half-cosine decay and batch size, and
the fusion models get as many answer-loss steps (``--adapter-steps``) as a single-expert probe.

Metrics: ``acc`` (mean question accuracy over templates), ``acc_<template>``; describing rows
``caption_token_acc``, ``caption_exact``, ``caption_bleu`` (BLEU-2: captions hold at most three class words),
``i2t_r1/5`` (image -> caption recall@k over the test split's distinct captions) and ``t2i_r1/5`` (caption ->
image, over its canvases; canvases with the same class multiset count as hits); MoVA also ``mean_k``,
``router_f1`` and ``route:<template>:<role>`` (share of test questions of a template routed to an expert);
Astrea also ``drop:<role>`` (accuracy with that expert removed at test time) and ``weight:<role>`` (mean
allocator weight). Records follow ``DESIGN.md``; finished (dataset, method, seed) runs are kept in
``<out>.runs.jsonl`` so an interrupted benchmark resumes. The base encoder and experts are fixed across seeds
(trained once with seed 0); seeds change the fusion models' initialisation and data order.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from domain_moe.utils.records import RunLog, summarise
from domain_moe.vision.annotations import routing_targets
from domain_moe.vision.canvas import TEMPLATES, caption_vocab_size, make_canvases
from domain_moe.vision.data import CanvasDataModule, FashionMNISTDataModule, TensorDictDataset, load_items
from domain_moe.vision.experts import TimmExpert, align_to_grid, load_expert
from domain_moe.vision.heads import CaptionDecoder, ClassificationHead, DetectionHead, QuestionHead, SegmentationHead
from domain_moe.vision.matrix import expert_matrix, fit_cosine
from domain_moe.vision.metrics import CaptionScores, QuestionAccuracy, retrieval_recall_at_k
from domain_moe.vision.models import (
    Astrea,
    ContextRouter,
    Describer,
    ExpertNetwork,
    MoVA,
    MoVAdapter,
    SingleSourceModel,
)
from domain_moe.vision.tasks import AstreaTask, ExpertPretrainTask, MoVATask
from domain_moe.vision.zoo import BASE_SPEC, EXPERT_SPECS

__all__ = ["METHODS", "main", "prepare", "run_method"]

ROLES = tuple(EXPERT_SPECS)
ASTREA_ABLATIONS = ("prealign", "stochastic-residual", "moco", "allocator", "describe")
METHODS = (
    "expert-matrix",
    "single-experts",
    "mova",
    "mova-random-router",
    "mova-all-experts",
    "astrea",
    *(f"astrea-no-{p}" for p in ASTREA_ABLATIONS),
)
DEFAULT_METHODS = tuple(m for m in METHODS if m != "mova-all-experts")
_QUESTION_KEYS = ("context", "argument", "answer", "presence", "caption")
#: Canvas seed of the extra question canvases (the canvas module uses 0, 1, 2 for its own splits).
_EXTRA_SEED = 7
#: Canvas seeds of the expert matrix's single-item canvases (train, test).
_ITEM_SEEDS = (11, 12)


def _device_string() -> str:
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, torch {torch.__version__}, {torch.get_num_threads()} thread(s))"


def _trainer(steps: int, root: str) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=root,
    )


def _loader(tensors: dict[str, Tensor], batch_size: int, seed: int, shuffle: bool = True) -> Any:
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        TensorDictDataset(tensors), batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=_identity
    )


def _identity(batch: Any) -> Any:
    return batch


def _adamw(lr: float) -> Any:
    def build(params: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)

    return build


def _cosine(steps: int) -> Any:
    """``optimizer -> LambdaLR``: the probes' half-cosine decay over ``steps`` (same schedule for every method)."""

    def build(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))

    return build


# -- stage 0: experts and the feature cache ---------------------------------------------------------------------
def _expert_network(role: str) -> ExpertNetwork:
    spec = BASE_SPEC if role == "base" else EXPERT_SPECS[role]
    trunk = TimmExpert(**spec)
    c = trunk.channels
    if role == "base":
        return ExpertNetwork(trunk, ClassificationHead(c, 10), "presence", img_size=spec["img_size"])
    if role == "classification":
        return ExpertNetwork(trunk, ClassificationHead(c, 10), "classification")
    if role == "captioning":
        return ExpertNetwork(trunk, CaptionDecoder(c, 13, 64), "captioning")
    if role == "detection":
        return ExpertNetwork(trunk, DetectionHead(c, 10), "detection")
    return ExpertNetwork(trunk, SegmentationHead(c, 11, 64), "segmentation")


def _train_expert(role: str, canvas: CanvasDataModule, args: argparse.Namespace, path: Path) -> float:
    L.seed_everything(0, verbose=False)
    net = _expert_network(role)
    task = ExpertPretrainTask(net, optimizer=_adamw(2e-3), save_path=str(path))
    if role == "classification":
        data: L.LightningDataModule = FashionMNISTDataModule(
            canvas.dataset, canvas.root, num_train=args.num_train * 4, num_test=args.num_test, batch_size=128
        )
    else:
        data = canvas
    trainer = _trainer(args.expert_steps, str(path.parent))
    trainer.fit(task, datamodule=data)
    trainer.test(task, datamodule=data, verbose=False)
    return float(trainer.callback_metrics["test/metric"])


def prepare(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    """Canvases, trained frozen experts (cached on disk) and the aligned feature cache of a dataset."""
    canvas = CanvasDataModule(
        dataset,
        args.data_root,
        canvas_size=64,
        max_items=args.max_items,
        num_train=args.num_train,
        num_val=10,
        num_test=args.num_test,
        batch_size=64,
        seed=0,
    )
    canvas.setup()
    slug = dataset.replace(":", "_").replace("/", "_")
    root = Path(args.cache_dir) / f"{slug}-n{args.num_train}-s{args.expert_steps}"
    root.mkdir(parents=True, exist_ok=True)
    own_path = root / "own_metrics.json"
    own = json.loads(own_path.read_text()) if own_path.exists() else {}
    for role in ("base", *ROLES):
        path = root / f"{role}.pt"
        if not path.exists() or role not in own:
            logging.info("training the %s expert", role)
            own[role] = _train_expert(role, canvas, args, path)
            own_path.write_text(json.dumps(own))
    experts = {role: load_expert(root / f"{role}.pt") for role in ("base", *ROLES)}
    splits = {"train": [canvas.canvases["train"]], "test": [canvas.canvases["test"]]}
    extra = max(args.question_train - args.num_train, 0)
    if extra:
        # More question canvases from the same training items (never the test items), fresh layouts.
        tr_x, tr_y = load_items(dataset, args.data_root, seed=0)["train"]
        common = {"canvas_size": 64, "max_items": args.max_items, "scale_range": canvas.scale_range}
        common["num_classes"] = canvas.num_classes
        splits["train"].append(make_canvases(tr_x, tr_y, extra, seed=_EXTRA_SEED, **common))
    # The aligned maps of frozen experts never change: extract them once per (canvas sets, grid).
    feature_path = root / f"features-q{args.question_train}-t{args.num_test}-m{args.max_items}-g{args.grid}.pt"
    if feature_path.exists():
        cache = torch.load(feature_path)
    else:
        cache = {split: _features(parts, experts, args.grid) for split, parts in splits.items()}
        partial = feature_path.with_suffix(".partial")
        torch.save(cache, partial)
        partial.replace(feature_path)  # atomic: a parallel run never reads a half-written cache
    channels = [experts[r].channels for r in ROLES]
    return {
        "cache": cache,
        "own": own,
        "channels": channels,
        "d_base": experts["base"].channels,
        "experts": experts,
        "canvas": canvas,
    }


def _features(parts: Sequence[Any], experts: dict[str, Any], grid: int) -> dict[str, Tensor]:
    """Question fields and every source's tokens aligned to the ``grid`` base grid, over canvas sets."""
    chunks: list[dict[str, Tensor]] = []
    for c in parts:
        tensors = {k: getattr(c, k) for k in _QUESTION_KEYS}
        with torch.no_grad():
            for name, expert in experts.items():
                out = []
                for i in range(0, len(c), 256):
                    image = c.image[i : i + 256]
                    if image.shape[-1] != expert.img_size:
                        image = F.interpolate(image, size=(expert.img_size,) * 2, mode="bilinear", align_corners=False)
                    out.append(align_to_grid(expert(image), grid))
                key = "base_tokens" if name == "base" else f"expert_tokens_{ROLES.index(name)}"
                tensors[key] = torch.cat(out)
        chunks.append(tensors)
    return {k: torch.cat([t[k] for t in chunks]) for k in chunks[0]}


# -- helpers on the cache ---------------------------------------------------------------------------------------
def _head(d_model: int, args: argparse.Namespace) -> QuestionHead:
    return QuestionHead(d_model, len(TEMPLATES), 10, None, d_context=32, num_heads=4, max_items=args.max_items)


def _source(tensors: dict[str, Tensor], j: int) -> Tensor:
    return tensors["base_tokens"] if j == 0 else tensors[f"expert_tokens_{j - 1}"]


def _subset(tensors: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    return {k: v[idx] for k, v in tensors.items()}


def _train_probe(tensors: dict[str, Tensor], j: int, steps: int, seed: int, args: argparse.Namespace) -> Any:
    torch.manual_seed(seed)
    tokens = _source(tensors, j)
    model = SingleSourceModel(tokens.shape[-1], 64, _head(64, args))

    def loss_of(idx: Tensor) -> Tensor:
        logits = model(tokens[idx], tensors["context"][idx], tensors["argument"][idx])
        return F.cross_entropy(logits, tensors["answer"][idx])

    return fit_cosine(model, tokens.shape[0], loss_of, steps=steps, lr=args.lr, batch_size=args.batch_size, seed=seed)


@torch.no_grad()
def _probe_losses(model: Any, tensors: dict[str, Tensor], j: int) -> Tensor:
    logits = model(_source(tensors, j), tensors["context"], tensors["argument"])
    return F.cross_entropy(logits, tensors["answer"], reduction="none")


@torch.no_grad()
def _accuracy(predict: Any, tensors: dict[str, Tensor], batch_size: int = 256) -> dict[str, float]:
    metric = QuestionAccuracy(len(TEMPLATES))
    n = tensors["answer"].shape[0]
    for i in range(0, n, batch_size):
        batch = {k: v[i : i + batch_size] for k, v in tensors.items()}
        metric.update(predict(batch), batch["answer"], batch["context"])
    out = metric.compute()
    result = {"acc": float(out["mean"])}
    result.update({f"acc_{t}": float(v) for t, v in zip(TEMPLATES, out["per_template"], strict=True)})
    return result


def _describer(d_model: int) -> Describer:
    return Describer(d_model, caption_vocab_size(10), d_hidden=64, d_embed=64)


@torch.no_grad()
def _describe_metrics(describe: Any, tensors: dict[str, Tensor], batch_size: int = 256) -> dict[str, float]:
    """Caption scores and image <-> caption recall@k on a split; ``describe(batch)`` gives captions and embeddings.

    Retrieval runs over the whole split; canvases with the same class multiset count as correct answers.
    """
    scores = CaptionScores()
    images, captions = [], []
    caption = tensors["caption"]
    n = caption.shape[0]
    for i in range(0, n, batch_size):
        batch = {k: v[i : i + batch_size] for k, v in tensors.items()}
        out = describe(batch)
        scores.update(out["caption"], batch["caption"])
        images.append(out["image_embedding"])
        captions.append(out["caption_embedding"])
    cap = scores.compute()
    image, text = torch.cat(images), torch.cat(captions)
    presence = tensors["presence"]
    positives = (presence.unsqueeze(1) == presence.unsqueeze(0)).all(-1)
    # Image -> caption ranks the distinct captions (class multisets): with duplicates in the key set, the top k
    # would fill with copies of one wrong caption and recall@5 would say little more than recall@1.
    _, inverse = torch.unique(presence, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(n), "amin"
    )
    res = {"caption_token_acc": float(cap["token_acc"]), "caption_exact": float(cap["exact"])}
    res["caption_bleu"] = float(cap["bleu"])
    for k in (1, 5):
        res[f"i2t_r{k}"] = float(retrieval_recall_at_k(image, text[first], positives[:, first], k))
        res[f"t2i_r{k}"] = float(retrieval_recall_at_k(text, image, positives, k))
    return res


def _describe_probe(tensors: dict[str, Tensor], j: int, seed: int, args: argparse.Namespace) -> dict[str, float]:
    """Caption + retrieval heads on one frozen source (projected like the question probe), then their metrics.

    Same heads, optimizer, steps and batch size as Astrea's describe branch, so the rows compare.
    """
    torch.manual_seed(seed)
    tokens = _source(tensors["train"], j)
    proj = torch.nn.Sequential(torch.nn.Linear(tokens.shape[-1], 64), torch.nn.LayerNorm(64))
    describer = _describer(64)
    train = tensors["train"]

    def loss_of(idx: Tensor) -> Tensor:
        out = describer.losses(proj(tokens[idx]), train["caption"][idx], train["presence"][idx])
        return out.caption + out.retrieval

    fit_cosine(
        torch.nn.ModuleList([proj, describer]),
        tokens.shape[0],
        loss_of,
        steps=args.adapter_steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=seed,
    )

    def describe(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = proj(_source(batch, j))
        return {
            "caption": describer.generate(x, batch["caption"].shape[1]),
            "image_embedding": describer.image_embedding(x),
            "caption_embedding": describer.caption_embedding(batch["caption"]),
        }

    return _describe_metrics(describe, tensors["test"])


def _annotations(cache: dict[str, dict[str, Tensor]], seed: int, args: argparse.Namespace) -> dict[str, Tensor]:
    """Cross-fitted routing labels for the training split, and test labels from probes on all of train."""
    train = cache["train"]
    n = train["answer"].shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = [perm[: n // 2], perm[n // 2 :]]
    num_sources = len(ROLES) + 1
    losses = torch.zeros(n, num_sources)
    for a, b in ((0, 1), (1, 0)):
        fit, held = _subset(train, folds[a]), _subset(train, folds[b])
        for j in range(num_sources):
            probe = _train_probe(fit, j, args.probe_steps or args.adapter_steps, seed * 10 + a, args)
            losses[folds[b], j] = _probe_losses(probe, held, j)
    return {"train": routing_targets(losses, args.delta, args.k_max)}


# -- methods ----------------------------------------------------------------------------------------------------
def _expert_matrix(prep: dict[str, Any], seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Every source on every own task (classification, segmentation, detection, captioning), native maps."""
    canvas: CanvasDataModule = prep["canvas"]
    if "items" not in prep:
        # Single-item canvases for the classification column, from the same train / test items.
        items = load_items(canvas.dataset, canvas.root, seed=0)
        common = {"canvas_size": 64, "max_items": 1, "scale_range": canvas.scale_range}
        common["num_classes"] = canvas.num_classes
        prep["items"] = [
            make_canvases(*items[split], n, seed=s, **common)
            for split, n, s in (("train", args.num_train, _ITEM_SEEDS[0]), ("test", args.num_test, _ITEM_SEEDS[1]))
        ]
    rows = expert_matrix(
        prep["experts"],
        canvas.canvases["train"],
        canvas.canvases["test"],
        *prep["items"],
        steps=args.matrix_steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=seed,
    )
    keys = next(iter(rows.values()))
    rows["best-matrix"] = {k: max(r[k] for r in rows.values()) for k in keys}
    return rows


def _single_experts(prep: dict[str, Any], seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    cache = prep["cache"]
    for j, name in enumerate(("base", *ROLES)):
        probe = _train_probe(cache["train"], j, args.adapter_steps, seed, args)
        res = _accuracy(lambda b, j=j, probe=probe: probe(_source(b, j), b["context"], b["argument"]), cache["test"])
        if args.describe:
            res.update(_describe_probe(cache, j, seed, args))
        res["own_metric"] = float(prep["own"][name])
        out[f"expert:{name}"] = res
    keys = [k for k in next(iter(out.values())) if k != "own_metric"]
    out["best-single-expert"] = {k: max(r[k] for r in out.values()) for k in keys}
    return out


def _mova(prep: dict[str, Any], seed: int, method: str, args: argparse.Namespace) -> dict[str, float]:
    cache = prep["cache"]
    # The annotations depend only on the seed: MoVA and its baselines of one seed share them.
    labels = prep.setdefault("annotations", {}).get(seed)
    if labels is None:
        labels = prep["annotations"][seed] = _annotations(cache, seed, args)
    L.seed_everything(seed, verbose=False)
    router = ContextRouter(
        prep["d_base"], args.grid, len(TEMPLATES), 10, len(ROLES), top_k=args.k_max, threshold=0.5, pool_grid=2
    )
    adapter = MoVAdapter(
        prep["d_base"], prep["channels"], args.grid * args.grid, 32, num_blocks=args.blocks, top_k=args.k_max
    )
    model = MoVA(router, adapter, _head(prep["d_base"], args), grid=args.grid, route_mode="annotation")
    train = dict(cache["train"], route_target=labels["train"].long())
    tmp = str(Path(args.cache_dir) / "lightning")
    # Stage 2: the router on the annotations.
    task = MoVATask(model, _adamw(2e-3), stage="router", pool_dropout=0.1)
    _trainer(args.router_steps, tmp).fit(task, train_dataloaders=_loader(train, args.batch_size, seed))
    # Stages 3-4: the adapter on annotation routes, then on the routes it will see at test time.
    final_mode = {"mova": "router", "mova-random-router": "random", "mova-all-experts": "all"}[method]
    for mode, steps in (
        ("annotation" if method == "mova" else final_mode, args.adapter_steps // 2),
        (final_mode, args.adapter_steps - args.adapter_steps // 2),
    ):
        model.route_mode = mode
        task = MoVATask(model, _adamw(args.lr), _cosine(steps), "step", stage="adapter")
        _trainer(steps, tmp).fit(task, train_dataloaders=_loader(train, args.batch_size, seed + 1))
    model.eval()
    model.route_mode = final_mode
    routes: list[Tensor] = []
    decisions: list[Tensor] = []

    def predict(batch: dict[str, Tensor]) -> Tensor:
        logits = model(batch)
        routes.append(model.last_routes)
        if model.last_decision is not None:
            decisions.append(ContextRouter.multi_hot(model.last_decision))
        return logits

    torch.manual_seed(seed)
    res = _accuracy(predict, cache["test"])
    all_routes = torch.cat(routes).float()
    res["mean_k"] = float(all_routes.sum(-1).mean())
    context = cache["test"]["context"]
    for t, name in enumerate(TEMPLATES):
        for j, role in enumerate(ROLES):
            res[f"route:{name}:{role}"] = float(all_routes[context == t, j].mean())
    res["annotation_rate"] = float(labels["train"].float().mean())
    if method == "mova":
        with torch.no_grad():
            base = cache["train"]["base_tokens"]
            pred = ContextRouter.multi_hot(model.router(base, cache["train"]["context"], cache["train"]["argument"]))
        tp = (pred & labels["train"]).sum().float()
        res["router_f1_train"] = float(2 * tp / (pred.sum() + labels["train"].sum()).clamp_min(1))
    return res


def _astrea(prep: dict[str, Any], seed: int, method: str, args: argparse.Namespace) -> dict[str, float]:
    cache = prep["cache"]
    off = method.removeprefix("astrea-no-") if method != "astrea" else ""
    describe = args.describe and off != "describe"
    L.seed_everything(seed, verbose=False)
    model = Astrea(
        prep["d_base"],
        prep["channels"],
        _head(prep["d_base"], args),
        num_classes=10,
        stochastic_residual=off != "stochastic-residual",
        moco=off != "moco",
        allocator="uniform" if off == "allocator" else "learned",
        queue_size=1024,
        moco_momentum=0.99,
        seed=seed,
        describer=_describer(prep["d_base"]) if describe else None,
    )
    tmp = str(Path(args.cache_dir) / "lightning")
    train = cache["train"]
    if off != "prealign":
        task = AstreaTask(model, _adamw(2e-3), stage="prealign", steps_per_expert=args.prealign_steps)
        _trainer(args.prealign_steps * len(ROLES), tmp).fit(task, train_dataloaders=_loader(train, 128, seed))
    task = AstreaTask(model, _adamw(args.lr), _cosine(args.adapter_steps), "step", stage="fusion")
    _trainer(args.adapter_steps, tmp).fit(task, train_dataloaders=_loader(train, args.batch_size, seed + 1))
    model.eval()
    weights: list[Tensor] = []

    def predict(batch: dict[str, Tensor]) -> Tensor:
        logits = model(batch)
        weights.append(model.last_weights)
        return logits

    res = _accuracy(predict, cache["test"])
    if describe:

        def describe(batch: dict[str, Tensor]) -> dict[str, Tensor]:
            out = model.describe(batch, batch["caption"].shape[1])
            out["caption_embedding"] = model.describer.caption_embedding(batch["caption"])
            return out

        res.update(_describe_metrics(describe, cache["test"]))
    w = torch.cat(weights)
    for j, role in enumerate(ROLES):
        res[f"weight:{role}"] = float(w[:, j].mean())
        res[f"drop:{role}"] = _accuracy(lambda b, j=j: model(b, drop_experts=[j]), cache["test"])["acc"]
    return res


def run_method(method: str, prep: dict[str, Any], seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Train and evaluate one method for one seed; returns ``{row name: {metric: value}}``."""
    if method == "expert-matrix":
        return _expert_matrix(prep, seed, args)
    if method == "single-experts":
        return _single_experts(prep, seed, args)
    if method.startswith("mova"):
        return {method: _mova(prep, seed, method, args)}
    if method.startswith("astrea"):
        return {method: _astrea(prep, seed, method, args)}
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


# -- records ----------------------------------------------------------------------------------------------------
#: Columns of the printed tables: question answering, describing (captions, retrieval), the expert matrix.
_TABLES = (
    ("acc", *(f"acc_{t}" for t in TEMPLATES)),
    ("caption_token_acc", "caption_exact", "caption_bleu", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"),
    ("cls_acc", "seg_miou", "det_map_50", "det_map", "det_hit_rate", "cap_token_acc", "cap_bleu"),
)


def _markdown(records: list[dict[str, Any]]) -> str:
    table: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in records:
        table.setdefault((r["dataset"], r["method"]), {})[r["metric"]] = r
    out = []
    for cols in _TABLES:
        rows = [(key, metrics) for key, metrics in table.items() if cols[0] in metrics]
        if not rows:
            continue
        lines = ["| dataset | method | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
        for (dataset, method), metrics in rows:
            cells = []
            for c in cols:
                r = metrics.get(c)
                cells.append("" if r is None else f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}")
            lines.append(f"| {dataset} | {method} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist | idx:<dir> | synthetic")
    p.add_argument("--data-root", default=None, help="directory of idx files for fashion-mnist")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help=f"any of {', '.join(METHODS)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="vision_results.json")
    p.add_argument("--cache-dir", default="vision_cache", help="trained experts and Lightning scratch files")
    p.add_argument("--num-train", type=int, default=3000, help="training canvases")
    p.add_argument(
        "--question-train",
        type=int,
        default=0,
        help="question canvases the probes and fusion models train on (the experts' --num-train plus fresh\n"
        "canvases from the same training items; 0 = --num-train)",
    )
    p.add_argument("--num-test", type=int, default=1000, help="test canvases")
    p.add_argument("--max-items", type=int, default=3)
    p.add_argument("--grid", type=int, default=4, help="base grid side the fusion works on")
    p.add_argument("--expert-steps", type=int, default=300)
    p.add_argument("--matrix-steps", type=int, default=300, help="steps of each expert-matrix probe head")
    p.add_argument(
        "--probe-steps",
        type=int,
        default=0,
        help="steps of each annotation probe (0 = --adapter-steps: under-trained probes see no gain from any\n"
        "expert on the harder templates, so the router learns to route them nowhere)",
    )
    p.add_argument("--router-steps", type=int, default=300)
    p.add_argument("--adapter-steps", type=int, default=800, help="fusion steps (also the single-expert probes)")
    p.add_argument("--prealign-steps", type=int, default=100, help="Astrea pre-alignment steps per expert")
    p.add_argument(
        "--lr", type=float, default=2e-3, help="AdamW peak lr, half-cosine decay: probes and fusion stages alike"
    )
    p.add_argument("--blocks", type=int, default=2, help="MoV-Adapter blocks")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--delta", type=float, default=0.05, help="annotation margin on the loss gain")
    p.add_argument("--k-max", type=int, default=2)
    p.add_argument(
        "--no-describe",
        dest="describe",
        action="store_false",
        help="skip captioning and retrieval (Astrea's describe branch and the single experts' describe probes)",
    )
    p.add_argument("--threads", type=int, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; returns the records (also written to ``--out``)."""
    args = _parser().parse_args(argv)
    for m in args.methods:
        if m not in METHODS:
            raise ValueError(f"--methods: unknown method {m!r}; expected any of {METHODS}")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*modules? in eval mode.*")
    device = _device_string()
    out = Path(args.out)
    run_log = RunLog.beside(out)
    runs = run_log.load()
    done = run_log.done("dataset", "method", "seed")
    prep = None
    todo = [(m, s) for m in args.methods for s in range(args.seeds) if (args.dataset, m, s) not in done]
    for i, (method, seed) in enumerate(todo):
        if prep is None:
            prep = prepare(args.dataset, args)
        logging.info("[%d/%d] %s %s seed %d", i + 1, len(todo), args.dataset, method, seed)
        start = time.process_time()
        rows = run_method(method, prep, seed, args)
        run = {"dataset": args.dataset, "method": method, "seed": seed, "rows": rows}
        run["seconds"] = time.process_time() - start
        run_log.append(run)
        runs.append(run)
    keep = [r for r in runs if r["dataset"] == args.dataset and r["method"] in args.methods]
    # One record per (row, metric); a NaN (a template absent from a seed's test set) is kept in ``values``.
    records = summarise(keep, device, nan="skip")
    out.write_text(json.dumps(records, indent=1))
    print(_markdown(records))
    return records


if __name__ == "__main__":
    main()
