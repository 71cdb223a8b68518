"""Lightning tasks of the vision domain: expert pretraining, MoVA (router / adapter stages), Astrea."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex, MultilabelF1Score

from domain_moe.core.routing import ThresholdRouter
from domain_moe.training.task import MoETask
from domain_moe.vision.canvas import TEMPLATES
from domain_moe.vision.experts import save_expert
from domain_moe.vision.heads import decode_detections
from domain_moe.vision.metrics import CaptionScores, DetectionScores, QuestionAccuracy
from domain_moe.vision.models.astrea import Astrea
from domain_moe.vision.models.expert_network import ExpertNetwork
from domain_moe.vision.models.mova import MoVA

__all__ = ["AstreaTask", "ExpertPretrainTask", "MoVATask", "centernet_loss", "centernet_targets"]


def centernet_targets(
    boxes: Tensor, box_class: Tensor, num_classes: int, map_size: int, image_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CenterNet training targets at the map's resolution: Gaussian class heatmaps, sizes, offsets, centre mask.

    Args:
        boxes: ``xyxy`` pixel boxes ``[B, M, 4]``.
        box_class: classes ``[B, M]`` (``-1`` padding).
        num_classes: classes ``C``.
        map_size: heatmap side ``h``.
        image_size: image side ``S``.

    Returns:
        ``heat [B, C, h, h]``, ``size [B, 2, h, h]`` (fractions of ``S``), ``offset [B, 2, h, h]``,
        ``mask [B, h, h]`` (bool, cells holding a centre).
    """
    b, m, _ = boxes.shape
    stride = image_size / map_size
    heat = torch.zeros(b, num_classes, map_size, map_size)
    size = torch.zeros(b, 2, map_size, map_size)
    offset = torch.zeros(b, 2, map_size, map_size)
    mask = torch.zeros(b, map_size, map_size, dtype=torch.bool)
    ys, xs = torch.meshgrid(torch.arange(map_size).float(), torch.arange(map_size).float(), indexing="ij")
    for i in range(b):
        for j in range(m):
            c = int(box_class[i, j])
            if c < 0:
                continue
            x1, y1, x2, y2 = boxes[i, j].tolist()
            cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
            gx, gy = min(int(cx), map_size - 1), min(int(cy), map_size - 1)
            sigma = max((x2 - x1 + y2 - y1) / 2 / stride / 6, 0.5)
            g = torch.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * sigma**2))
            heat[i, c] = torch.maximum(heat[i, c], g)
            size[i, :, gy, gx] = torch.tensor([(x2 - x1) / image_size, (y2 - y1) / image_size])
            offset[i, :, gy, gx] = torch.tensor([cx - gx, cy - gy])
            mask[i, gy, gx] = True
    return heat, size, offset, mask


def centernet_loss(outputs: tuple[Tensor, Tensor, Tensor], targets: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
    """Penalty-reduced focal loss on the heatmap plus L1 on sizes and offsets at centre cells (Zhou et al., 2019)."""
    heat_logits, size, offset = outputs
    heat_t, size_t, offset_t, mask = (t.to(heat_logits.device) for t in targets)
    p = heat_logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = heat_t.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - heat_t) ** 4 * (1 - pos)).sum()
    num_pos = pos.sum().clamp_min(1)
    m = mask.unsqueeze(1).float()
    reg = (F.l1_loss(size * m, size_t * m, reduction="sum") + F.l1_loss(offset * m, offset_t * m, reduction="sum")) / (
        m.sum().clamp_min(1)
    )
    return (pos_loss + neg_loss) / num_pos + reg


