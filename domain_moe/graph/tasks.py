"""Lightning tasks for full-batch node classification: plain baselines, Mowst (alternating turns) and Mowst*."""

from __future__ import annotations

import math
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


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class MowstTask(NodeClassificationTask):
    """Mowst training with manual optimisation: optional pre-training, then alternating weak/strong turns.

    One full-batch step per epoch. Phases in order: ``pretrain_strong`` (strong-expert cross-entropy, at most
    ``pretrain_strong_epochs``), ``pretrain_weak`` (weak-expert cross-entropy, at most
    ``pretrain_weak_epochs``), then cycles of ``weak`` turns (optimiser 1 over weak expert + gate, strong
    expert frozen in ``eval()``) and ``strong`` turns (optimiser 2 over the strong expert, weak expert and gate
    frozen in ``eval()``, so their BatchNorm statistics stay put) on the Mowst loss, at most
    ``weak_turn_epochs``/``strong_turn_epochs`` each (Algorithm 2 of Zeng et al., ICLR 2024). With a
    ``mowst_star`` model the turns are replaced by one ``joint`` phase: one optimiser over everything on the
    Mowst* loss.

    Early stopping follows the official schedule (``specs/graph.md`` §1.3) and is driven by the validation
    nodes only, never the training nodes (pitfall 4 of §1.5); patience counts validation checks
    (``check_val_every_n_epoch``). A phase ends early after ``pretrain_patience`` (pre-training: the expert
    alone) or ``turn_patience`` (turns and the joint phase: the mixture) checks without a new best; the joint
    phase ending stops training (the official Mowst* never stops, pitfall 3). With ``restore_best`` every
    phase ends by loading the best weights seen: the expert's best for pre-training, the best mixture so far
    for turns (so a turn that did not beat the previous best is undone), and fitting ends on the best mixture.
    ``outer_patience`` stops training after that many weak+strong rounds without a new best mixture.
    Without patience the schedule is fixed and :meth:`phase` gives it by epoch.

    ``gate_holdout`` (an ablation, ``specs/graph.md`` §4.2): that share of the training nodes (seeded) is
    withheld from the experts and used only to fit the gate (expert logits detached there), while the experts
    learn on the rest with the confidence detached. The gate then learns where the weak expert *generalises*
    better than the strong one, rather than where the strong expert has memorised its training labels.

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
        weak_turn_epochs: epochs per weak turn (the maximum when ``turn_patience`` is set).
        strong_turn_epochs: epochs per strong turn (likewise).
        eval_mode: ``"expected"`` or ``"sample"``.
        pretrain_patience: validation checks without improvement that end a pre-training phase (``None``: off).
        turn_patience: validation checks without improvement that end a turn or the joint phase (``None``: off).
        outer_patience: weak+strong rounds without a new best mixture before training stops (``None``: off).
        restore_best: end every phase on its best weights (see above).
        gate_holdout: share of the training nodes reserved for fitting the gate, in ``[0, 1)``.
        holdout_seed: seed of the held-out draw.
        reuse_frozen: compute the frozen side once per turn and reuse it (exact: it is in ``eval()`` and
            unchanged during the turn, and every step sees the same full graph), so a turn costs one expert.

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
        pretrain_patience: int | None = None,
        turn_patience: int | None = None,
        outer_patience: int | None = None,
        restore_best: bool = False,
        gate_holdout: float = 0.0,
        holdout_seed: int = 0,
        reuse_frozen: bool = True,
    ) -> None:
        super().__init__(model, optimizer=optimizer, metric=metric, num_classes=num_classes)
        name = type(self).__name__
        if not isinstance(model, Mowst):
            raise TypeError(f"{name}: model must be a Mowst, got {type(model).__name__}")
        for arg, value in (
            ("pretrain_strong_epochs", pretrain_strong_epochs),
            ("pretrain_weak_epochs", pretrain_weak_epochs),
        ):
            if value < 0:
                raise ValueError(f"{name}: {arg} must be >= 0, got {value!r}")
        if weak_turn_epochs < 1 or strong_turn_epochs < 1:
            raise ValueError(
                f"{name}: turn epochs must be >= 1, got weak={weak_turn_epochs}, strong={strong_turn_epochs}"
            )
        if eval_mode not in ("expected", "sample"):
            raise ValueError(f"{name}: eval_mode must be 'expected' or 'sample', got {eval_mode!r}")
        for arg, value in (
            ("pretrain_patience", pretrain_patience),
            ("turn_patience", turn_patience),
            ("outer_patience", outer_patience),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: {arg} must be None or an int >= 1, got {value!r}")
        if not 0.0 <= gate_holdout < 1.0:
            raise ValueError(f"{name}: gate_holdout must be in [0, 1), got {gate_holdout!r}")
        self.automatic_optimization = False
        self.pretrain_strong_epochs = pretrain_strong_epochs
        self.pretrain_weak_epochs = pretrain_weak_epochs
        self.weak_turn_epochs = weak_turn_epochs
        self.strong_turn_epochs = strong_turn_epochs
        self.eval_mode = eval_mode
        self.pretrain_patience = pretrain_patience
        self.turn_patience = turn_patience
        self.outer_patience = outer_patience
        self.restore_best = restore_best
        self.gate_holdout = gate_holdout
        self.holdout_seed = holdout_seed
        self.reuse_frozen = reuse_frozen
        self.reset_schedule()

    @property
    def mowst(self) -> Mowst:
        """The injected model, typed."""
        assert isinstance(self.model, Mowst)
        return self.model

    # -- schedule ---------------------------------------------------------------------------------------------
    def phase(self, epoch: int) -> Phase:
        """What the step of ``epoch`` trains under the fixed schedule (no early stopping)."""
        if epoch < self.pretrain_strong_epochs:
            return "pretrain_strong"
        epoch -= self.pretrain_strong_epochs
        if epoch < self.pretrain_weak_epochs:
            return "pretrain_weak"
        if self.mowst.variant == "mowst_star":
            return "joint"
        epoch -= self.pretrain_weak_epochs
        return "weak" if epoch % (self.weak_turn_epochs + self.strong_turn_epochs) < self.weak_turn_epochs else "strong"

    def _first_phase(self) -> Phase:
        if self.pretrain_strong_epochs:
            return "pretrain_strong"
        if self.pretrain_weak_epochs:
            return "pretrain_weak"
        return "joint" if self.mowst.variant == "mowst_star" else "weak"

    def reset_schedule(self) -> None:
        """Start the schedule from its first phase, forgetting every best score and stored weights."""
        self.current_phase: Phase = self._first_phase()
        self.phase_epochs = 0
        self.phase_best = -math.inf
        self.phase_bad = 0
        self.best_score = -math.inf
        self.rounds_without_gain = 0
        self.stop_requested = False
        self.phase_history: list[tuple[Phase, int]] = []
        self._round_start_best = -math.inf
        self._phase_state: dict[str, Tensor] | None = None
        self._best_state: dict[str, Tensor] | None = None
        self._pending_score: float | None = None
        self._turn_cache: MowstOutput | None = None

    def _phase_cap(self, phase: Phase) -> float:
        caps = {
            "pretrain_strong": self.pretrain_strong_epochs,
            "pretrain_weak": self.pretrain_weak_epochs,
            "weak": self.weak_turn_epochs,
            "strong": self.strong_turn_epochs,
        }
        return caps.get(phase, math.inf)

    def _next_phase(self, phase: Phase) -> Phase:
        if phase == "pretrain_strong" and self.pretrain_weak_epochs:
            return "pretrain_weak"
        if phase in ("pretrain_strong", "pretrain_weak"):
            return "joint" if self.mowst.variant == "mowst_star" else "weak"
        return {"weak": "strong", "strong": "weak"}.get(phase, "joint")  # type: ignore[return-value]

    def advance_schedule(self, score: float | None) -> None:
        """Count one trained epoch of the current phase; ``score`` is its validation score, if it was checked.

        Pre-training scores are the pre-trained expert's validation metric, the others the mixture's. Ends the
        phase when its epochs or its patience are used up (restoring the best weights with ``restore_best``)
        and sets ``stop_requested`` when the outer patience or the joint phase's patience runs out.
        """
        phase = self.current_phase
        pretraining = phase.startswith("pretrain")
        self.phase_epochs += 1
        if score is not None:
            if score > self.phase_best:
                self.phase_best, self.phase_bad = score, 0
                if self.restore_best and pretraining:
                    self._phase_state = _snapshot(self.model)
            else:
                self.phase_bad += 1
            if not pretraining and score > self.best_score:
                self.best_score = score
                if self.restore_best:
                    self._best_state = _snapshot(self.model)
        patience = self.pretrain_patience if pretraining else self.turn_patience
        if self.phase_epochs < self._phase_cap(phase) and (patience is None or self.phase_bad < patience):
            return
        self.phase_history.append((phase, self.phase_epochs))
        state = self._phase_state if pretraining else self._best_state
        if self.restore_best and state is not None:
            self.model.load_state_dict(state)
        if phase == "joint":
            self.stop_requested = True
        if phase == "strong":
            gained = self.best_score > self._round_start_best
            self.rounds_without_gain = 0 if gained else self.rounds_without_gain + 1
            self._round_start_best = self.best_score
            if self.outer_patience is not None and self.rounds_without_gain >= self.outer_patience:
                self.stop_requested = True
        self.current_phase = self._next_phase(phase)
        self.phase_epochs, self.phase_best, self.phase_bad, self._phase_state = 0, -math.inf, 0, None
        self._turn_cache = None

    def on_fit_start(self) -> None:
        """Start the schedule afresh for every ``fit``."""
        self.reset_schedule()

    def on_train_epoch_end(self) -> None:
        """Advance the schedule with this epoch's validation score (validation runs before this hook)."""
        score, self._pending_score = self._pending_score, None
        self.advance_schedule(score)
        if self.stop_requested:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        """With ``restore_best``, leave the model on the best mixture seen."""
        if self.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)

    # -- optimisation -----------------------------------------------------------------------------------------
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

    def split_train_mask(self, train_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(expert_mask, gate_mask)``: the training nodes for the experts and those held out for the gate.

        Without ``gate_holdout`` the gate mask is empty. The draw is seeded by ``holdout_seed``, so every step
        holds out the same nodes.

        Shapes:
            train_mask: bool ``[N]`` → two bool ``[N]`` masks partitioning it.
        """
        gate_mask = torch.zeros_like(train_mask)
        if self.gate_holdout > 0:
            idx = train_mask.nonzero().view(-1)
            gen = torch.Generator().manual_seed(self.holdout_seed)
            perm = torch.randperm(idx.numel(), generator=gen).to(idx.device)
            gate_mask[idx[perm[: round(self.gate_holdout * idx.numel())]]] = True
        return train_mask & ~gate_mask, gate_mask

    def mixture_training_loss(self, out: MowstOutput, y: Tensor, train_mask: Tensor) -> Tensor:
        """The variant's loss on the training nodes, split between experts and gate when ``gate_holdout > 0``.

        Shapes:
            out: as :class:`MowstOutput` over ``N`` nodes; y, train_mask: ``[N]`` → scalar.
        """
        m = self.mowst
        if self.gate_holdout == 0:
            return m.loss(out, y, train_mask)
        expert_mask, gate_mask = self.split_train_mask(train_mask)
        experts_only = out._replace(confidence=out.confidence.detach(), gate_logits=out.gate_logits.detach())
        gate_only = out._replace(weak_logits=out.weak_logits.detach(), strong_logits=out.strong_logits.detach())
        loss = m.loss(experts_only, y, expert_mask)
        if gate_mask.any():
            loss = loss + m.loss(gate_only, y, gate_mask)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One full-batch step of the current phase."""
        check_graph(batch.x, batch.edge_index, batch.y, where=type(self).__name__)
        m = self.mowst
        phase = self.current_phase
        optimizers = self.optimizers()
        mask = self._mask(batch, "train")
        y = batch.y
        self.set_modes(phase)
        if phase == "pretrain_strong":
            opt = optimizers[1]
            fit = self.split_train_mask(mask)[0]
            loss = F.cross_entropy(m.strong(batch.x, batch.edge_index)[fit], y[fit])
        elif phase == "pretrain_weak":
            opt = optimizers[0]
            fit = self.split_train_mask(mask)[0]
            loss = F.cross_entropy(m.weak(batch.x)[fit], y[fit])
        else:
            opt, frozen = {"weak": (optimizers[0], "strong"), "strong": (optimizers[1], "weak")}.get(
                phase, (optimizers[-1], None)
            )
            reuse = self._turn_cache if self.reuse_frozen and frozen is not None else None
            out = m(batch.x, batch.edge_index, frozen=frozen, reuse=reuse)  # type: ignore[arg-type]
            if self.reuse_frozen and frozen is not None and reuse is None:
                self._turn_cache = MowstOutput(*(t.detach() for t in out))
            loss = self.mixture_training_loss(out, y, mask)
            self.log("train/mean_confidence", out.confidence[mask].mean().detach(), batch_size=int(mask.sum()))
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=int(mask.sum()), on_step=True, on_epoch=True)
        return loss.detach()

    # -- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, out: MowstOutput, y: Tensor) -> Tensor:
        """The metric of the configured ``eval_mode`` on already-masked outputs."""
        if self.eval_mode == "sample" and self.metric == "accuracy":
            c = out.confidence
            right_w = (out.weak_logits.argmax(-1) == y).float()
            right_s = (out.strong_logits.argmax(-1) == y).float()
            return (c * right_w + (1.0 - c) * right_s).mean()
        return node_metric(Mowst.mixture_log_proba(out).exp(), y, self.metric)

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Variant loss, metric, mean confidence and per-expert metrics on the stage's nodes.

        At ``stage="val"`` the score the schedule sees is kept for :meth:`on_train_epoch_end`: the mixture's
        metric on the validation nodes, or the pre-trained expert's during pre-training.
        """
        check_graph(batch.x, batch.edge_index, batch.y, where=type(self).__name__)
        mask = self._mask(batch, stage)
        out = self.mowst(batch.x, batch.edge_index)
        loss = self.mowst.loss(out, batch.y, mask)
        sel = MowstOutput(*(t[mask].detach() for t in out))
        y = batch.y[mask]
        n = int(mask.sum())
        weak_metric = node_metric(sel.weak_logits.softmax(-1), y, self.metric)
        strong_metric = node_metric(sel.strong_logits.softmax(-1), y, self.metric)
        training = self._trainer is not None and not self.trainer.sanity_checking
        pretraining = training and self.current_phase.startswith("pretrain")
        if stage == "val" and pretraining:
            # Not a mixture yet (the untrained side only adds noise): `val/metric` is pinned below any real
            # score so that checkpoint selection on it always picks a trained mixture.
            expert = strong_metric if self.current_phase == "pretrain_strong" else weak_metric
            self.log("val/pretrain_metric", expert, batch_size=n)
            self.log_metrics(stage, loss, torch.tensor(-1.0, device=loss.device), n)
            self._pending_score = float(expert)
        else:
            value = self.evaluate(sel, y)
            self.log_metrics(stage, loss, value, n)
            if stage == "val" and training:
                self._pending_score = float(value)
        self.log(f"{stage}/mean_confidence", sel.confidence.mean(), batch_size=n)
        self.log(f"{stage}/weak_metric", weak_metric, batch_size=n)
        self.log(f"{stage}/strong_metric", strong_metric, batch_size=n)
        return loss, {"output": out}

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Mixture probabilities of every node."""
        return self.mowst.predict_proba(batch.x, batch.edge_index)


