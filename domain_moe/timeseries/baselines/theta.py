"""The Theta method (Assimakopoulos & Nikolopoulos 2000), statsmodels' ``ThetaModel``."""

from __future__ import annotations

import warnings

import numpy as np

from domain_moe.timeseries.baselines.base import LocalForecaster
from domain_moe.utils.imports import require

__all__ = ["Theta"]


class Theta(LocalForecaster):
    """statsmodels ``ThetaModel`` per series, deseasonalised when ``m > 1`` and two seasons are available.

    The seasonal decomposition is multiplicative for strictly positive series and additive otherwise
    (the tourism data hold zeros in 73 series); statsmodels' seasonality test decides whether to apply it.

    Args:
        theta: weight of the linear trend line (2 is the classic Theta method).

    Example:
        >>> Theta().theta
        2.0
    """

    name = "theta"

    def __init__(self, theta: float = 2.0) -> None:
        super().__init__()
        self.theta = float(theta)

    def forecast_one(self, series: np.ndarray, period: int, horizon: int) -> np.ndarray:
        """Fit and forecast one series."""
        module = require("statsmodels.tsa.forecasting.theta", extra="timeseries", feature="Theta baseline")
        deseasonalize = period > 1 and len(series) >= 2 * period
        method = "multiplicative" if (series > 0).all() else "additive"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = module.ThetaModel(series, period=period if period > 1 else None, deseasonalize=deseasonalize,
                                      method=method)
            return np.asarray(model.fit().forecast(horizon, theta=self.theta))
