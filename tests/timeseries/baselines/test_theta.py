import numpy as np

from domain_moe.timeseries.baselines import SeasonalNaive, Theta
from domain_moe.timeseries.data import Panel


def test_theta_follows_a_linear_trend_and_handles_zeros():
    y = 5.0 + 2.0 * np.arange(30.0)
    fc = Theta().fit_predict(Panel([y], period=1, horizon=3))
    assert np.all(np.diff(fc[0]) > 0) and fc[0, 0] > y[-1]
    seasonal = np.tile([0.0, 4.0, 8.0, 4.0], 8) + np.arange(32.0)  # zeros force the additive decomposition
    model = Theta()
    fc = model.fit_predict(Panel([seasonal], period=4, horizon=4))
    naive = SeasonalNaive().fit_predict(Panel([seasonal], period=4, horizon=4))
    assert model.fallbacks == 0 and np.abs(fc - naive).max() < 8
