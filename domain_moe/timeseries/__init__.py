"""Time-series forecasting: the expert-loss MoE of El Mahtout & Ziel with partial online learning.

Submodules: ``models`` (torch-only networks), ``losses`` (the expert-specific objective), ``data``
(loaders, rolling origins, windows, DataModules), ``metrics``, ``baselines`` (seasonal naive, ETS, ARIMA,
Theta behind one ``fit/predict`` interface), ``forecaster`` (the neural models behind the same interface),
``online`` (partial online learning vs full refit), ``tasks`` (``ForecastTask``), ``cli`` and ``benchmark``.

Importing ``domain_moe.timeseries`` itself is cheap; statsmodels and pandas are required only by the
loaders and baselines that use them (each raises one error naming the ``timeseries`` extra).
"""

__all__: list[str] = []
