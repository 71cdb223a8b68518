"""``MultiTaskTask``: one Lightning task for every multi-task recommender (losses, weights, metrics, diagnostics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanSquaredError
from torchmetrics.classification import BinaryAUROC

from domain_moe.recsys.data import TASK_TYPES, RecBatch
from domain_moe.recsys.diagnostics import ExpertHealth, LayerHealth, plot_expert_health
from domain_moe.recsys.metrics import GroupAUC
from domain_moe.training.task import MoETask

__all__ = ["MultiTaskTask", "multitask_loss"]


def multitask_loss(
    logits: Tensor,
    labels: Tensor,
    task_types: Sequence[str],
    weights: Tensor,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """PLE's joint loss ``sum_k w_k L_k`` with sample-space masks: ``L_k = sum_i d_ki loss_ki / sum_i d_ki``.

    Binary tasks use binary cross-entropy on logits, regression tasks the squared error (Tang et al.,
    RecSys 2020, §4.3). A task with no row in its sample space contributes 0.

    Args:
        logits: model outputs.
        labels: targets.
        task_types: ``"binary"`` or ``"regression"`` per task.
        weights: per-task weights ``w_k``.
        mask: boolean sample-space indicators ``delta`` (``None``: every row counts).

    Returns:
        ``(total loss, per-task losses [T])``.

    Shapes:
        - logits, labels, mask: ``[B, T]``
        - weights: ``[T]``
    """
    if labels.shape != logits.shape:
        raise ValueError(f"labels must have the logits' shape [B, T]={tuple(logits.shape)}, got {tuple(labels.shape)}")
    labels = labels.to(logits.dtype)
    binary = torch.tensor([t == "binary" for t in task_types], device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    mse = (logits - labels).square()
    per_row = torch.where(binary, bce, mse)
    if mask is None:
        per_task = per_row.mean(0)
    else:
        m = mask.to(per_row.dtype)
        per_task = (per_row * m).sum(0) / m.sum(0).clamp_min(1.0)
    return (per_task * weights.to(per_task)).sum(), per_task


class MultiTaskTask(MoETask):
    """Training, metrics and expert-health diagnostics for any multi-task model returning logits ``[B, T]``.

    Loss: :func:`multitask_loss` with weights ``w_k(epoch) = task_weights[k] * task_weight_decay[k] ** epoch``
    (PLE's dynamic weights). Logged per task ``<stage>/<task>/loss`` and, on validation and test,
    ``<stage>/<task>/auc`` and ``<stage>/<task>/gauc`` (binary tasks; GAUC when the batches carry users) or
    ``<stage>/<task>/mse`` (regression), plus ``<stage>/auc_mean``. During validation the expert-health
    diagnostics of :mod:`domain_moe.recsys.diagnostics` are accumulated and logged as ``diag/<layer>/<stat>``
    and ``diag/<task>/own_mass``; heatmaps go to ``<logger dir>/expert_health/epoch<NNN>.png``.

    Args:
        model: a multi-task model (``model(dense, sparse) -> [B, T]`` logits, with ``task_names``).
        task_names: the tasks (linked from the DataModule; must match the model's ``task_names``).
        task_types: ``"binary"`` or ``"regression"`` per task (linked from the DataModule; default binary).
        task_weights: initial weight per task name (default 1).
        task_weight_decay: per-epoch factor ``gamma_k`` per task name (default 1).
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        aux_weight: factor on the MoE layers' auxiliary losses (dense gates have none by default).
        diagnostics: compute expert-health diagnostics during validation.
        plot_diagnostics: save the heatmaps when a logger directory exists.

    Example:
        >>> from domain_moe.recsys.models import MMoE
        >>> model = MMoE(["a", "b"], num_dense=4, num_experts=2, d_hidden=4)
        >>> task = MultiTaskTask(model, task_types=["binary", "regression"])
        >>> batch = RecBatch(labels=torch.tensor([[1.0, 0.5], [0.0, 2.0]]), dense=torch.randn(2, 4))
        >>> loss, out = task.compute_loss(batch, "train")
        >>> out["per_task"].shape
        torch.Size([2])
    """

    def __init__(
        self,
        model: nn.Module,
        task_names: Sequence[str] | None = None,
        task_types: Sequence[str] | None = None,
        task_weights: Mapping[str, float] | None = None,
        task_weight_decay: Mapping[str, float] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        aux_weight: float = 1.0,
        diagnostics: bool = True,
        plot_diagnostics: bool = True,
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval, aux_weight)
        model_tasks = getattr(model, "task_names", None)
        names = list(task_names) if task_names is not None else (list(model_tasks) if model_tasks else None)
        if not names:
            raise ValueError("MultiTaskTask: task_names is required when the model has no task_names attribute")
        if model_tasks is not None and list(model_tasks) != names:
            raise ValueError(
                f"MultiTaskTask: task_names {names} do not match the model's task_names {list(model_tasks)}"
            )
        types = list(task_types) if task_types is not None else ["binary"] * len(names)
        if len(types) != len(names):
            raise ValueError(f"MultiTaskTask: task_types needs one entry per task ({len(names)}), got {types}")
        bad = [t for t in types if t not in TASK_TYPES]
        if bad:
            raise ValueError(f"MultiTaskTask: task_types must be in {TASK_TYPES}, got {bad}")
        for arg, mapping in (("task_weights", task_weights), ("task_weight_decay", task_weight_decay)):
            unknown = sorted(set(mapping or {}) - set(names))
            if unknown:
                raise ValueError(f"MultiTaskTask: {arg} names unknown tasks {unknown}; tasks are {names}")
        self.task_names = names
        self.task_types = types
        self.register_buffer("base_weights", torch.tensor([float((task_weights or {}).get(n, 1.0)) for n in names]))
        decay = [float((task_weight_decay or {}).get(n, 1.0)) for n in names]
        self.register_buffer("weight_decay", torch.tensor(decay))
        self.diagnostics = diagnostics
        self.plot_diagnostics = plot_diagnostics
        metrics: dict[str, nn.Module] = {}
        for stage in ("val", "test"):
            for name, kind in zip(names, types):
                if kind == "binary":
                    metrics[f"{stage}_{name}_auc"] = BinaryAUROC()
                    metrics[f"{stage}_{name}_gauc"] = GroupAUC()
                else:
                    metrics[f"{stage}_{name}_mse"] = MeanSquaredError()
        self.metrics = nn.ModuleDict(metrics)
        self._health: ExpertHealth | None = None
        self.last_health: dict[str, LayerHealth] | None = None
        self._has_users = False

    def task_weight_values(self) -> Tensor:
        """Current weights ``w_k = w_k0 * gamma_k ** epoch``."""
        epoch = self.current_epoch if self._trainer is not None else 0
        return self.base_weights * self.weight_decay.pow(epoch)

    def compute_loss(self, batch: RecBatch, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Joint loss of one batch; updates the stage's metrics on validation and test."""
        if not isinstance(batch, RecBatch):
            raise TypeError(f"MultiTaskTask expects RecBatch batches, got {type(batch).__name__}")
        logits = self.model(batch.dense, batch.sparse)
        if logits.dim() != 2 or logits.shape[1] != len(self.task_names):
            raise ValueError(f"the model must return logits [B, T={len(self.task_names)}], got {tuple(logits.shape)}")
        loss, per_task = multitask_loss(logits, batch.labels, self.task_types, self.task_weight_values(), batch.mask)
        if self._trainer is not None:
            for name, value in zip(self.task_names, per_task):
                self.log(f"{stage}/{name}/loss", value, batch_size=len(batch), on_step=False, on_epoch=True)
        if stage in ("val", "test"):
            self._update_metrics(stage, logits.detach(), batch)
        return loss, {"logits": logits, "per_task": per_task.detach()}

    def _update_metrics(self, stage: str, logits: Tensor, batch: RecBatch) -> None:
        for t, (name, kind) in enumerate(zip(self.task_names, self.task_types)):
            keep = batch.mask[:, t] if batch.mask is not None else None
            pred, target = logits[:, t], batch.labels[:, t]
            user = batch.user
            if keep is not None:
                pred, target = pred[keep], target[keep]
                user = None if user is None else user[keep]
            if pred.numel() == 0:
                continue
            if kind == "binary":
                self.metrics[f"{stage}_{name}_auc"].update(pred, target.long())
                if user is not None:
                    self._has_users = True
                    self.metrics[f"{stage}_{name}_gauc"].update(pred, target, user)
            else:
                self.metrics[f"{stage}_{name}_mse"].update(pred, target)

    def _log_metrics(self, stage: str) -> None:
        aucs = []
        for name, kind in zip(self.task_names, self.task_types):
            keys = ["auc", "gauc"] if kind == "binary" else ["mse"]
            for key in keys:
                metric = self.metrics[f"{stage}_{name}_{key}"]
                if metric.update_count == 0:
                    continue
                value = metric.compute()
                self.log(f"{stage}/{name}/{key}", value.float())
                if key == "auc":
                    aucs.append(value.float())
                metric.reset()
        if aucs:
            self.log(f"{stage}/auc_mean", torch.stack(aucs).mean())

    def on_validation_epoch_start(self) -> None:
        """Start a fresh diagnostics accumulator."""
        self._health = ExpertHealth(self.model) if self.diagnostics else None

    def validation_step(self, batch: RecBatch, batch_idx: int) -> Tensor:
        """Loss and metrics, and the expert-health statistics of this batch."""
        loss = super().validation_step(batch, batch_idx)
        if self._health is not None:
            self._health.update()
        return loss

    def on_validation_epoch_end(self) -> None:
        """Log metrics and diagnostics; save the heatmaps."""
        self._log_metrics("val")
        if self._health is None:
            return
        health = self._health.compute()
        self._health = None
        if not health:
            return
        self.last_health = health
        for layer, h in health.items():
            for key, value in h.summary.items():
                self.log(f"diag/{layer}/{key}", float(value))
        last = list(health.values())[-1]
        for gate, own in zip(last.gate_names, last.own_mass.tolist()):
            if own == own:  # not NaN: the gate has own experts
                self.log(f"diag/{gate}/own_mass", float(own))
        log_dir = getattr(self.trainer, "log_dir", None) if self.trainer.logger is not None else None
        if self.plot_diagnostics and log_dir and not self.trainer.sanity_checking:
            path = Path(log_dir) / "expert_health" / f"epoch{self.current_epoch:03d}.png"
            plot_expert_health(health, path, title=f"{type(self.model).__name__}, epoch {self.current_epoch}")

    def on_test_epoch_end(self) -> None:
        """Log test metrics."""
        self._log_metrics("test")
