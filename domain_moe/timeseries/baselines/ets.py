"""ETS (exponential smoothing state space) with an AICc search over the standard additive-error models."""

from __future__ import annotations

import warnings

import numpy as np

from domain_moe.timeseries.baselines.base import LocalForecaster
from domain_moe.utils.imports import require

__all__ = ["ETS"]


class ETS(LocalForecaster):
    """statsmodels ``ETSModel`` per series, chosen by AICc (Hyndman et al. 2002 style automatic ETS).

    statsmodels has no automatic ETS, so the grid is explicit: additive errors x trend {none, additive,
    additive damped} x season {none, additive, multiplicative}. Multiplicative seasons only for strictly
    positive series; seasonal models only when the series holds two full seasons.

    Args:
        damped: include damped-trend models.
        seasonal: include seasonal models (when ``m > 1``).
        multiplicative: include multiplicative seasons for positive series.

    Example:
        >>> from domain_moe.timeseries.data import synthetic_panel
        >>> ETS().fit_predict(synthetic_panel(num_series=1, length=36, period=4, horizon=4)).shape  # doctest: +SKIP
        (1, 4)
    """

    name = "ets"

    def __init__(self, damped: bool = True, seasonal: bool = True, multiplicative: bool = True) -> None:
        super().__init__()
        self.damped, self.seasonal, self.multiplicative = damped, seasonal, multiplicative

    def candidates(self, series: np.ndarray, period: int) -> list[dict]:
        """The ETSModel keyword sets searched for one series."""
        trends: list[tuple[str | None, bool]] = [(None, False), ("add", False)]
        if self.damped:
            trends.append(("add", True))
        seasons: list[str | None] = [None]
        if self.seasonal and period > 1 and len(series) >= 2 * period:
            seasons.append("add")
            if self.multiplicative and (series > 0).all():
                seasons.append("mul")
        out = []
        for trend, damped in trends:
            if trend is not None and len(series) < 4:
                continue
            for season in seasons:
                out.append({"error": "add", "trend": trend, "damped_trend": damped, "seasonal": season,
                            "seasonal_periods": period if season else None})
        return out

    def forecast_one(self, series: np.ndarray, period: int, horizon: int) -> np.ndarray:
        """Fit every candidate, keep the lowest finite AICc, forecast."""
        ets = require("statsmodels.tsa.exponential_smoothing.ets", extra="timeseries", feature="ETS baseline")
        best, best_aicc = None, np.inf
        for kwargs in self.candidates(series, period):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    fit = ets.ETSModel(series, **kwargs).fit(disp=False)
                except (ValueError, np.linalg.LinAlgError):
                    continue
                aicc = fit.aicc
                if np.isfinite(aicc) and aicc < best_aicc:
                    fc = np.asarray(fit.forecast(horizon))
                    if np.isfinite(fc).all():
                        best, best_aicc = fc, aicc
        if best is None:
            raise ValueError("no ETS model could be fitted")
        return best
