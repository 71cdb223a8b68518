from functools import partial

import numpy as np
import pytest

from domain_moe.timeseries.data import synthetic_panel
from domain_moe.timeseries.forecaster import NeuralForecaster
from domain_moe.timeseries.online import OnlineConfig, online_benchmark, run_online

PANEL = synthetic_panel(num_series=4, length=80, period=4, horizon=4, seed=2)
MAKE = partial(NeuralForecaster, lookback=8, seed=0)
CONFIG = OnlineConfig(num_origins=3, init_epochs=3, update_epochs=2, update_window=8)


def test_regimes_share_the_initial_fit_and_differ_afterwards():
    results = {r: run_online(PANEL, MAKE, r, CONFIG) for r in ("partial", "gate", "refit", "frozen")}
    first = results["frozen"].forecasts[0]
    for res in results.values():
        np.testing.assert_allclose(res.forecasts[0], first, rtol=1e-6)  # same seed, same initial fit
        assert len(res.forecasts) == 3 and len(res.mase) == 3 and res.seconds[0] == 0.0
    assert results["frozen"].update_seconds == 0.0
    assert results["partial"].update_seconds > 0 and results["refit"].update_seconds > 0
    assert not np.allclose(results["partial"].forecasts[2], results["frozen"].forecasts[2])


def test_bad_regime():
    with pytest.raises(ValueError, match="regime must be one of"):
        run_online(PANEL, MAKE, "retrain", CONFIG)


def test_online_benchmark_records_and_resume(tmp_path):
    out = tmp_path / "online.json"
    records = online_benchmark(["synthetic:num_series=3,length=60,period=4,horizon=4"], seeds=1, out=out,
                               regimes=("partial", "frozen"), config=CONFIG, epochs=1)
    assert {(r["method"], r["metric"]) for r in records} >= {("partial", "mase_train"), ("frozen", "update_seconds")}
    again = online_benchmark(["synthetic:num_series=3,length=60,period=4,horizon=4"], seeds=1, out=out,
                             regimes=("partial", "frozen"), config=CONFIG)
    assert again == records  # nothing recomputed
