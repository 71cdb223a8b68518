import json

import numpy as np
import pytest

from domain_moe.timeseries import benchmark
from domain_moe.timeseries.benchmark import make_method, markdown_table, prepare, run_benchmark

DATA = "synthetic:num_series=4,length=60,period=4,horizon=4"


def test_records_follow_the_contract_and_resume(tmp_path, monkeypatch):
    out = tmp_path / "results.json"
    records = run_benchmark([DATA], ["seasonal-naive", "moe:epochs=1"], seeds=2, out=out, progress=False)
    keys = {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}
    assert all(keys <= set(r) for r in records)
    by = {(r["method"], r["metric"]): r for r in records}
    assert by[("seasonal-naive", "mase")]["n"] == 1 and by[("moe:epochs=1", "mase")]["n"] == 2
    assert ("moe:epochs=1", "min_gate_usage") in by
    assert json.loads(out.read_text()) == records
    # a second run recomputes nothing: every cell comes from the cache
    monkeypatch.setattr(benchmark, "run_cell", lambda *a, **k: pytest.fail("recomputed a finished cell"))
    assert run_benchmark([DATA], ["seasonal-naive", "moe:epochs=1"], seeds=2, out=out, progress=False) == records
    table = markdown_table(records, "mase")
    assert table.splitlines()[0] == f"| mase | {DATA} |" and "± " in table


def test_seasonal_naive_cell_equals_hand_computation(tmp_path):
    setup = prepare(DATA)
    fc = benchmark.run_cell(setup, "seasonal-naive", 0)["forecasts"][0]
    np.testing.assert_array_equal(fc, np.stack([s[-4:] for s in setup.origins[0].train]))


def test_method_names_and_options():
    setup = prepare(DATA)
    assert make_method("expert-loss-moe:gamma=1.0,variant=gate", setup, 0).variant == "gate"
    single = make_method("single-expert", setup, 0)
    assert (single.num_experts, single.num_linear, single.gamma) == (1, 0, 0.0)
    with pytest.raises(ValueError, match="unknown method"):
        make_method("prophet", setup, 0)


def test_ett_protocol(data_root):
    if not (data_root / "timeseries" / "ETT-small").is_dir():
        pytest.skip("ETT data not found")
    setup = prepare("etth1:horizon=96", str(data_root), origins=3)
    assert setup.metrics == ("mse", "mae") and len(setup.origins) == 3
    assert len(setup.fit_panel.train[0]) == 8640 and setup.origins[0].test.shape == (7, 96)
    assert abs(setup.fit_panel.train[0].mean()) < 1e-6  # z-scored on the training months
