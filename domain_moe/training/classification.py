"""Multiclass classification with any MoE model: cross-entropy and accuracy."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from domain_moe.training.task import MoETask

__all__ = ["ClassificationTask"]


class ClassificationTask(MoETask):
    """Cross-entropy on the model's logits plus the MoE auxiliary losses; accuracy per stage.

    Batches are ``(x, y)`` pairs. Logs ``train/acc`` (per step and epoch), ``val/acc`` and ``test/acc``
    (per epoch) next to the losses of :class:`MoETask`. Restore a checkpoint with
    ``ClassificationTask.load_from_checkpoint(path, model=MoEClassifier(...))``.

    Args:
        model: a network mapping ``x`` to class logits ``[B, C]``.
        num_classes: ``C``; ``None`` reads ``model.num_classes``.
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        scheduler_interval: step the scheduler every ``"epoch"`` or every ``"step"``.
        aux_weight: factor on the summed auxiliary losses.
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.

    Shapes:
        - batch: ``(x [B, *], y [B])`` with integer labels in ``[0, C)``
        - model output: ``[B, C]``

    Example:
        >>> import torch
        >>> from domain_moe.training.classifier import MoEClassifier
        >>> task = ClassificationTask(MoEClassifier(num_features=4, num_classes=3, d_model=8, d_hidden=8))
        >>> loss, out = task.compute_loss((torch.randn(6, 4), torch.randint(0, 3, (6,))), "val")
        >>> out["logits"].shape
        torch.Size([6, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        aux_weight: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            model,
            optimizer=optimizer,
            scheduler=scheduler,
            scheduler_interval=scheduler_interval,
            aux_weight=aux_weight,
        )
        if num_classes is None:
            num_classes = getattr(model, "num_classes", None)
            if num_classes is None:
                raise ValueError(
                    "ClassificationTask: num_classes is None and the model has no `num_classes` attribute; "
                    "pass num_classes"
                )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"ClassificationTask: num_classes must be an int >= 2, got {num_classes!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"ClassificationTask: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Cross-entropy of a ``(x, y)`` batch; updates and logs ``<stage>/acc``.

        Raises:
            ValueError: if the batch is not an ``(x, y)`` pair or the logits are not ``[B, num_classes]``.
        """
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            raise ValueError(f"ClassificationTask: a batch must be an (x, y) pair, got {type(batch).__name__}")
        x, y = batch
        logits = self(x)
        if logits.dim() != 2 or logits.shape != (y.shape[0], self.num_classes):
            raise ValueError(
                f"ClassificationTask: the model must return logits [B={y.shape[0]}, num_classes={self.num_classes}], "
                f"got {tuple(logits.shape)}"
            )
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        metric = {"train": self.train_acc, "val": self.val_acc, "test": self.test_acc}.get(stage)
        if metric is not None:
            metric(logits.detach(), y)
            self.log(
                f"{stage}/acc",
                metric,
                on_step=stage == "train",
                on_epoch=True,
                prog_bar=stage != "train",
                batch_size=y.shape[0],
            )
        return loss, {"logits": logits, "target": y}

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Class probabilities for ``x`` or an ``(x, y)`` batch.

        Shapes:
            - output: ``[B, C]``
        """
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(-1)