class ExpertPretrainTask(MoETask):
    """Train one expert for its own task; optionally save the trunk (frozen later) when training ends.

    Tasks and batches: ``classification`` (items: ``image``, ``label``; cross-entropy, accuracy),
    ``presence`` (canvases; multi-label BCE on ``presence``, F1), ``segmentation`` (canvases; per-pixel
    cross-entropy on ``semantic``, mean IoU), ``detection`` (canvases; CenterNet loss on ``boxes``,
    ``box_class``; box mAP with :class:`~domain_moe.vision.metrics.DetectionScores`) and ``captioning``
    (canvases; teacher-forced cross-entropy on ``caption``; token accuracy, exact match, BLEU-4). Logs
    ``<stage>/loss`` and ``<stage>/metric``. Captioning also logs ``<stage>/token_acc``, ``<stage>/exact`` and
    ``<stage>/bleu`` (``metric`` is the token accuracy); detection logs ``<stage>/map`` (mAP@[.5:.95]),
    ``<stage>/map_50`` and ``<stage>/hit_rate`` (share of boxes matched at IoU 0.5), and ``metric`` is
    ``map_50`` (it used to be the hit rate, which the mAP backend now always accompanies). Detection needs a
    COCO backend (``pycocotools``, in the ``vision`` extra).

    Args:
        model: an :class:`ExpertNetwork`.
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        num_classes: item classes.
        save_path: where to write the trained trunk with ``save_expert`` at the end of ``fit`` (or ``None``).

    Example:
        >>> from domain_moe.vision.experts import TimmExpert
        >>> from domain_moe.vision.heads import ClassificationHead
        >>> trunk = TimmExpert("test_resnet", 3, img_size=28)
        >>> task = ExpertPretrainTask(ExpertNetwork(trunk, ClassificationHead(192, 10), "classification"))
        >>> loss, _ = task.compute_loss({"image": torch.zeros(2, 1, 28, 28), "label": torch.tensor([0, 1])}, "val")
        >>> loss.dim()
        0
    """

    #: The score logged as ``<stage>/metric`` by the tasks whose metric returns several.
    _MAIN_SCORE: dict[str, str] = {"captioning": "token_acc", "detection": "map_50"}

    def __init__(
        self,
        model: ExpertNetwork,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        num_classes: int = 10,
        save_path: str | None = None,
    ) -> None:
        super().__init__(model, optimizer, scheduler)
        if not isinstance(model, ExpertNetwork):
            raise TypeError(f"ExpertPretrainTask: model must be an ExpertNetwork, got {type(model).__name__}")
        self.num_classes = num_classes
        self.save_path = save_path
        self.metrics = nn.ModuleDict({f"m_{stage}": self._metric() for stage in ("train", "val", "test")})

    def _metric(self) -> nn.Module:
        task = self.model.task
        if task == "classification":
            return MulticlassAccuracy(self.num_classes, average="micro")
        if task == "presence":
            return MultilabelF1Score(self.num_classes, average="micro")
        if task == "segmentation":
            return MulticlassJaccardIndex(self.num_classes + 1, average="macro")
        if task == "detection":
            return DetectionScores(0.5)
        return CaptionScores()

    def compute_loss(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Loss of the expert's task; updates the stage's metric."""
        net: ExpertNetwork = self.model
        task = net.task
        image = batch["image"]
        metric = self.metrics[f"m_{stage}"]
        if task == "classification":
            logits = net(image)
            loss = F.cross_entropy(logits, batch["label"])
            metric.update(logits, batch["label"])
        elif task == "presence":
            logits = net(image)
            loss = F.binary_cross_entropy_with_logits(logits, batch["presence"])
            metric.update(logits.sigmoid(), batch["presence"].long())
        elif task == "segmentation":
            logits = net(image)
            loss = F.cross_entropy(logits, batch["semantic"])
            metric.update(logits.argmax(1), batch["semantic"])
        elif task == "detection":
            outputs = net(image)
            targets = centernet_targets(
                batch["boxes"], batch["box_class"], self.num_classes, outputs[0].shape[-1], image.shape[-1]
            )
            loss = centernet_loss(outputs, targets)
            if stage != "train":
                boxes, scores, classes = decode_detections(*outputs, image.shape[-1], batch["box_class"].shape[1])
                metric.update(boxes, scores, classes, batch["boxes"], batch["box_class"])
        else:
            caption = batch["caption"]
            logits = net(image, caption)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), caption[:, 1:].reshape(-1), ignore_index=0)
            if stage != "train":
                generated = net.head.generate(net.features(image), caption.shape[1])
                metric.update(generated, caption)
        return loss, {}

    def _log_metric(self, stage: str) -> None:
        metric = self.metrics[f"m_{stage}"]
        value = metric.compute()
        if isinstance(value, dict):
            for key, v in value.items():
                self.log(f"{stage}/{key}", v)
            value = value[self._MAIN_SCORE[self.model.task]]
        self.log(f"{stage}/metric", value, prog_bar=stage != "train")
        metric.reset()

    def on_train_epoch_end(self) -> None:
        """Log the training metric (classification-style tasks update it every step)."""
        if self.model.task in ("classification", "presence", "segmentation"):
            self._log_metric("train")
        else:
            self.metrics["m_train"].reset()

    def on_validation_epoch_end(self) -> None:
        """Log the validation metric."""
        self._log_metric("val")

    def on_test_epoch_end(self) -> None:
        """Log the test metric."""
        self._log_metric("test")

    def on_fit_end(self) -> None:
        """Write the trained trunk to ``save_path``."""
        if self.save_path is not None:
            save_expert(self.model.trunk, self.save_path)


class _QuestionTask(MoETask):
    """Epoch logging shared by the question-answering tasks: mean and per-template accuracy per stage."""

    def _log_accuracy(self, stage: str) -> None:
        out = self.acc[f"m_{stage}"].compute()
        self.log(f"{stage}/acc", out["mean"], prog_bar=True)
        for name, value in zip(TEMPLATES, out["per_template"], strict=True):
            if not math.isnan(float(value)):
                self.log(f"{stage}/acc_{name}", value)
        self.acc[f"m_{stage}"].reset()

    def _log_epoch(self, stage: str) -> None:
        self._log_accuracy(stage)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training metrics."""
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log the test metrics."""
        self._log_epoch("test")


class MoVATask(_QuestionTask):
    """Train MoVA in stages: ``"router"`` or ``"adapter"``.

    The router stage fits the router's scores to the routing annotations (BCE); the adapter stage trains the
    MoV-Adapter and the question head with the answer cross-entropy, routes taken from the model's
    ``route_mode`` (annotations in MoVA's stage 3, the router's predictions in stage 4).

    Logs ``<stage>/loss``, ``<stage>/acc`` (mean question accuracy over templates), ``<stage>/acc_<template>``,
    ``<stage>/mean_k`` (experts per sample) and, in the router stage, ``<stage>/router_f1`` against the
    annotations. Batches are canvas dicts (``route_target`` needed for the router stage and for
    ``route_mode="annotation"``).

    Args:
        model: a :class:`MoVA`.
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        stage: ``"router"`` or ``"adapter"``.
        pool_dropout: in the router stage, the chance that each expert is dropped from a batch's pool (its
            labels are masked out of the loss), mirroring MoVA's pool shuffling/truncation.

    Example:
        >>> import timm, domain_moe.vision
        >>> task = MoVATask(timm.create_model("moe_mova_tiny"), stage="adapter")
        >>> task.stage
        'adapter'
    """

    def __init__(
        self,
        model: MoVA,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        stage: Literal["router", "adapter"] = "adapter",
        pool_dropout: float = 0.0,
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval)
        if not isinstance(model, MoVA):
            raise TypeError(f"MoVATask: model must be a MoVA, got {type(model).__name__}")
        if stage not in ("router", "adapter"):
            raise ValueError(f"stage must be 'router' or 'adapter', got {stage!r}")
        self.stage = stage
        self.pool_dropout = pool_dropout
        self.acc = nn.ModuleDict({f"m_{s}": QuestionAccuracy(len(TEMPLATES)) for s in ("train", "val", "test")})
        self.router_f1 = nn.ModuleDict(
            {f"m_{s}": MultilabelF1Score(model.num_experts, average="micro") for s in ("train", "val", "test")}
        )

    def compute_loss(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Router BCE or answer cross-entropy; see the class docstring."""
        model: MoVA = self.model
        if self.stage == "router":
            if "route_target" not in batch:
                raise ValueError("the router stage needs batch['route_target'] (routing annotations)")
            base = model.base_tokens(batch).detach()
            decision = model.router(base, batch["context"], batch.get("argument"))
            target = batch["route_target"].float()
            weight = None
            if stage == "train" and self.pool_dropout > 0:
                weight = (torch.rand_like(target[:1]) >= self.pool_dropout).float().expand_as(target)
            loss = ThresholdRouter.bce_loss(decision, target, weight)
            self.router_f1[f"m_{stage}"].update(decision.logits.sigmoid(), target.long())
            self.log(f"{stage}/mean_k", (decision.topk_idx >= 0).sum(-1).float().mean(), batch_size=len(target))
            return loss, {"decision": decision}
        logits = model(batch)
        loss = F.cross_entropy(logits, batch["answer"])
        self.acc[f"m_{stage}"].update(logits.detach(), batch["answer"], batch["context"])
        if model.last_routes is not None:
            self.log(f"{stage}/mean_k", model.last_routes.sum(-1).float().mean(), batch_size=len(logits))
        return loss, {"logits": logits}

    def _log_epoch(self, stage: str) -> None:
        if self.stage == "router":
            self.log(f"{stage}/router_f1", self.router_f1[f"m_{stage}"].compute())
            self.router_f1[f"m_{stage}"].reset()
            return
        self._log_accuracy(stage)


