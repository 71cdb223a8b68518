"""Lightning tasks of Knowledge Concentration: one specialist per vertical, then the concentrated student."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from domain_moe.distill.models.teachers import TeacherEnsemble
from domain_moe.distill.schedule import pace_quantile, self_paced_weights
from domain_moe.distill.targets import concentration_loss, concentration_targets
from domain_moe.distill.verticals import check_verticals, class_to_vertical
from domain_moe.training.task import MoETask

__all__ = ["ConcentrationTask", "SpecialistTask", "hard_label_loss"]

LOSSES = ("bce", "ce")


def hard_label_loss(logits: Tensor, labels: Tensor, loss: str = "bce") -> Tensor:
    """Ground-truth loss, averaged over the batch: sigmoid or softmax cross-entropy.

    ``"bce"`` is the sigmoid cross-entropy on one-hot labels summed over classes (Gao et al., 2017, §3.1).

    Shapes:
        - logits: ``[B, N]``
        - labels: ``[B]``
    """
    if loss == "bce":
        return concentration_loss(logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype))
    if loss == "ce":
        return F.cross_entropy(logits, labels)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def _param_groups(model: nn.Module, no_decay: Sequence[nn.Parameter]) -> list[dict[str, Any]]:
    skip = {id(p) for p in no_decay}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in skip]}]
    if skip:
        groups.append({"params": list(no_decay), "weight_decay": 0.0})
    return groups


class SpecialistTask(MoETask):
    """Train one specialist on its vertical's classes (Gao et al., arXiv 1711.07607, 2017, §3.1).

    The model maps a batch to ``[B, N_v]`` logits and the batches carry local labels (``0..N_v-1``, as
    :class:`~domain_moe.distill.data.VerticalDataModule` gives with ``vertical=v``). Loss: sigmoid cross-entropy
    (the paper's, ``"bce"``) or softmax cross-entropy (``"ce"``). Logs ``<stage>/acc``.

    Args:
        model: the specialist network.
        loss: ``"bce"`` or ``"ce"``.
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        scheduler_interval: ``"epoch"`` or ``"step"``.

    Example:
        >>> import torch
        >>> task = SpecialistTask(torch.nn.Linear(4, 3))
        >>> loss, out = task.compute_loss((torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])), "train")
        >>> out["logits"].shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Literal["bce", "ce"] = "bce",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval, aux_weight=0.0)
        _check_loss(loss)
        self.loss = loss

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Hard-label loss and accuracy of one batch."""
        x, y = batch[0], batch[1]
        logits = self.model(x)
        if logits.dim() != 2 or int(y.max()) >= logits.shape[1]:
            raise ValueError(
                f"the specialist must output [B, N_v] logits covering the local labels (max {int(y.max())}), "
                f"got {tuple(logits.shape)}"
            )
        loss = hard_label_loss(logits, y, self.loss)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{stage}/acc", acc, prog_bar=stage != "train", batch_size=y.shape[0])
        return loss, {"logits": logits}


class ConcentrationTask(MoETask):
    """Concentrate frozen specialists into one student (Gao et al., arXiv 1711.07607, 2017).

    For a sample of class ``y`` in vertical ``v``, the teacher of ``v`` gives soft targets (its top-K sigmoid
    outputs on ``v``, 0 elsewhere, hard label mixed in: :func:`~domain_moe.distill.targets.concentration_targets`)
    and the student is trained with sigmoid cross-entropy on them over all ``N`` classes, plus ``gt_weight``
    times the hard-label loss. Targets come from the training batch when the DataModule cached them
    (``(x, y, soft)`` batches), else from ``teachers``; with neither, the task trains on hard labels only
    (the generalist baseline, ``loss`` picks sigmoid or softmax cross-entropy). Teachers are frozen
    (:class:`~domain_moe.distill.models.TeacherEnsemble`) and left out of the optimiser; the student's
    self-paced scales are left out of weight decay. ``pace_schedule="loss_quantile"`` adds a per-vertical
    sample curriculum (:func:`~domain_moe.distill.schedule.self_paced_weights` with
    :func:`~domain_moe.distill.schedule.pace_quantile`).

    Logs ``<stage>/acc``; on validation and test per vertical ``<stage>/acc/<name>`` (argmax over all classes)
    and ``<stage>/acc_within/<name>`` (argmax inside the vertical: the specialists' setting); on test with
    teachers ``test/teacher_acc`` (specialists with the true vertical given); in training ``pace/<name>``
    (the vertical's scale) and ``train/admitted`` (curriculum).

    The teachers' weights are part of the state dict, not of the hyperparameters: restore with
    ``ConcentrationTask.load_from_checkpoint(path, model=<student>, teachers=<TeacherEnsemble>)``, both built with
    the training arguments.

    Args:
        model: the student (logits ``[B, N]``; a :class:`~domain_moe.distill.models.ConcentrationStudent` or any
            module with ``verticals`` given here).
        teachers: the frozen specialists, or ``None`` (cached targets or the generalist).
        verticals: the classes of each vertical (``None``: ``model.verticals``).
        vertical_names: one name per vertical for logging (``None``: ``v0, v1, ...``).
        top_k: teacher classes kept per sample (``None``: the whole vertical).
        hard_mix: ``"max"``, ``"none"`` or the weight of the hard label in the targets.
        gt_weight: weight of an extra hard-label loss (``>= 0``).
        loss: hard-label loss of the generalist: ``"bce"`` or ``"ce"``.
        kd_loss: distillation loss: ``"bce"`` (the paper's sigmoid cross-entropy) or ``"softmax"`` (cross-entropy
            with the targets normalised to a distribution; see
            :func:`~domain_moe.distill.targets.concentration_loss`).
        pace_schedule: ``"none"`` or ``"loss_quantile"``.
        pace_q0: admitted quantile at the start (``"loss_quantile"``).
        pace_rho: fraction of training after which all samples are admitted.
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        scheduler_interval: ``"epoch"`` or ``"step"``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from domain_moe.distill.models import TeacherEnsemble
        >>> verticals = [[0, 2], [1]]
        >>> teachers = TeacherEnsemble([nn.Linear(4, 2), nn.Linear(4, 1)], verticals)
        >>> task = ConcentrationTask(nn.Linear(4, 3), teachers, verticals=verticals)
        >>> loss, out = task.compute_loss((torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])), "train")
        >>> out["targets"].shape
        torch.Size([6, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        teachers: TeacherEnsemble | None = None,
        verticals: Sequence[Sequence[int]] | None = None,
        vertical_names: Sequence[str] | None = None,
        top_k: int | None = None,
        hard_mix: str | float = "max",
        gt_weight: float = 0.0,
        loss: Literal["bce", "ce"] = "bce",
        kd_loss: Literal["bce", "softmax"] = "bce",
        pace_schedule: Literal["none", "loss_quantile"] = "none",
        pace_q0: float = 0.5,
        pace_rho: float = 0.5,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
    ) -> None:
        with warnings.catch_warnings():
            # The base class records the constructor arguments before this class can exclude the teachers
            # (saved with the state dict, not as hyperparameters); the call below replaces that record.
            warnings.filterwarnings("ignore", message="Attribute 'teachers' is an instance of `nn.Module`")
            super().__init__(model, optimizer, scheduler, scheduler_interval, aux_weight=0.0)
        self.save_hyperparameters(ignore=["model", "teachers", "optimizer", "scheduler"])
        if teachers is not None and not isinstance(teachers, TeacherEnsemble):
            raise TypeError(f"teachers must be a TeacherEnsemble or None, got {type(teachers).__name__}")
        if verticals is None:
            verticals = getattr(model, "verticals", None)
            if verticals is None:
                raise ValueError("verticals must be given when the model has no verticals attribute")
        self.verticals = check_verticals(verticals)
        if teachers is not None and teachers.verticals != self.verticals:
            raise ValueError(f"teachers.verticals must equal the student's {self.verticals}, got {teachers.verticals}")
        names = list(vertical_names) if vertical_names is not None else [f"v{i}" for i in range(len(self.verticals))]
        if len(names) != len(self.verticals):
            raise ValueError(f"vertical_names must hold {len(self.verticals)} names, got {names}")
        _check_loss(loss)
        if kd_loss not in ("bce", "softmax"):
            raise ValueError(f"kd_loss must be 'bce' or 'softmax', got {kd_loss!r}")
        if pace_schedule not in ("none", "loss_quantile"):
            raise ValueError(f"pace_schedule must be 'none' or 'loss_quantile', got {pace_schedule!r}")
        if isinstance(gt_weight, bool) or not isinstance(gt_weight, (int, float)) or gt_weight < 0:
            raise ValueError(f"gt_weight must be a number >= 0, got {gt_weight!r}")
        pace_quantile(0.0, pace_q0, pace_rho)  # validates q0 and rho
        self.teachers = teachers
        self.vertical_names = names
        self.top_k = top_k
        self.hard_mix = hard_mix
        self.gt_weight = float(gt_weight)
        self.loss = loss
        self.kd_loss = kd_loss
        self.pace_schedule = pace_schedule
        self.pace_q0 = pace_q0
        self.pace_rho = pace_rho
        self.register_buffer("class_to_vertical", class_to_vertical(self.verticals), persistent=False)

    # -- training -------------------------------------------------------------------------------------------
    def progress(self) -> float:
        """Fraction of the planned optimizer steps done (1 outside a Trainer)."""
        try:
            trainer = self.trainer
        except RuntimeError:
            return 1.0
        total = trainer.estimated_stepping_batches
        if not total or total == float("inf"):
            return 1.0
        return min(1.0, trainer.global_step / float(total))

    def soft_targets(self, batch: Any) -> Tensor | None:
        """Teacher probabilities ``[B, N]`` (cached in the batch or computed by the teachers), or ``None``."""
        if len(batch) > 2:
            return batch[2]
        if self.teachers is None:
            return None
        x, y = batch[0], batch[1]
        return self.teachers(x, self.class_to_vertical[y])

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """KD (or hard-label) loss of one batch, with metrics on validation and test."""
        x, y = batch[0], batch[1]
        logits = self.model(x)
        if logits.dim() != 2 or logits.shape[1] != self.class_to_vertical.shape[0]:
            raise ValueError(
                f"the student must output [B, N={self.class_to_vertical.shape[0]}] logits, got {tuple(logits.shape)}"
            )
        out: dict[str, Any] = {"logits": logits}
        probs = self.soft_targets(batch) if stage == "train" or self.teachers is not None else None
        if probs is None:
            loss = hard_label_loss(logits, y, self.loss)
        else:
            targets = concentration_targets(probs, y, self.class_to_vertical, self.top_k, self.hard_mix)
            per_sample = concentration_loss(logits, targets, reduction="none", kind=self.kd_loss)
            if self.pace_schedule == "loss_quantile" and stage == "train":
                q = pace_quantile(self.progress(), self.pace_q0, self.pace_rho)
                w = self_paced_weights(per_sample, self.class_to_vertical[y], q)
                loss = (w * per_sample).sum() / w.sum().clamp_min(1.0)
                self.log("train/admitted", w.mean(), batch_size=y.shape[0])
            else:
                loss = per_sample.mean()
            if self.gt_weight > 0:
                hard = "bce" if self.kd_loss == "bce" else "ce"
                loss = loss + self.gt_weight * hard_label_loss(logits, y, hard)
            out["targets"] = targets
        if stage == "train":
            self._log_pace()
        else:
            self._log_metrics(logits, y, stage)
            if stage == "test" and self.teachers is not None:
                oracle = self.teachers(x, self.class_to_vertical[y]).argmax(1)
                self.log("test/teacher_acc", (oracle == y).float().mean(), batch_size=y.shape[0])
        return loss, out

    def _log_pace(self) -> None:
        pace = getattr(self.model, "pace", None)
        if pace is None or getattr(pace, "gamma", None) is None:
            return
        for name, value in zip(self.vertical_names, pace.vertical_gamma().tolist(), strict=True):
            self.log(f"pace/{name}", value, on_step=True, on_epoch=False)

    def _log_metrics(self, logits: Tensor, y: Tensor, stage: str) -> None:
        pred = logits.argmax(1)
        self.log(f"{stage}/acc", (pred == y).float().mean(), prog_bar=True, batch_size=y.shape[0])
        v_true = self.class_to_vertical[y]
        same = self.class_to_vertical.unsqueeze(0) == v_true.unsqueeze(1)
        within = logits.masked_fill(~same, float("-inf")).argmax(1)
        for v, name in enumerate(self.vertical_names):
            mask = v_true == v
            count = int(mask.sum())
            if count == 0:
                continue
            self.log(f"{stage}/acc/{name}", (pred[mask] == y[mask]).float().mean(), batch_size=count)
            self.log(f"{stage}/acc_within/{name}", (within[mask] == y[mask]).float().mean(), batch_size=count)

    def configure_optimizers(self) -> Any:
        """The optimizer over the student only (never the teachers); scales without weight decay."""
        no_decay = getattr(self.model, "pace_parameters", lambda: [])()
        optimizer = self.optimizer(_param_groups(self.model, no_decay))
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = getattr(scheduler, "monitor", "val/loss")
        return {"optimizer": optimizer, "lr_scheduler": config}
