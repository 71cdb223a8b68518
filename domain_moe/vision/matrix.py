"""The expert matrix: every frozen source (the base and each expert) probed on every task.

Spec VIS-0 ("expert matrix"): what each encoder's map knows, measured the same way for all of them. For every
(source, task) cell a small head from :mod:`domain_moe.vision.heads` is trained on the source's *native*
frozen map ``expert(image)`` ``[B, C, h, w]`` (no alignment to a common grid, so a fine-strided expert keeps
its resolution), with the same optimizer, schedule, steps and batch size in every cell:

* ``classification``: the class of the one item of a single-item canvas (``ClassificationHead``; accuracy);
* ``segmentation``: the semantic mask, background plus one class per item class (``SegmentationHead``;
  macro mIoU, as :class:`~domain_moe.vision.tasks.ExpertPretrainTask` reports it);
* ``detection``: CenterNet boxes (``DetectionHead``, :func:`~domain_moe.vision.tasks.centernet_loss`,
  :func:`~domain_moe.vision.heads.decode_detections`; box mAP@0.5, mAP@[.5:.95] and hit rate);
* ``captioning``: the left-to-right caption (``CaptionDecoder``, teacher forcing, greedy decoding; token
  accuracy, exact-sequence accuracy, BLEU).

The maps are extracted once per source and split (the sources are frozen, so they never change); only the
heads train. By default each map channel is standardised with its training-split mean and standard deviation:
AdamW moves weights by about ``lr`` per step whatever the gradient's size, so on a map of activations of order
1e-3 (a randomly initialised ResNet stage) a head barely moves in a few hundred steps and the matrix would
compare the maps' scales instead of their content. The affine change is one a head could learn itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassJaccardIndex

from domain_moe.vision.canvas import PAD, Canvases, caption_vocab_size
from domain_moe.vision.heads import (
    CaptionDecoder,
    ClassificationHead,
    DetectionHead,
    SegmentationHead,
    decode_detections,
)
from domain_moe.vision.metrics import CaptionScores, DetectionScores
from domain_moe.vision.tasks import centernet_loss, centernet_targets

__all__ = ["MATRIX_TASKS", "expert_matrix", "fit_cosine"]

log = logging.getLogger(__name__)

#: Tasks of the matrix, in column order.
MATRIX_TASKS = ("classification", "segmentation", "detection", "captioning")
#: Images per forward pass when extracting maps and evaluating heads (bounds memory, not results).
_CHUNK = 256


def expert_matrix(
    sources: Mapping[str, nn.Module],
    train: Canvases,
    test: Canvases,
    items_train: Canvases | None = None,
    items_test: Canvases | None = None,
    *,
    tasks: Sequence[str] = MATRIX_TASKS,
    steps: int = 300,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    standardize: bool = True,
) -> dict[str, dict[str, float]]:
    """Train one probe head per (source, task) on the source's frozen map and score it on the test split.

    Every cell uses AdamW (``lr``, weight decay 1e-4) with a half-cosine decay to 0 over ``steps`` steps of
    ``batch_size`` samples drawn with replacement, and its head is initialised from ``seed``: cells differ only
    in the map they read. The sources are run in eval mode without gradients (their training flag is restored
    afterwards) and are never updated; the global RNG state is left as it was.

    Args:
        sources: frozen encoders by name (e.g. ``base``, ``classification``, ... from
            :func:`~domain_moe.vision.experts.load_expert`), each mapping ``[B, 1, s, s]`` to ``[B, C, h, w]``.
            A source with an ``img_size`` attribute (every :class:`~domain_moe.vision.experts.TimmExpert`) sees
            the canvases bilinearly resized to that side (the base: 32 px).
        train: training canvases (segmentation, detection, captioning).
        test: test canvases.
        items_train: single-item training canvases for ``classification`` (``make_canvases(...,
            max_items=1)``); needed only when that task is asked for.
        items_test: single-item test canvases for ``classification``.
        tasks: any of :data:`MATRIX_TASKS`.
        steps: optimizer steps per cell.
        lr: peak learning rate.
        batch_size: samples per step.
        seed: seed of the heads' initialisation and of the batch draws.
        standardize: standardise every map channel with the training split's statistics (see the module
            docstring); ``False`` feeds the raw maps.

    Returns:
        ``{"matrix:<source>": metrics}`` with, per task asked for, ``cls_acc``; ``seg_miou``; ``det_map_50``,
        ``det_map`` (mAP@[.5:.95]), ``det_hit_rate``; ``cap_token_acc``, ``cap_exact``, ``cap_bleu``.

    Raises:
        ValueError: no sources, an unknown task, empty or mismatched canvas sets, missing or multi-item
            ``items_*`` for classification, non-positive ``steps``/``batch_size``/``lr``.
        TypeError: a source is not an ``nn.Module``.
        ModuleNotFoundError: ``detection`` without a COCO backend for the box mAP (``pip install
            'domain-moe[vision]'``).

    Example:
        >>> from domain_moe.vision.canvas import make_canvases
        >>> from domain_moe.vision.data import synthetic_items
        >>> from domain_moe.vision.experts import TimmExpert
        >>> items, labels = synthetic_items(40, seed=0)
        >>> canvases = make_canvases(items, labels, 8, num_classes=10, seed=0)
        >>> rows = expert_matrix({"resnet": TimmExpert("test_resnet", 3)}, canvases, canvases,
        ...                      tasks=["segmentation"], steps=2, batch_size=4)
        >>> list(rows["matrix:resnet"])
        ['seg_miou']
    """
    tasks = _check_tasks(tasks)
    _check_sources(sources)
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"steps and batch_size must be >= 1 and lr > 0, got {steps}, {batch_size}, {lr}")
    canvas_tasks = [t for t in tasks if t != "classification"]
    splits: dict[str, Canvases] = {}
    if canvas_tasks:
        splits.update(train=train, test=test)
    if "classification" in tasks:
        splits.update(
            items_train=_check_items(items_train, "items_train"), items_test=_check_items(items_test, "items_test")
        )
    _check_canvases(splits)
    num_classes = int(next(iter(splits.values())).presence.shape[1])
    # Built before any training so that a missing mAP backend fails at once, not after the other cells.
    det_metric = DetectionScores(0.5) if "detection" in tasks else None
    recipe = _Recipe(steps, lr, batch_size, seed)
    rows: dict[str, dict[str, float]] = {}
    with torch.random.fork_rng(devices=[]):
        for name, source in sources.items():
            maps = {split: _maps(source, c.image) for split, c in splits.items()}
            if standardize:
                maps = _standardized(maps)
            row: dict[str, float] = {}
            for task in tasks:
                log.info("expert matrix: %s on %s", name, task)
                if task == "classification":
                    row.update(_classification(maps, splits, num_classes, recipe))
                elif task == "segmentation":
                    row.update(_segmentation(maps, splits, num_classes, recipe))
                elif task == "detection":
                    assert det_metric is not None
                    det_metric.reset()
                    row.update(_detection(maps, splits, num_classes, recipe, det_metric))
                else:
                    row.update(_captioning(maps, splits, num_classes, recipe))
            rows[f"matrix:{name}"] = row
    return rows


# -- validation -------------------------------------------------------------------------------------------------
def _check_tasks(tasks: Sequence[str]) -> list[str]:
    if isinstance(tasks, str):
        tasks = [tasks]
    unknown = [t for t in tasks if t not in MATRIX_TASKS]
    if unknown:
        raise ValueError(f"tasks must be among {MATRIX_TASKS}, got unknown {unknown}")
    if not tasks:
        raise ValueError(f"tasks must name at least one of {MATRIX_TASKS}")
    return list(dict.fromkeys(tasks))


def _check_sources(sources: Mapping[str, nn.Module]) -> None:
    if not isinstance(sources, Mapping) or not sources:
        raise ValueError("sources must be a non-empty dict {name: frozen encoder}")
    for name, source in sources.items():
        if not isinstance(source, nn.Module):
            raise TypeError(f"sources[{name!r}] must be an nn.Module (e.g. a TimmExpert), got {type(source).__name__}")


def _check_items(items: Canvases | None, arg: str) -> Canvases:
    if items is None:
        raise ValueError(f"the classification task needs {arg}: single-item canvases (make_canvases(..., max_items=1))")
    if isinstance(items, Canvases) and len(items) and not bool((items.num_items == 1).all()):
        raise ValueError(f"{arg} must hold exactly one item per canvas (make_canvases(..., max_items=1))")
    return items


def _check_canvases(splits: dict[str, Canvases]) -> None:
    for split, c in splits.items():
        if not isinstance(c, Canvases):
            raise TypeError(
                f"{split} must be Canvases (make_canvases / CanvasDataModule.canvases), got {type(c).__name__}"
            )
        if len(c) == 0:
            raise ValueError(f"{split} must hold at least one canvas")
    shapes = {split: (tuple(c.image.shape[1:]), int(c.presence.shape[1])) for split, c in splits.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"canvas sets must share image shape and class count, got {shapes}")


# -- shared pieces ------------------------------------------------------------------------------------------------
@torch.no_grad()
def _maps(source: nn.Module, images: Tensor) -> Tensor:
    """The source's native map of every image, in eval mode (its training flag is restored)."""
    was_training = source.training
    source.eval()
    size = getattr(source, "img_size", None)
    out = []
    try:
        for i in range(0, images.shape[0], _CHUNK):
            x = images[i : i + _CHUNK]
            if size is not None and tuple(x.shape[-2:]) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            out.append(source(x))
    finally:
        source.train(was_training)
    return torch.cat(out)


