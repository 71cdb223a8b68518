"""Lightning tasks for full-batch node classification: plain baselines, Mowst (alternating turns) and Mowst*."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy, multiclass_auroc

from domain_moe.graph.checks import check_graph
from domain_moe.graph.models.mowst import Mowst, MowstOutput
from domain_moe.training.task import MoETask

__all__ = ["MowstStarTask", "MowstTask", "NodeClassificationTask", "node_metric"]


def node_metric(proba: Tensor, y: Tensor, metric: str) -> Tensor:
    """Accuracy or ROC-AUC of class probabilities (binary ROC-AUC on the positive class).

    Shapes:
        proba: ``[N, Q]``, y: ``[N]`` → scalar.
    """
    num_classes = proba.size(-1)
    if metric == "accuracy":
        return multiclass_accuracy(proba, y, num_classes=num_classes, average="micro")
    if metric == "auroc":
        if num_classes == 2:
            return binary_auroc(proba[:, 1], y)
        return multiclass_auroc(proba, y, num_classes=num_classes)
    raise ValueError(f"node_metric: metric must be 'accuracy' or 'auroc', got {metric!r}")


class NodeClassificationTask(MoETask):
    """Full-batch node classification with any model called as ``model(x, edge_index)`` (MLP, GNN baselines).

    Each step sees the whole graph; the loss and the metric use the stage's mask (``train_mask``,
    ``val_mask``, ``test_mask``). Logs ``<stage>/loss`` and ``<stage>/metric`` (plus ``<stage>/acc`` or
    ``<stage>/auroc``); monitor ``val/metric`` (higher is better) for checkpointing.

    Args:
        model: the network, returning logits ``[N, Q]``.
        optimizer: ``params -> Optimizer``.
        metric: ``"accuracy"`` or ``"auroc"`` (linked from the DataModule by the CLI).
        num_classes: number of classes (linked from the DataModule; informational).

    Example:
        >>> from domain_moe.graph.models import GNN
        >>> task = NodeClassificationTask(GNN(num_features=4, num_classes=3))
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        metric: Literal["accuracy", "auroc"] = "accuracy",
        num_classes: int | None = None,
    ) -> None:
        super().__init__(model, optimizer=optimizer, aux_weight=0.0)
        if metric not in ("accuracy", "auroc"):
            raise ValueError(f"{type(self).__name__}: metric must be 'accuracy' or 'auroc', got {metric!r}")
        self.metric = metric
        self.num_classes = num_classes

    @staticmethod
    def _mask(batch: Any, stage: str) -> Tensor:
        key = f"{stage}_mask"
        mask = getattr(batch, key, None)
        if mask is None:
            raise ValueError(f"the graph has no {key}: expected bool [N] masks train_mask/val_mask/test_mask")
        return mask

    def log_metrics(self, stage: str, loss: Tensor, value: Tensor, num_nodes: int) -> None:
        """Log ``<stage>/loss``, ``<stage>/metric`` and ``<stage>/<acc|auroc>``."""
        short = "acc" if self.metric == "accuracy" else "auroc"
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=num_nodes, on_step=on_step, on_epoch=True)
        self.log(f"{stage}/metric", value, prog_bar=stage == "val", batch_size=num_nodes, on_epoch=True)
        self.log(f"{stage}/{short}", value, batch_size=num_nodes, on_epoch=True)

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Cross-entropy and metric on the stage's nodes."""
        check_graph(batch.x, batch.edge_index, batch.y, where=type(self).__name__)
        mask = self._mask(batch, stage)
        logits = self.model(batch.x, batch.edge_index)
        loss = F.cross_entropy(logits[mask], batch.y[mask])
        value = node_metric(logits[mask].detach().softmax(-1), batch.y[mask], self.metric)
        self.log_metrics(stage, loss, value, int(mask.sum()))
        return loss, {"logits": logits}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss on the training nodes."""
        loss, _ = self.compute_loss(batch, "train")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss and metric on the validation nodes."""
        loss, _ = self.compute_loss(batch, "val")
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Loss and metric on the test nodes."""
        loss, _ = self.compute_loss(batch, "test")
        return loss

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Class probabilities of every node."""
        return self.model(batch.x, batch.edge_index).softmax(-1)


Phase = Literal["pretrain_strong", "pretrain_weak", "weak", "strong", "joint"]


