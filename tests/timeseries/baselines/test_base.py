import numpy as np

from domain_moe.timeseries.baselines import LocalForecaster
from domain_moe.timeseries.data import Panel


class Failing(LocalForecaster):
    def forecast_one(self, series, period, horizon):
        if series[0] > 0:
            raise ValueError("cannot fit")
        return np.full(horizon, np.nan) if series[0] < 0 else np.zeros(horizon)


def test_failed_fits_fall_back_to_seasonal_naive_and_are_counted():
    panel = Panel([np.array([1.0, 2.0, 3.0]), np.array([-1.0, 5.0, 6.0]), np.array([0.0, 1.0, 2.0])], 1, 2)
    model = Failing().fit(panel)
    np.testing.assert_array_equal(model.predict(), [[3, 3], [6, 6], [0, 0]])
    assert model.fallbacks == 2
    other = Panel([np.array([0.0, 9.0])], 1, 2)
    np.testing.assert_array_equal(model.predict(other), [[0, 0]])
