"""The expert-loss MoE (and its ablations) behind the baselines' ``fit(panel)`` / ``predict()`` interface.

A plain PyTorch loop rather than a Lightning Trainer: the benchmark and the online driver train
hundreds of small models, where Lightning's per-step overhead would dominate (the CLI and configs use
:class:`~domain_moe.timeseries.tasks.ForecastTask` with the same model and loss).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from domain_moe.timeseries.baselines.base import Forecaster
from domain_moe.timeseries.data import Panel, WindowDataset
from domain_moe.timeseries.losses import calibration_mask, combined_loss
from domain_moe.timeseries.models.expert_loss_moe import ExpertLossMoE

__all__ = ["UPDATE_MODES", "NeuralForecaster"]

#: Which parameters an update may change: everything, the gate only, or the experts only.
UPDATE_MODES = ("all", "gate", "experts")


class NeuralForecaster(Forecaster):
    """Global :class:`ExpertLossMoE` trained on lag windows of a panel with the combined loss.

    ``gamma = 0`` is the plain MoE; ``num_experts = 1, num_linear = 0`` the single-expert MLP baseline.

    Args:
        lookback: lags ``L``.
        num_experts: experts ``E``.
        num_linear: linear experts among them.
        d_hidden: hidden width of the MLP experts.
        temperature: gate temperature.
        gamma: weight of the expert-specific loss.
        variant: ``"uniform"``, ``"gate"`` or ``"masked"``.
        base_loss: ``"mae"`` or ``"mse"``.
        calibration_windows: per-expert calibration windows for ``"masked"`` (in windows per series;
            ``None`` entries see all); default ``[None, 4H, 2H, H]`` cycled over the experts.
        epochs: training epochs.
        batch_size: batch size.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        normalization: window scaling (see :class:`WindowDataset`).
        residual: learn the residual over seasonal naive.
        max_windows_per_series: train only on each series' newest windows (``None`` = all).
        seed: seed of initialisation and shuffling.
    """

    def __init__(
        self,
        lookback: int = 24,
        num_experts: int = 4,
        num_linear: int = 2,
        d_hidden: int = 32,
        temperature: float = 1.0,
        gamma: float = 0.5,
        variant: Literal["uniform", "gate", "masked"] = "uniform",
        base_loss: Literal["mae", "mse"] = "mae",
        calibration_windows: Sequence[int | None] | None = None,
        epochs: int = 20,
        batch_size: int = 256,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        normalization: Literal["window", "series", "none"] = "window",
        residual: bool = False,
        max_windows_per_series: int | None = None,
        seed: int = 0,
    ) -> None:
        self.lookback, self.num_experts, self.num_linear, self.d_hidden = lookback, num_experts, num_linear, d_hidden
        self.temperature, self.gamma, self.variant, self.base_loss = temperature, float(gamma), variant, base_loss
        self.calibration_windows = calibration_windows
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.normalization, self.residual, self.seed = normalization, residual, seed
        self.max_windows_per_series = max_windows_per_series
        self.name = "expert-loss-moe" if gamma > 0 else ("single-expert" if num_experts == 1 else "moe")
        self.model: ExpertLossMoE | None = None
        self.panel: Panel | None = None
        self.gate_usage: list[float] = []
        self.train_seconds = 0.0
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------------------------------ fitting

    def windows(self, panel: Panel, max_age: int | None = None) -> WindowDataset:
        """Training windows of ``panel`` (the newest ``max_age`` per series when given)."""
        return WindowDataset(panel, self.lookback, self.normalization, self.residual, max_age=max_age)

    def build(self, horizon: int) -> ExpertLossMoE:
        """A freshly initialised model (seeded)."""
        torch.manual_seed(self.seed)
        return ExpertLossMoE(self.lookback, horizon, self.num_experts, self.num_linear, self.d_hidden,
                             self.temperature)

    def fit(self, panel: Panel) -> NeuralForecaster:
        """Train from scratch on every training window of ``panel``."""
        self.panel = panel
        self.generator = torch.Generator().manual_seed(self.seed)
        self.model = self.build(panel.horizon)
        self.train_seconds = 0.0
        self.train(self.windows(panel, self.max_windows_per_series), self.epochs, self.lr, self.weight_decay)
        return self

    def update(self, panel: Panel, epochs: int = 10, window: int | None = None, lr: float | None = None,
               weight_decay: float | None = None, params: str = "all") -> NeuralForecaster:
        """Partial online update: warm start, a few epochs on the newest ``window`` windows of each series.

        Args:
            panel: the series up to the new forecast origin.
            epochs: update epochs (``E_all``).
            window: windows per series to train on (``D_all``; ``None`` = all).
            lr: learning rate of updates (default the initial one).
            weight_decay: weight decay of updates (default the initial one).
            params: ``"all"``, ``"gate"`` or ``"experts"`` (see :data:`UPDATE_MODES`).
        """
        if self.model is None:
            raise RuntimeError("update() needs a fitted model: call fit() first")
        if params not in UPDATE_MODES:
            raise ValueError(f"params must be one of {UPDATE_MODES}, got {params!r}")
        self.panel = panel
        self.train(self.windows(panel, window), epochs, self.lr if lr is None else lr,
                   self.weight_decay if weight_decay is None else weight_decay, params)
        return self

    def trainable(self, params: str = "all") -> list[torch.nn.Parameter]:
        """The parameters an update of kind ``params`` changes."""
        assert self.model is not None
        if params == "gate":
            return self.model.gate_parameters
        if params == "experts":
            return self.model.expert_parameters
        return list(self.model.parameters())

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The combined loss on one batch."""
        assert self.model is not None
        out = self.model(batch["x"])
        mask = None
        if self.gamma > 0 and self.variant == "masked":
            mask = calibration_mask(batch["age"], self.masks())
        total, _ = combined_loss(out.y, out.expert_y, out.gate, batch["y"], self.gamma, self.variant, self.base_loss,
                                 mask)
        return total

    def masks(self) -> list[int | None]:
        """Per-expert calibration windows (default ``[None, 4H, 2H, H]`` cycled)."""
        if self.calibration_windows is not None:
            if len(self.calibration_windows) != self.num_experts:
                raise ValueError(f"calibration_windows must have num_experts={self.num_experts} entries, got "
                                 f"{len(self.calibration_windows)}")
            return list(self.calibration_windows)
        h = self.model.horizon if self.model is not None else 1
        cycle = [None, 4 * h, 2 * h, h]
        return [cycle[k % 4] for k in range(self.num_experts)]

    def train(self, data: WindowDataset, epochs: int, lr: float, weight_decay: float, params: str = "all") -> None:
        """Adam over shuffled mini-batches; only ``params`` change (see :data:`UPDATE_MODES`)."""
        assert self.model is not None
        start = time.perf_counter()
        chosen = self.trainable(params)
        chosen_ids = {id(p) for p in chosen}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in chosen_ids)
        optimizer = torch.optim.Adam(chosen, lr=lr, weight_decay=weight_decay)
        self.model.train()
        n = len(data)
        for _ in range(epochs):
            order = torch.randperm(n, generator=self.generator)
            for i in range(0, n, self.batch_size):
                batch = data.batch(order[i : i + self.batch_size])
                loss = self.loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(chosen, 1.0)
                optimizer.step()
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.model.eval()
        with torch.no_grad():
            gate = torch.cat([self.model(data.x[i : i + 4096]).gate for i in range(0, n, 4096)])
        self.gate_usage = gate.mean(0).tolist()
        self.train_seconds += time.perf_counter() - start

    # --------------------------------------------------------------------------------------- forecasting

    @torch.no_grad()
    def forecast(self, panel: Panel | None = None) -> dict[str, np.ndarray]:
        """Mixed and per-expert forecasts (series units) and gate weights at ``panel``'s origin."""
        panel = self.panel if panel is None else panel
        if self.model is None or panel is None:
            raise RuntimeError("predict() needs a fitted model: call fit() first")
        data = WindowDataset(panel, self.lookback, self.normalization, self.residual, forecast=True)
        batch = data.batch()
        self.model.eval()
        out = self.model(batch["x"])
        return {
            "y": WindowDataset.to_original(out.y, batch).double().numpy(),
            "expert_y": WindowDataset.to_original(out.expert_y, batch).double().numpy(),
            "gate": out.gate.double().numpy(),
        }

    def predict(self, panel: Panel | None = None) -> np.ndarray:
        """Forecasts ``[N, H]`` after the end of each series of ``panel`` (default: the fitted panel)."""
        return self.forecast(panel)["y"]
