"""The base LightningModule of every domain: injected model, aux-loss collection, expert-load logging."""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from domain_moe.core.balancing import load_statistics
from domain_moe.core.moe import MoE, collect_aux

__all__ = ["MoETask", "named_moe_layers"]

# Checkpoint key of the RNG states (for bit-identical resumes).
_RNG_STATE_KEY = "domain_moe_rng_states"


def named_moe_layers(module: nn.Module) -> list[tuple[str, MoE]]:
    """Every :class:`~domain_moe.core.MoE` inside ``module`` with its module path.

    Example:
        >>> from domain_moe.training.classifier import MoEClassifier
        >>> [name for name, _ in named_moe_layers(MoEClassifier(4, 2, num_layers=2))]
        ['moes.0', 'moes.1']
    """
    return [(name, m) for name, m in module.named_modules() if isinstance(m, MoE)]


def _collect_rng_states() -> dict[str, Any]:
    # Only tensors and builtins: LightningCLI reads checkpoints with `torch.load(weights_only=True)`,
    # which refuses numpy arrays.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the global state is the point)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class MoETask(L.LightningModule):
    """Base task: the model's task loss plus the auxiliary losses of its MoE layers.

    Subclasses implement :meth:`compute_loss` (loss, metrics and their logging for one batch of a
    stage). :meth:`training_step` clears the layers' ``last_aux``, runs :meth:`compute_loss`, adds
    ``aux_weight * collect_aux(model)`` and logs ``train/loss`` (task loss), ``train/aux_loss`` and
    ``train/total_loss`` (what is optimised). Every ``trainer.log_every_n_steps`` optimizer steps it also
    logs, per MoE layer (named by its module path inside ``model``), ``moe/<path>/max_load`` and
    ``moe/<path>/min_load`` (load over mean load; 1 is balanced), ``moe/<path>/dropped``,
    ``moe/<path>/entropy`` (router entropy, nats) and ``moe/<path>/mean_k``. Tasks with manual
    optimisation reuse :meth:`aux_loss` and :meth:`log_moe_statistics`.

    The RNG states are saved in checkpoints and restored when training resumes, so a resumed run
    continues bit-identically (given seeded, epoch-deterministic data order and deterministic kernels,
    and a checkpoint written at the end of an epoch). Subclasses that override ``on_save_checkpoint``,
    ``on_load_checkpoint`` or ``on_train_start`` call ``super()``.

    Checkpoints: hyperparameters are saved with ``save_hyperparameters(ignore=["model", "optimizer",
    "scheduler"])`` because the injected objects are not plain data. Restore with the model passed in:
    ``Task.load_from_checkpoint(path, model=MoEClassifier(...))`` (build it with the same arguments; its
    weights come from the checkpoint). This works for checkpoints written by the CLI too; without
    ``model`` a ``TypeError`` says so.

    Args:
        model: the network (a plain ``nn.Module`` holding zero or more MoE layers).
        optimizer: ``params -> Optimizer`` (in YAML a ``class_path``/``init_args`` of an optimizer).
        scheduler: ``optimizer -> LRScheduler`` or ``None``. A ``ReduceLROnPlateau`` monitors its
            ``monitor`` attribute (Lightning's ``cli.ReduceLROnPlateau``) or ``val/loss``.
        scheduler_interval: step the scheduler every ``"epoch"`` or every ``"step"``.
        aux_weight: factor on the summed auxiliary losses (``>= 0``; the routers' own coefficients
            apply first).

    Example:
        >>> import torch
        >>> from domain_moe.training.classifier import MoEClassifier
        >>> class Regression(MoETask):
        ...     def compute_loss(self, batch, stage):
        ...         x, y = batch
        ...         pred = self(x).squeeze(-1)
        ...         return torch.nn.functional.mse_loss(pred, y), {"pred": pred}
        >>> task = Regression(MoEClassifier(num_features=4, num_classes=1, d_model=8, d_hidden=8))
        >>> loss, _ = task.compute_loss((torch.randn(6, 4), torch.randn(6)), "train")
        >>> loss.dim()
        0
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        aux_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__}: model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be callable (params -> Optimizer)")
        if scheduler is not None and not callable(scheduler):
            raise TypeError(f"{type(self).__name__}: scheduler must be None or callable (optimizer -> scheduler)")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"{type(self).__name__}: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}"
            )
        if isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float)):
            raise TypeError(f"{type(self).__name__}: aux_weight must be a float, got {type(aux_weight).__name__}")
        if not math.isfinite(aux_weight) or aux_weight < 0:
            raise ValueError(f"{type(self).__name__}: aux_weight must be a finite float >= 0, got {aux_weight!r}")
        # The injected objects are not plain data: keeping them out of hparams keeps checkpoints loadable
        # with `weights_only=True` (as LightningCLI's --ckpt_path does) and avoids pickling lambdas.
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.aux_weight = float(aux_weight)
        self._pending_rng_states: dict[str, Any] | None = None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Restore a task from a checkpoint; ``model=`` must be the network built with the same arguments.

        Args:
            checkpoint_path: path or file-like object of the checkpoint.
            *args: passed to ``LightningModule.load_from_checkpoint`` (``map_location``, ...).
            **kwargs: ``model`` (required) and overrides of the saved hyperparameters.

        Returns:
            The task, with the checkpoint's weights loaded into ``model``.
        """
        if "model" not in kwargs:
            raise TypeError(
                f"{cls.__name__}.load_from_checkpoint needs the network: pass model=<the nn.Module built with the "
                "same arguments as in training> (it is injected, so it is not part of the saved hyperparameters)"
            )
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the injected model."""
        return self.model(*args, **kwargs)

    def compute_loss(self, batch: Any, stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Task loss (without the auxiliary losses) and outputs for one batch; subclasses implement it.

        Args:
            batch: one batch from the stage's dataloader.
            stage: ``"train"``, ``"val"`` or ``"test"``; subclasses update and log their metrics for it.

        Returns:
            ``(loss, outputs)``: a 0-d loss tensor and a dict of anything else (logits, targets, ...).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss(batch, stage)")

    def clear_aux(self) -> None:
        """Forget every MoE layer's ``last_aux``, so a layer skipped by a forward adds no stale loss."""
        for _, layer in named_moe_layers(self.model):
            layer.last_aux = None

    def aux_loss(self) -> Tensor:
        """Sum of the auxiliary losses of the model's last forward (0 when there are none)."""
        return collect_aux(self.model)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Task loss plus ``aux_weight`` times the auxiliary losses; logs both and the load statistics."""
        self.clear_aux()
        loss, _ = self.compute_loss(batch, "train")
        aux = self.aux_loss().to(loss.device)
        total = loss + self.aux_weight * aux
        batch_size = _batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/aux_loss", aux, batch_size=batch_size)
        self.log("train/total_loss", total, batch_size=batch_size)
        if self._should_log_moe_statistics():
            self.log_moe_statistics()
        return total

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Task loss on a validation batch, logged as ``val/loss``."""
        loss, _ = self.compute_loss(batch, "val")
        self.log("val/loss", loss, prog_bar=True, batch_size=_batch_size(batch))
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Task loss on a test batch, logged as ``test/loss``."""
        loss, _ = self.compute_loss(batch, "test")
        self.log("test/loss", loss, batch_size=_batch_size(batch))
        return loss

    def _should_log_moe_statistics(self) -> bool:
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer (a bare call to training_step)
            return False
        every = max(int(trainer.log_every_n_steps), 1)
        # The statistics sync the device; computing them only on logging steps keeps training cheap.
        return trainer.global_step % every == 0

    def log_moe_statistics(self, prefix: str = "moe") -> None:
        """Log load balance, dropped fraction, router entropy and mean k of every MoE layer's last call."""
        for name, layer in named_moe_layers(self.model):
            aux = layer.last_aux
            if aux is None:
                continue
            stats = load_statistics(aux.counts)
            values = {
                "max_load": stats["max_over_mean"],
                "min_load": stats["min_over_mean"],
                "dropped": aux.dropped_fraction,
                "mean_k": aux.mean_k,
            }
            if aux.router_entropy is not None:
                values["entropy"] = aux.router_entropy
            for key, value in values.items():
                self.log(f"{prefix}/{name}/{key}", value.float(), on_step=True, on_epoch=False)

    def configure_optimizers(self) -> Any:
        """Build the optimizer (and scheduler) from the injected callables."""
        optimizer = self.optimizer(self.parameters())
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = getattr(scheduler, "monitor", "val/loss")
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the RNG states, so dropout, jitter and noisy routing resume where they stopped."""
        checkpoint[_RNG_STATE_KEY] = _collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the saved RNG states until training starts (after the sanity check, which draws)."""
        self._pending_rng_states = checkpoint.get(_RNG_STATE_KEY)

    def on_train_start(self) -> None:
        """Restore the RNG states of a resumed checkpoint."""
        if self._pending_rng_states is not None:
            _set_rng_states(self._pending_rng_states)
            self._pending_rng_states = None


def _batch_size(batch: Any) -> int | None:
    """Leading size of the first tensor in a batch, so Lightning need not guess (and warn)."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return None
