"""Seasonal naive: repeat the last season (the naive method for ``m = 1``)."""

from __future__ import annotations

import numpy as np

from domain_moe.timeseries.baselines.base import LocalForecaster

__all__ = ["SeasonalNaive", "seasonal_naive"]


def seasonal_naive(series: np.ndarray, period: int, horizon: int) -> np.ndarray:
    """``y_{T+h} = y_{T+h-m(floor((h-1)/m)+1)}``; falls back to naive when the series is shorter than ``m``.

    Example:
        >>> seasonal_naive(np.array([1.0, 2.0, 3.0, 4.0]), period=2, horizon=3).tolist()
        [3.0, 4.0, 3.0]
    """
    series = np.asarray(series, dtype=np.float64)
    if series.size == 0:
        raise ValueError("series is empty: seasonal naive needs at least one observation")
    lag = period if series.size >= period else 1
    last = series[-lag:]
    return np.tile(last, -(-horizon // lag))[:horizon]


class SeasonalNaive(LocalForecaster):
    """The competition benchmark: seasonal naive for ``m > 1``, naive for ``m = 1``.

    Example:
        >>> from domain_moe.timeseries.data import synthetic_panel
        >>> SeasonalNaive().fit_predict(synthetic_panel(num_series=2, length=24, period=4, horizon=4)).shape
        (2, 4)
    """

    name = "seasonal-naive"

    def forecast_one(self, series: np.ndarray, period: int, horizon: int) -> np.ndarray:
        """Repeat the last season."""
        return seasonal_naive(series, period, horizon)
