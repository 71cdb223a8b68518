import numpy as np

from domain_moe.timeseries.baselines import ARIMA
from domain_moe.timeseries.data import Panel


def test_random_walk_with_drift_is_extrapolated():
    rng = np.random.default_rng(0)
    y = 10 + np.cumsum(3.0 + 0.01 * rng.standard_normal(40))
    fc = ARIMA(orders=((0, 1, 0),)).fit_predict(Panel([y], period=1, horizon=3))
    np.testing.assert_allclose(fc[0], y[-1] + 3.0 * np.arange(1, 4), rtol=1e-2)


def test_seasonal_airline_model_runs_on_a_seasonal_series():
    t = np.arange(60.0)
    y = 50 + t + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(1).normal(0, 0.5, 60)
    model = ARIMA(orders=((0, 1, 1),))
    fc = model.fit_predict(Panel([y], period=12, horizon=12))
    assert fc.shape == (1, 12) and model.fallbacks == 0
    truth = 50 + np.arange(60.0, 72.0) + 10 * np.sin(2 * np.pi * np.arange(60.0, 72.0) / 12)
    assert np.abs(fc[0] - truth).mean() < 3.0
