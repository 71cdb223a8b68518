"""The interface every forecaster of the benchmark shares: ``fit(panel)`` then ``predict()``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from domain_moe.timeseries.data import Panel

__all__ = ["Forecaster", "LocalForecaster"]


class Forecaster(ABC):
    """Fits on a :class:`~domain_moe.timeseries.data.Panel` and forecasts ``horizon`` steps after its origin.

    Statistical baselines fit one model per series (:class:`LocalForecaster`); the neural forecasters fit
    one global model on all series. ``predict`` returns ``[N, H]`` in the series' own units.
    """

    #: Method name used in benchmark tables.
    name: str = "forecaster"

    @abstractmethod
    def fit(self, panel: Panel) -> Forecaster:
        """Fit on the training part of every series of ``panel``; returns ``self``."""

    @abstractmethod
    def predict(self, panel: Panel | None = None) -> np.ndarray:
        """Forecasts ``[N, H]`` after the end of each series of ``panel`` (default: the fitted panel).

        Local models refit on ``panel`` when one is given; global models reuse their fitted weights.
        """

    def fit_predict(self, panel: Panel) -> np.ndarray:
        """``fit(panel).predict()``."""
        return self.fit(panel).predict()


class LocalForecaster(Forecaster):
    """One model per series: subclasses implement :meth:`forecast_one` on a single 1-d series.

    A fit that raises or returns non-finite values falls back to the seasonal naive forecast, and
    ``fallbacks`` counts how often that happened (reported in benchmark logs, never silent).
    """

    def __init__(self) -> None:
        self.panel: Panel | None = None
        self.fallbacks = 0

    def fit(self, panel: Panel) -> LocalForecaster:
        """Store the panel; the per-series models are fitted lazily in :meth:`predict`."""
        if not isinstance(panel, Panel):
            raise TypeError(f"{type(self).__name__}.fit: panel must be a Panel, got {type(panel).__name__}")
        self.panel = panel
        return self

    def predict(self, panel: Panel | None = None) -> np.ndarray:
        """Fit and forecast each series of ``panel`` (default: the fitted one)."""
        panel = self.panel if panel is None else panel
        if panel is None:
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        from domain_moe.timeseries.baselines.seasonal_naive import seasonal_naive

        out = []
        self.fallbacks = 0
        for series in panel.train:
            try:
                fc = np.asarray(self.forecast_one(series, panel.period, panel.horizon), dtype=np.float64)
                ok = fc.shape == (panel.horizon,) and np.isfinite(fc).all()
            except (ValueError, np.linalg.LinAlgError, IndexError, ZeroDivisionError):
                ok = False
            if not ok:
                self.fallbacks += 1
                fc = seasonal_naive(series, panel.period, panel.horizon)
            out.append(fc)
        return np.stack(out)

    @abstractmethod
    def forecast_one(self, series: np.ndarray, period: int, horizon: int) -> np.ndarray:
        """Forecast one series ``[T] -> [H]``."""