def _standardized(maps: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every split's map standardised per channel with the statistics of its training split."""
    out = {}
    for split, m in maps.items():
        ref = maps[split.replace("test", "train")]
        mean = ref.mean((0, 2, 3), keepdim=True)
        # Dead channels (std 0) stay 0 instead of blowing up; eps far below any live channel's spread.
        std = ref.std((0, 2, 3), keepdim=True, correction=0) + 1e-8
        out[split] = (m - mean) / std
    return out


class _Recipe:
    """The one training recipe of every cell: seeded head, seeded batches, AdamW, half-cosine decay."""

    def __init__(self, steps: int, lr: float, batch_size: int, seed: int) -> None:
        self.steps, self.lr, self.batch_size, self.seed = steps, lr, batch_size, seed

    def head(self, build: Callable[[], nn.Module]) -> nn.Module:
        """A head initialised from the seed (equal in every cell with the same shapes)."""
        torch.manual_seed(self.seed)
        return build()

    def fit(self, head: nn.Module, n: int, loss_of: Callable[[Tensor], Tensor]) -> nn.Module:
        """Train ``head`` on ``loss_of(batch indices)`` and return it in eval mode."""
        return fit_cosine(head, n, loss_of, steps=self.steps, lr=self.lr, batch_size=self.batch_size, seed=self.seed)


def fit_cosine(
    module: nn.Module, n: int, loss_of: Callable[[Tensor], Tensor], *, steps: int, lr: float, batch_size: int, seed: int
) -> nn.Module:
    """The probes' recipe: AdamW (weight decay 1e-4), half-cosine decay to 0, seeded batches drawn with replacement.

    Shared by the expert matrix and the benchmark's question and describe probes, so that every probe trains
    the same way.

    Args:
        module: what to train (every parameter).
        n: samples to draw from.
        loss_of: ``batch indices [batch_size] -> scalar loss``.
        steps: optimizer steps.
        lr: peak learning rate.
        batch_size: samples per step.
        seed: seed of the batch draws.

    Returns:
        ``module`` in eval mode.
    """
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for step in range(steps):
        idx = torch.randint(n, (batch_size,), generator=gen)
        loss = loss_of(idx)
        opt.zero_grad()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.step()
    return module.eval()


def _chunks(n: int) -> list[slice]:
    return [slice(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]


# -- the four tasks -----------------------------------------------------------------------------------------------
def _classification(
    maps: dict[str, Tensor], splits: dict[str, Canvases], num_classes: int, recipe: _Recipe
) -> dict[str, float]:
    x_tr, x_te = maps["items_train"], maps["items_test"]
    y_tr, y_te = splits["items_train"].box_class[:, 0], splits["items_test"].box_class[:, 0]
    head = recipe.head(lambda: ClassificationHead(x_tr.shape[1], num_classes))
    recipe.fit(head, len(y_tr), lambda idx: F.cross_entropy(head(x_tr[idx]), y_tr[idx]))
    with torch.no_grad():
        pred = torch.cat([head(x_te[s]).argmax(-1) for s in _chunks(len(y_te))])
    return {"cls_acc": float((pred == y_te).float().mean())}


def _segmentation(
    maps: dict[str, Tensor], splits: dict[str, Canvases], num_classes: int, recipe: _Recipe
) -> dict[str, float]:
    x_tr, x_te = maps["train"], maps["test"]
    y_tr, y_te = splits["train"].semantic, splits["test"].semantic
    size = int(y_tr.shape[-1])
    head = recipe.head(lambda: SegmentationHead(x_tr.shape[1], num_classes + 1, size))
    recipe.fit(head, len(y_tr), lambda idx: F.cross_entropy(head(x_tr[idx]), y_tr[idx]))
    metric = MulticlassJaccardIndex(num_classes + 1, average="macro")
    with torch.no_grad():
        for s in _chunks(len(y_te)):
            metric.update(head(x_te[s]).argmax(1), y_te[s])
    return {"seg_miou": float(metric.compute())}


def _detection(
    maps: dict[str, Tensor],
    splits: dict[str, Canvases],
    num_classes: int,
    recipe: _Recipe,
    metric: DetectionScores,
) -> dict[str, float]:
    x_tr, x_te = maps["train"], maps["test"]
    tr, te = splits["train"], splits["test"]
    size = int(tr.image.shape[-1])
    # Targets live on the source's own grid (stride 4 to 16 here); built once, indexed per batch.
    targets = centernet_targets(tr.boxes, tr.box_class, num_classes, int(x_tr.shape[-1]), size)
    head = recipe.head(lambda: DetectionHead(x_tr.shape[1], num_classes))
    recipe.fit(head, len(tr), lambda idx: centernet_loss(head(x_tr[idx]), tuple(t[idx] for t in targets)))
    with torch.no_grad():
        for s in _chunks(len(te)):
            boxes, scores, classes = decode_detections(*head(x_te[s]), size, te.box_class.shape[1])
            metric.update(boxes, scores, classes, te.boxes[s], te.box_class[s])
    out = metric.compute()
    return {"det_map_50": float(out["map_50"]), "det_map": float(out["map"]), "det_hit_rate": float(out["hit_rate"])}


def _captioning(
    maps: dict[str, Tensor], splits: dict[str, Canvases], num_classes: int, recipe: _Recipe
) -> dict[str, float]:
    x_tr, x_te = maps["train"], maps["test"]
    y_tr, y_te = splits["train"].caption, splits["test"].caption
    vocab = caption_vocab_size(num_classes)
    head = recipe.head(lambda: CaptionDecoder(x_tr.shape[1], vocab, 64))

    def loss_of(idx: Tensor) -> Tensor:
        logits = head(x_tr[idx], y_tr[idx])
        return F.cross_entropy(logits.reshape(-1, vocab), y_tr[idx][:, 1:].reshape(-1), ignore_index=PAD)

    recipe.fit(head, len(y_tr), loss_of)
    metric = CaptionScores(pad=PAD)
    for s in _chunks(len(y_te)):
        metric.update(head.generate(x_te[s], y_te.shape[1]), y_te[s])
    out = metric.compute()
    return {"cap_token_acc": float(out["token_acc"]), "cap_exact": float(out["exact"]), "cap_bleu": float(out["bleu"])}
