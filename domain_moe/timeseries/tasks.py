"""``ForecastTask``: the expert-loss objective, forecast metrics and gate logging in Lightning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from domain_moe.timeseries.data import WindowDataset
from domain_moe.timeseries.losses import BASE_LOSSES, VARIANTS, calibration_mask, combined_loss
from domain_moe.timeseries.metrics import MeanAbsoluteScaledError
from domain_moe.training.task import MoETask

__all__ = ["ForecastTask"]


class ForecastTask(MoETask):
    """Trains a forecaster returning a :class:`~domain_moe.timeseries.models.ForecastOutput` on lag windows.

    Loss: ``l(y_hat, y) + gamma * L_exp`` (:func:`~domain_moe.timeseries.losses.combined_loss`), plus the
    auxiliary losses of the core layers (none by default for the dense gate). Logged per stage:
    ``<stage>/loss``, ``<stage>/base_loss``, ``<stage>/expert_loss``, ``<stage>/mase`` (in the series'
    units, scaled by each series' in-sample seasonal-naive MAE) and ``gate/expert_<k>`` (the mean gate
    weight of each expert, the health check of the spec: every expert should keep more than 5%).
    ``predict_step`` returns forecasts in the series' units with the series index and gate weights,
    which :class:`~domain_moe.timeseries.cli.ForecastWriter` writes to CSV.

    Args:
        model: the forecaster (e.g. :class:`~domain_moe.timeseries.models.ExpertLossMoE`).
        optimizer: ``params -> Optimizer``.
        scheduler: ``optimizer -> LRScheduler`` or ``None``.
        scheduler_interval: ``"epoch"`` or ``"step"``.
        aux_weight: weight of the core auxiliary losses.
        gamma: weight of the expert-specific loss (0 = plain MoE).
        variant: ``"uniform"``, ``"gate"`` or ``"masked"``.
        base_loss: ``"mae"`` or ``"mse"``.
        calibration_windows: per-expert windows (windows per series) of the ``"masked"`` variant.

    Example:
        >>> from domain_moe.timeseries.models import ExpertLossMoE
        >>> task = ForecastTask(ExpertLossMoE(input_size=8, horizon=4), gamma=0.5)
        >>> task.gamma, task.variant
        (0.5, 'uniform')
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        aux_weight: float = 1.0,
        gamma: float = 0.5,
        variant: Literal["uniform", "gate", "masked"] = "uniform",
        base_loss: Literal["mae", "mse"] = "mae",
        calibration_windows: Sequence[int | None] | None = None,
    ) -> None:
        super().__init__(model, optimizer, scheduler, scheduler_interval, aux_weight)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
            raise ValueError(f"gamma must be a float >= 0, got {gamma!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if base_loss not in BASE_LOSSES:
            raise ValueError(f"base_loss must be one of {BASE_LOSSES}, got {base_loss!r}")
        num_experts = getattr(model, "num_experts", None)
        if variant == "masked":
            if calibration_windows is None:
                raise ValueError("variant='masked' needs calibration_windows (one entry per expert, None = all)")
            if num_experts is not None and len(calibration_windows) != num_experts:
                raise ValueError(f"calibration_windows must have num_experts={num_experts} entries, got "
                                 f"{len(calibration_windows)}")
        self.gamma, self.variant, self.base_loss = float(gamma), variant, base_loss
        self.calibration_windows = None if calibration_windows is None else list(calibration_windows)
        self.val_mase = MeanAbsoluteScaledError()
        self.test_mase = MeanAbsoluteScaledError()

    def compute_loss(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, dict[str, Any]]:
        """Combined loss on scaled targets; MASE in series units for validation and test."""
        out = self.model(batch["x"])
        mask = None
        if self.variant == "masked" and self.gamma > 0:
            mask = calibration_mask(batch["age"], self.calibration_windows)
        loss, parts = combined_loss(out.y, out.expert_y, out.gate, batch["y"], self.gamma, self.variant,
                                    self.base_loss, mask)
        size = batch["x"].shape[0]
        self.log(f"{stage}/base_loss", parts["base"], batch_size=size)
        self.log(f"{stage}/expert_loss", parts["expert"], batch_size=size)
        if stage == "train":
            for k, value in enumerate(out.gate.detach().mean(0)):
                self.log(f"gate/expert_{k}", value, batch_size=size)
        metric = {"val": self.val_mase, "test": self.test_mase}.get(stage)
        if metric is not None:
            pred = WindowDataset.to_original(out.y.detach(), batch)
            true = WindowDataset.to_original(batch["y"], batch)
            metric.update(pred, true, batch["mase_scale"])
            self.log(f"{stage}/mase", metric, batch_size=size, prog_bar=stage == "val")
        return loss, {"output": out}

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Forecasts in the series' units, the series index, each expert's forecast and the gate."""
        out = self.model(batch["x"])
        return {
            "series": batch["series"],
            "forecast": WindowDataset.to_original(out.y, batch),
            "expert_forecast": WindowDataset.to_original(out.expert_y, batch),
            "gate": out.gate,
        }
