"""Statistical baselines behind the common ``fit(panel)`` / ``predict()`` interface.

statsmodels is imported inside each model's ``forecast_one``, so importing this package needs numpy only.
"""

from domain_moe.timeseries.baselines.arima import ARIMA
from domain_moe.timeseries.baselines.base import Forecaster, LocalForecaster
from domain_moe.timeseries.baselines.ets import ETS
from domain_moe.timeseries.baselines.seasonal_naive import SeasonalNaive, seasonal_naive
from domain_moe.timeseries.baselines.theta import Theta

__all__ = ["ARIMA", "ETS", "Forecaster", "LocalForecaster", "SeasonalNaive", "Theta", "seasonal_naive"]