class MowstStarTask(MowstTask):
    """Mowst*: joint training of both experts and the gate on ``CE(C p + (1-C) p')``, expectation inference.

    A :class:`MowstTask` that requires a ``variant="mowst_star"`` model: after the optional pre-training every
    step updates all parameters with one optimiser. ``turn_patience`` stops the joint phase (and training)
    after that many validation checks without a better mixture, which the official Mowst* never does.

    Args:
        model: a :class:`~domain_moe.graph.models.Mowst` with ``variant="mowst_star"``.
        optimizer: ``params -> Optimizer``.
        metric: ``"accuracy"`` or ``"auroc"``.
        num_classes: number of classes (linked; informational).
        pretrain_strong_epochs: epochs of strong-expert pre-training.
        pretrain_weak_epochs: epochs of weak-expert pre-training.
        pretrain_patience: validation checks without improvement that end a pre-training phase.
        turn_patience: validation checks without improvement that end the joint phase and training.
        restore_best: end pre-training and fitting on the best weights seen.
        gate_holdout: share of the training nodes reserved for fitting the gate.
        holdout_seed: seed of the held-out draw.

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
        pretrain_patience: int | None = None,
        turn_patience: int | None = None,
        restore_best: bool = False,
        gate_holdout: float = 0.0,
        holdout_seed: int = 0,
    ) -> None:
        if isinstance(model, Mowst) and model.variant != "mowst_star":
            raise ValueError(f"MowstStarTask: the model must have variant='mowst_star', got {model.variant!r}")
        super().__init__(
            model,
            optimizer,
            metric,
            num_classes,
            pretrain_strong_epochs,
            pretrain_weak_epochs,
            eval_mode="expected",
            pretrain_patience=pretrain_patience,
            turn_patience=turn_patience,
            restore_best=restore_best,
            gate_holdout=gate_holdout,
            holdout_seed=holdout_seed,
        )
