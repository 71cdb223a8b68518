import numpy as np

from domain_moe.timeseries.baselines import ETS
from domain_moe.timeseries.data import Panel


def test_recovers_a_noiseless_trend_and_season():
    t = np.arange(48.0)
    season = np.tile([5.0, -5.0, 2.0, -2.0], 13)
    y = 100 + 2 * np.arange(52.0) + season
    fc = ETS(damped=False, multiplicative=False).fit_predict(Panel([y[:48]], period=4, horizon=4))
    np.testing.assert_allclose(fc[0], y[48:], rtol=0.02)
    assert t.size == 48


def test_candidate_grid_respects_positivity_and_length():
    model = ETS()
    pos = model.candidates(np.arange(1.0, 25.0), period=4)
    assert {c["seasonal"] for c in pos} == {None, "add", "mul"} and len(pos) == 9
    with_zero = model.candidates(np.arange(0.0, 24.0), period=4)
    assert "mul" not in {c["seasonal"] for c in with_zero}
    short = model.candidates(np.arange(1.0, 7.0), period=4)
    assert {c["seasonal"] for c in short} == {None}