class MowstTask(NodeClassificationTask):
    """Mowst training with manual optimisation: optional pre-training, then alternating weak/strong turns.

    One full-batch step per epoch. The schedule by epoch: ``pretrain_strong_epochs`` of strong-expert
    cross-entropy, ``pretrain_weak_epochs`` of weak-expert cross-entropy, then cycles of
    ``weak_turn_epochs`` (optimiser 1 over weak expert + gate, strong expert frozen in ``eval()``) and
    ``strong_turn_epochs`` (optimiser 2 over the strong expert, weak expert and gate frozen in ``eval()``,
    so their BatchNorm statistics stay put) on the Mowst loss. With a ``mowst_star`` model the turns are
    replaced by joint steps of one optimiser over everything on the Mowst* loss.

    Evaluation: ``eval_mode="expected"`` scores the mixture ``C p + (1-C) p'``; ``"sample"`` scores the
    expectation of Algorithm 1's sampled prediction, computed exactly (``mean_v C_v·1[weak right] +
    (1-C_v)·1[strong right]``) rather than from noisy draws; for ROC-AUC the mixture is used. Also logs
    ``<stage>/mean_confidence`` (the expected share routed to the weak expert) and each expert's metric.
    During pre-training the validation metric is logged as ``val/pretrain_metric`` and ``val/metric`` is pinned
    to -1, so a checkpoint monitoring ``val/metric`` (max) is always a trained mixture.

    Args:
        model: a :class:`~domain_moe.graph.models.Mowst`.
        optimizer: ``params -> Optimizer``, used for every parameter group.
        metric: ``"accuracy"`` or ``"auroc"`` (linked from the DataModule by the CLI).
        num_classes: number of classes (linked; informational).
        pretrain_strong_epochs: epochs of strong-expert pre-training (the official code's ``pretrain_model2``).
        pretrain_weak_epochs: epochs of weak-expert pre-training, after the strong one.
        weak_turn_epochs: epochs per weak turn.
        strong_turn_epochs: epochs per strong turn.
        eval_mode: ``"expected"`` or ``"sample"``.

    Example:
        >>> from domain_moe.graph.models import Mowst
        >>> task = MowstTask(Mowst(num_features=4, num_classes=3), pretrain_strong_epochs=2)
        >>> task.phase(0), task.phase(2)
        ('pretrain_strong', 'weak')
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        metric: Literal["accuracy", "auroc"] = "accuracy",
        num_classes: int | None = None,
        pretrain_strong_epochs: int = 0,
        pretrain_weak_epochs: int = 0,
        weak_turn_epochs: int = 50,
        strong_turn_epochs: int = 50,
        eval_mode: Literal["expected", "sample"] = "expected",
    ) -> None:
        super().__init__(model, optimizer=optimizer, metric=metric, num_classes=num_classes)
        if not isinstance(model, Mowst):
            raise TypeError(f"{type(self).__name__}: model must be a Mowst, got {type(model).__name__}")
        for name, value in (
            ("pretrain_strong_epochs", pretrain_strong_epochs),
            ("pretrain_weak_epochs", pretrain_weak_epochs),
        ):
            if value < 0:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {value!r}")
        if weak_turn_epochs < 1 or strong_turn_epochs < 1:
            raise ValueError(
                f"{type(self).__name__}: turn epochs must be >= 1, got weak={weak_turn_epochs}, "
                f"strong={strong_turn_epochs}"
            )
        if eval_mode not in ("expected", "sample"):
            raise ValueError(f"{type(self).__name__}: eval_mode must be 'expected' or 'sample', got {eval_mode!r}")
        self.automatic_optimization = False
        self.pretrain_strong_epochs = pretrain_strong_epochs
        self.pretrain_weak_epochs = pretrain_weak_epochs
        self.weak_turn_epochs = weak_turn_epochs
        self.strong_turn_epochs = strong_turn_epochs
        self.eval_mode = eval_mode

    @property
    def mowst(self) -> Mowst:
        """The injected model, typed."""
        assert isinstance(self.model, Mowst)
        return self.model

    def phase(self, epoch: int) -> Phase:
        """What the step of ``epoch`` trains."""
        if epoch < self.pretrain_strong_epochs:
            return "pretrain_strong"
        epoch -= self.pretrain_strong_epochs
        if epoch < self.pretrain_weak_epochs:
            return "pretrain_weak"
        if self.mowst.variant == "mowst_star":
            return "joint"
        epoch -= self.pretrain_weak_epochs
        return "weak" if epoch % (self.weak_turn_epochs + self.strong_turn_epochs) < self.weak_turn_epochs else "strong"

    def configure_optimizers(self) -> Any:
        """Mowst: [weak + gate, strong]; Mowst*: [weak + gate, strong, all] (the first two for pre-training)."""
        m = self.mowst
        optimizers = [self.optimizer(m.weak_parameters() + m.gate_parameters()), self.optimizer(m.strong_parameters())]
        if m.variant == "mowst_star":
            optimizers.append(self.optimizer(list(m.parameters())))
        return optimizers

    def set_modes(self, phase: Phase) -> None:
        """Put the trained side of ``phase`` in ``train()`` and the frozen side in ``eval()``.

        Set explicitly every step: Lightning restores each submodule's own mode after validation, so a side
        frozen in one turn would otherwise stay in ``eval()`` during its own turn. The frozen side in ``eval()``
        means no dropout and no BatchNorm statistics updates (unlike the official code).
        """
        m = self.mowst
        weak_side = phase in ("weak", "joint", "pretrain_weak")
        strong_side = phase in ("strong", "joint", "pretrain_strong")
        m.weak.train(weak_side)
        m.gate.train(weak_side)
        m.strong.train(strong_side)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One full-batch step of the current phase."""
        check_graph(batch.x, batch.edge_index, batch.y, where=type(self).__name__)
        m = self.mowst
        phase = self.phase(self.current_epoch)
        optimizers = self.optimizers()
        mask = self._mask(batch, "train")
        y = batch.y
        self.set_modes(phase)
        if phase == "pretrain_strong":
            opt = optimizers[1]
            loss = F.cross_entropy(m.strong(batch.x, batch.edge_index)[mask], y[mask])
        elif phase == "pretrain_weak":
            opt = optimizers[0]
            loss = F.cross_entropy(m.weak(batch.x)[mask], y[mask])
        else:
            opt, frozen = {"weak": (optimizers[0], "strong"), "strong": (optimizers[1], "weak")}.get(
                phase, (optimizers[-1], None)
            )
            out = m(batch.x, batch.edge_index, frozen=frozen)  # type: ignore[arg-type]
            loss = m.loss(out, y, mask)
            self.log("train/mean_confidence", out.confidence[mask].mean().detach(), batch_size=int(mask.sum()))
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=int(mask.sum()), on_step=True, on_epoch=True)
        return loss.detach()

    def evaluate(self, out: MowstOutput, y: Tensor) -> Tensor:
        """The metric of the configured ``eval_mode`` on already-masked outputs."""
        if self.eval_mode == "sample" and self.metric == "accuracy":
            c = out.confidence
            right_w = (out.weak_logits.argmax(-1) == y).float()
            right_s = (out.strong_logits.argmax(-1) == y).float()
            return (c * right_w + (1.0 - c) * right_s).mean()
        return node_metric(Mowst.mixture_log_proba(out).exp(), y, self.metric)

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Variant loss, metric, mean confidence and per-expert metrics on the stage's nodes."""
        check_graph(batch.x, batch.edge_index, batch.y, where=type(self).__name__)
        mask = self._mask(batch, stage)
        out = self.mowst(batch.x, batch.edge_index)
        loss = self.mowst.loss(out, batch.y, mask)
        sel = MowstOutput(*(t[mask].detach() for t in out))
        y = batch.y[mask]
        n = int(mask.sum())
        if stage == "val" and self._trainer is not None and self.phase(self.current_epoch).startswith("pretrain"):
            # Not a mixture yet (the untrained side only adds noise): `val/metric` is pinned below any real
            # score so that checkpoint selection on it always picks a trained mixture.
            self.log("val/pretrain_metric", self.evaluate(sel, y), batch_size=n)
            self.log_metrics(stage, loss, torch.tensor(-1.0, device=loss.device), n)
        else:
            self.log_metrics(stage, loss, self.evaluate(sel, y), n)
        self.log(f"{stage}/mean_confidence", sel.confidence.mean(), batch_size=n)
        self.log(f"{stage}/weak_metric", node_metric(sel.weak_logits.softmax(-1), y, self.metric), batch_size=n)
        self.log(f"{stage}/strong_metric", node_metric(sel.strong_logits.softmax(-1), y, self.metric), batch_size=n)
        return loss, {"output": out}

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Mixture probabilities of every node."""
        return self.mowst.predict_proba(batch.x, batch.edge_index)


class MowstStarTask(MowstTask):
    """Mowst*: joint training of both experts and the gate on ``CE(C p + (1-C) p')``, expectation inference.

    A :class:`MowstTask` that requires a ``variant="mowst_star"`` model: after the optional pre-training every
    step updates all parameters with one optimiser.

    Args:
        model: a :class:`~domain_moe.graph.models.Mowst` with ``variant="mowst_star"``.
        optimizer: ``params -> Optimizer``.
        metric: ``"accuracy"`` or ``"auroc"``.
        num_classes: number of classes (linked; informational).
        pretrain_strong_epochs: epochs of strong-expert pre-training.
        pretrain_weak_epochs: epochs of weak-expert pre-training.

    Example:
        >>> from domain_moe.graph.models import Mowst
        >>> task = MowstStarTask(Mowst(num_features=4, num_classes=3, variant="mowst_star"))
        >>> task.phase(0)
        'joint'
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        metric: Literal["accuracy", "auroc"] = "accuracy",
        num_classes: int | None = None,
        pretrain_strong_epochs: int = 0,
        pretrain_weak_epochs: int = 0,
    ) -> None:
        if isinstance(model, Mowst) and model.variant != "mowst_star":
            raise ValueError(f"MowstStarTask: the model must have variant='mowst_star', got {model.variant!r}")
        super().__init__(
            model, optimizer, metric, num_classes, pretrain_strong_epochs, pretrain_weak_epochs, eval_mode="expected"
        )