class AstreaTask(_QuestionTask):
    """Train Astrea: ``"prealign"`` (progressive contrastive pre-alignment) or ``"fusion"`` (answers + aux).

    In the pre-alignment stage the experts are aligned one at a time in ``prealign_order``, each for
    ``steps_per_expert`` optimizer steps, against the anchors plus the experts already aligned (which receive no
    gradient, so their projectors stay put). In the fusion stage the loss is the answer cross-entropy plus the
    model's auxiliary losses (allocator balance, MoCo); after every optimizer step the EMA encoder moves and
    the stochastic-residual schedule advances with ``global_step / max_steps``. Logs ``<stage>/loss``,
    ``<stage>/acc``, ``<stage>/acc_<template>``, ``train/moco_acc``, ``train/balance``. With a describer
    (batches carrying ``caption``) the caption and retrieval losses join the fusion loss (``train/caption``,
    ``train/retrieval``) and validation / test also log greedy-caption ``<stage>/caption_token_acc``,
    ``<stage>/caption_exact`` and ``<stage>/caption_bleu``.

    Args:
        model: an :class:`Astrea`.
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        stage: ``"prealign"`` or ``"fusion"``.
        prealign_order: expert indices in alignment order (default: pool order, which the default pool lays out
            as classification, captioning, detection, segmentation: global to dense).
        steps_per_expert: optimizer steps per expert in the pre-alignment stage.
        prealign_temperature: InfoNCE temperature of the alignment.

    Example:
        >>> import timm, domain_moe.vision
        >>> task = AstreaTask(timm.create_model("moe_astrea_tiny"), stage="prealign", steps_per_expert=10)
        >>> task.current_expert()
        (0, [])
    """

    def __init__(
        self,
        model: Astrea,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        stage: Literal["prealign", "fusion"] = "fusion",
        prealign_order: Sequence[int] | None = None,
        steps_per_expert: int = 300,
        prealign_temperature: float = 0.07,
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval)
        if not isinstance(model, Astrea):
            raise TypeError(f"AstreaTask: model must be an Astrea, got {type(model).__name__}")
        if stage not in ("prealign", "fusion"):
            raise ValueError(f"stage must be 'prealign' or 'fusion', got {stage!r}")
        order = list(range(model.num_experts)) if prealign_order is None else list(prealign_order)
        if sorted(order) != list(range(model.num_experts)):
            raise ValueError(f"prealign_order must be a permutation of 0..{model.num_experts - 1}, got {order}")
        self.stage = stage
        self.prealign_order = order
        self.steps_per_expert = steps_per_expert
        self.prealign_temperature = prealign_temperature
        self.acc = nn.ModuleDict({f"m_{s}": QuestionAccuracy(len(TEMPLATES)) for s in ("train", "val", "test")})
        self.captions = nn.ModuleDict({f"m_{s}": CaptionScores() for s in ("val", "test")})

    def current_expert(self) -> tuple[int, list[int]]:
        """The expert being aligned at this step and those already aligned."""
        step = self.global_step if self._trainer is not None else 0
        position = min(step // max(self.steps_per_expert, 1), len(self.prealign_order) - 1)
        return self.prealign_order[position], self.prealign_order[:position]

    def compute_loss(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Alignment loss, or answer cross-entropy plus the auxiliary losses in training."""
        model: Astrea = self.model
        if self.stage == "prealign":
            k, aligned = self.current_expert()
            loss = model.prealign_loss(k, batch, aligned, self.prealign_temperature)
            return loss, {}
        logits = model(batch)
        loss = F.cross_entropy(logits, batch["answer"])
        self.acc[f"m_{stage}"].update(logits.detach(), batch["answer"], batch["context"])
        if stage == "train" and model.last_aux:
            for key, value in model.last_aux.items():
                self.log(f"train/{key}", value.detach(), batch_size=len(logits))
            loss = loss + model.aux_loss()
        if stage != "train" and model.describer is not None and "caption" in batch:
            caption = batch["caption"]
            self.captions[f"m_{stage}"].update(model.describe(batch, caption.shape[1])["caption"], caption)
        return loss, {"logits": logits}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """EMA step and stochastic-residual schedule."""
        if self.stage != "fusion":
            return
        model: Astrea = self.model
        model.momentum_update()
        if model.drop is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            model.drop.set_progress(self.global_step / self.trainer.max_steps)

    def _log_epoch(self, stage: str) -> None:
        if self.stage == "prealign":
            return
        self._log_accuracy(stage)
        metric = self.captions[f"m_{stage}"] if stage != "train" else None
        if metric is not None and metric.update_called:
            for key, value in metric.compute().items():
                self.log(f"{stage}/caption_{key}", value)
            metric.reset()
