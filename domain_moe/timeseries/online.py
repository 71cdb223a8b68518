"""Partial online learning at rolling forecast origins, against full refitting and a frozen model.

The scheme of the authors' earlier electricity-price code (El Mahtout & Ziel, arXiv 2601.02856; the spec
§2.3/§3.5): fit once for ``init_epochs`` on the data before the first origin; then at every new origin
keep the weights (warm start) and train only ``update_epochs`` on the newest ``update_window`` windows
of each series with their own learning rate and weight decay, updating the gate and the experts. Window
scaling is per window, so re-standardising on recent data comes for free. Regimes:

* ``"partial"`` - the warm-started update of gate and experts;
* ``"gate"`` - the same, but only the gate changes (experts frozen);
* ``"refit"`` - a fresh model trained for ``init_epochs`` on all data up to every origin;
* ``"frozen"`` - no update after the initial fit.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from domain_moe.timeseries.data import Panel, load_dataset, rolling_origins
from domain_moe.timeseries.forecaster import NeuralForecaster
from domain_moe.timeseries.metrics import mase, rmse

__all__ = ["REGIMES", "OnlineConfig", "OnlineResult", "online_benchmark", "run_online"]

REGIMES = ("partial", "gate", "refit", "frozen")


@dataclass
class OnlineConfig:
    """Schedule knobs of the rolling-origin experiment.

    Attributes:
        num_origins: forecast origins (the first one follows the initial fit).
        step: observations between origins (default the horizon).
        init_epochs: epochs of the initial fit and of every full refit (``E_init``).
        update_epochs: epochs of a partial update (``E_all``).
        update_window: newest windows per series a partial update trains on (``D_all``; ``None`` = all).
        update_lr: learning rate of updates (``None`` = the initial one).
        update_weight_decay: weight decay of updates (``None`` = the initial one).
    """

    num_origins: int = 10
    step: int | None = None
    init_epochs: int = 60
    update_epochs: int = 10
    update_window: int | None = 336
    update_lr: float | None = None
    update_weight_decay: float | None = None


@dataclass
class OnlineResult:
    """Forecasts and costs of one regime over the rolling origins.

    Attributes:
        regime: one of :data:`REGIMES`.
        forecasts: per origin, ``[N, H]``.
        seconds: training seconds spent at each origin (the initial fit is reported apart).
        init_seconds: training seconds of the initial fit.
        mase: per origin, mean MASE over series (training-part scale).
        rmse: per origin, mean RMSE over series.
        gate: per origin, the mean gate weight of each expert at the forecast windows.
    """

    regime: str
    forecasts: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    init_seconds: float = 0.0
    mase: list[float] = field(default_factory=list)
    rmse: list[float] = field(default_factory=list)
    gate: list[list[float]] = field(default_factory=list)

    @property
    def update_seconds(self) -> float:
        """Training seconds after the initial fit, summed over origins."""
        return float(np.sum(self.seconds))


def run_online(
    panel: Panel,
    make_forecaster: Callable[[], NeuralForecaster],
    regime: str,
    config: OnlineConfig | None = None,
) -> OnlineResult:
    """Run one regime over rolling origins of ``panel`` (see the module docstring).

    Args:
        panel: the full series (a hold-out, if any, is joined back).
        make_forecaster: builds an unfitted forecaster (the same seed for every regime).
        regime: one of :data:`REGIMES`.
        config: schedule knobs.

    Example:
        >>> from domain_moe.timeseries.data import synthetic_panel
        >>> from functools import partial
        >>> make = partial(NeuralForecaster, lookback=12, epochs=1)
        >>> config = OnlineConfig(2, init_epochs=1, update_epochs=1)
        >>> res = run_online(synthetic_panel(4, 60, 4, 4), make, "partial", config)
        >>> len(res.forecasts), res.forecasts[0].shape
        (2, (4, 4))
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    config = config or OnlineConfig()
    origins = rolling_origins(panel, config.num_origins, config.step)
    result = OnlineResult(regime)
    model = make_forecaster()
    model.epochs = config.init_epochs
    model.fit(origins[0])
    result.init_seconds = model.train_seconds
    for r, origin in enumerate(origins):
        spent = 0.0
        if r > 0 and regime == "refit":
            model = make_forecaster()
            model.epochs = config.init_epochs
            model.fit(origin)
            spent = model.train_seconds
        elif r > 0 and regime in ("partial", "gate"):
            before = model.train_seconds
            model.update(origin, config.update_epochs, config.update_window, config.update_lr,
                         config.update_weight_decay, params="all" if regime == "partial" else "gate")
            spent = model.train_seconds - before
        out = model.forecast(origin)
        assert origin.test is not None
        result.forecasts.append(out["y"])
        result.seconds.append(spent if r > 0 else 0.0)
        result.mase.append(float(mase(out["y"], origin.test, origin.train, origin.period, scale="train").mean()))
        result.rmse.append(float(rmse(out["y"], origin.test).mean()))
        result.gate.append(out["gate"].mean(0).tolist())
    return result


def online_benchmark(datasets: Sequence[str], seeds: int = 3, out: str | Path = "online.json", root: str | None = None,
                     num_origins: int = 14, regimes: Sequence[str] = REGIMES,
                     config: OnlineConfig | None = None, **forecaster_kwargs: Any) -> list[dict[str, Any]]:
    """TS-2 of the spec: every regime over rolling origins, per seed; JSON records like the benchmark's.

    Defaults follow the spec for pmdarima ``taylor`` (half-hourly, m = h = 48): lookback 96, initial fit
    60 epochs, partial updates of 10 epochs on the newest 7 days (336 windows).
    """
    from domain_moe.timeseries.benchmark import _device

    config = config or OnlineConfig(num_origins=num_origins)
    out = Path(out)
    done: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    records = list(done)
    for dataset in datasets:
        panel = load_dataset(dataset, root)
        kwargs = {"lookback": 2 * panel.period if panel.period > 1 else 2 * panel.horizon, **forecaster_kwargs}
        for regime in regimes:
            if any(r["dataset"] == dataset and r["method"] == regime for r in done):
                continue
            runs = []
            for seed in range(seeds):
                print(f"[online] {dataset} / {regime} / seed {seed} ...", flush=True)
                start = time.perf_counter()
                make = functools.partial(NeuralForecaster, seed=seed, **kwargs)
                res = run_online(panel, make, regime, config)
                runs.append(res)
                print(f"[online]   mase {np.mean(res.mase):.4f}, update seconds {res.update_seconds:.1f}, "
                      f"wall {time.perf_counter() - start:.1f}s", flush=True)
            for metric, values in (
                ("mase_train", [float(np.mean(r.mase)) for r in runs]),
                ("rmse", [float(np.mean(r.rmse)) for r in runs]),
                ("update_seconds", [r.update_seconds for r in runs]),
            ):
                records.append({
                    "dataset": dataset, "method": regime, "metric": metric, "mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "n": len(values),
                    "values": values, "higher_is_better": False, "device": _device(),
                    "seconds": float(np.mean([r.update_seconds for r in runs])),
                })
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(records, indent=1))
    from domain_moe.timeseries.benchmark import markdown_table

    for metric in ("mase_train", "rmse", "update_seconds"):
        print(markdown_table(records, metric) + "\n")
    return records
