import numpy as np
import pytest

from domain_moe.timeseries.baselines import SeasonalNaive, seasonal_naive
from domain_moe.timeseries.data import Panel


def test_repeats_the_last_season_and_falls_back_to_naive():
    assert seasonal_naive(np.array([1.0, 2, 3, 4, 5, 6]), period=4, horizon=6).tolist() == [3, 4, 5, 6, 3, 4]
    assert seasonal_naive(np.array([1.0, 2]), period=4, horizon=3).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="empty"):
        seasonal_naive(np.array([]), 1, 1)


def test_forecaster_interface():
    panel = Panel([np.arange(8.0), np.arange(5.0)], period=2, horizon=3)
    fc = SeasonalNaive().fit_predict(panel)
    np.testing.assert_array_equal(fc, [[6, 7, 6], [3, 4, 3]])
    with pytest.raises(RuntimeError, match="before fit"):
        SeasonalNaive().predict()
    with pytest.raises(TypeError, match="panel must be a Panel"):
        SeasonalNaive().fit([np.arange(3.0)])
