from dataclasses import replace

import numpy as np
import pytest
import torch

from domain_moe.timeseries.baselines import SeasonalNaive
from domain_moe.timeseries.data import (
    ForecastDataModule,
    Panel,
    SyntheticDataModule,
    TourismDataModule,
    WindowDataset,
    holdout,
    load_csv,
    load_dataset,
    load_ett,
    load_exchange_rate,
    load_illness,
    load_m4,
    load_pmdarima,
    load_statsmodels,
    load_tourism,
    rolling_origins,
    synthetic_panel,
)
from domain_moe.timeseries.metrics import mape, mase


@pytest.fixture(scope="module")
def tourism(data_root):
    if not (data_root / "timeseries" / "tourism").is_dir():
        pytest.skip(f"tourism data not found under {data_root}")
    return {f: load_tourism(data_root, f) for f in ("monthly", "quarterly", "yearly")}


def test_tourism_counts_horizons_and_header_rows(tourism):
    assert {f: (len(p), p.horizon, p.period) for f, p in tourism.items()} == {
        "monthly": (366, 24, 12), "quarterly": (427, 8, 4), "yearly": (518, 4, 1)}
    lengths = {f: (min(map(len, p.train)), int(np.median(list(map(len, p.train)))), max(map(len, p.train)))
               for f, p in tourism.items()}
    assert lengths == {"monthly": (67, 306, 309), "quarterly": (22, 102, 122), "yearly": (7, 23, 43)}
    # the yearly file has two header rows; Y1 starts right after them
    assert tourism["yearly"].train[0][0] == pytest.approx(25092.2284)


@pytest.mark.parametrize(
    ("freq", "mase_full", "mase_train", "mape_value"),
    [("yearly", 2.500, 3.007, 23.61), ("quarterly", 1.590, 1.699, 16.46), ("monthly", 1.543, 1.631, 22.56)],
)
def test_seasonal_naive_reproduces_the_competition_anchors(tourism, freq, mase_full, mase_train, mape_value):
    p = tourism[freq]
    fc = SeasonalNaive().fit_predict(p)
    assert mase(fc, p.test, p.train, p.period, "full").mean() == pytest.approx(mase_full, abs=5e-4)
    assert mase(fc, p.test, p.train, p.period, "train").mean() == pytest.approx(mase_train, abs=5e-4)
    assert mape(fc, p.test).mean() == pytest.approx(mape_value, abs=5e-3)


def test_missing_files_and_bad_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DOMAIN_MOE_DATA") as err:
        load_tourism(tmp_path, "monthly")
    assert str(tmp_path) in str(err.value)
    with pytest.raises(ValueError, match="frequency must be one of"):
        load_tourism(tmp_path, "weekly")
    with pytest.raises(FileNotFoundError, match="CSV file"):
        load_csv(tmp_path / "nope.csv", 1, 1)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("tourism_monthly")


def test_csv_gaps_ragged_ends_and_frequency_mismatch(tmp_path):
    path = tmp_path / "panel.csv"
    path.write_text("date,a,b\n2020-01-06,1,\n2020-01-13,2,5\n2020-01-20,3,6\n2020-01-27,4,7\n")
    panel = load_csv(path, period=1, horizon=1, freq="W")
    assert [s.tolist() for s in panel.train] == [[1, 2, 3, 4], [5, 6, 7]]
    with pytest.raises(ValueError, match="freq='MS' was requested"):
        load_csv(path, period=12, horizon=1, freq="MS")
    gap = tmp_path / "gap.csv"
    gap.write_text("a,b\n1,1\n,2\n3,3\n4,4\n")
    with pytest.raises(ValueError, match=r"series 'a' has 1 missing.*position 1"):
        load_csv(gap, 1, 1)
    assert len(load_dataset(f"csv:{path}:period=1,horizon=2").train) == 2


def test_m4_layout(tmp_path):
    (tmp_path / "Quarterly-train.csv").write_text('"V1","V2","V3","V4","V5","V6"\n"Q1",1,2,3,4,5\n"Q2",7,8,9,,\n')
    header = '"V1",' + ",".join(f'"V{i}"' for i in range(2, 10))
    rows = ['"Q1",' + ",".join(["6"] * 8), '"Q2",' + ",".join(["10"] * 8)]
    (tmp_path / "Quarterly-test.csv").write_text("\n".join([header, *rows]) + "\n")
    panel = load_dataset(f"m4:{tmp_path}:Quarterly")
    assert panel.names == ["Q1", "Q2"] and panel.period == 4 and panel.test.shape == (2, 8)
    assert panel.train[1].tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="Monthly horizon is 18"):
        (tmp_path / "Monthly-train.csv").write_text((tmp_path / "Quarterly-train.csv").read_text())
        (tmp_path / "Monthly-test.csv").write_text((tmp_path / "Quarterly-test.csv").read_text())
        load_m4(tmp_path, "Monthly")
    with pytest.raises(FileNotFoundError, match=r"Yearly-train\.csv"):
        load_m4(tmp_path, "Yearly")


def test_other_stored_panels(data_root):
    if not (data_root / "timeseries" / "ETT-small").is_dir():
        pytest.skip("shared time-series data not found")
    ett = load_ett(data_root, "ETTh2")
    assert len(ett) == 7 and len(ett.train[0]) == 14400 and ett.names[-1] == "OT" and ett.period == 24
    ex = load_exchange_rate(data_root)
    assert len(ex) == 8 and len(ex.train[0]) == 7588
    ili = load_illness(data_root)
    assert len(ili) == 7 and len(ili.train[0]) == 966 and ili.period == 52


def test_package_series():
    macro = load_statsmodels("macrodata")
    assert len(macro) == 7 and len(macro.train[0]) == 203 and macro.period == 4
    co2 = load_statsmodels("co2")  # its 59 missing weeks are interpolated
    assert np.isfinite(co2.train[0]).all()
    assert len(load_statsmodels("elec_equip").train[0]) == 257
    assert load_pmdarima("taylor").period == 48 and len(load_pmdarima("taylor").train[0]) == 4032
    with pytest.raises(ValueError, match="name must be one of"):
        load_pmdarima("gasoline")


def test_panel_validation():
    with pytest.raises(ValueError, match="missing/non-finite"):
        Panel([np.array([1.0, np.nan, 2.0])], 1, 1)
    with pytest.raises(ValueError, match=r"test must have shape \[N=1, horizon=2\]"):
        Panel([np.arange(5.0)], 1, 2, test=np.zeros((1, 3)))


def test_holdout_and_rolling_origins():
    panel = synthetic_panel(num_series=2, length=40, period=4, horizon=4)
    origins = rolling_origins(panel, num_origins=3, step=2)
    assert [len(p.train[0]) for p in origins] == [36, 38, 40]
    np.testing.assert_array_equal(origins[-1].test, panel.test)
    short = Panel([np.arange(30.0), np.arange(10.0)], period=4, horizon=8, names=["long", "short"])
    with pytest.raises(ValueError, match=r"series 'short' has 10 observations.*at least 13"):
        holdout(short)


def test_window_dataset_scaling_and_inverse():
    panel = synthetic_panel(num_series=3, length=30, period=4, horizon=4)
    for norm, residual in (("window", False), ("series", True), ("none", False)):
        data = WindowDataset(panel, lookback=8, normalization=norm, residual=residual)
        assert len(data) == 3 * (30 - 8 - 4 + 1)
        batch = data.batch()
        # the scaled target maps back to the raw series values
        raw = np.stack([np.lib.stride_tricks.sliding_window_view(s, 12)[:, 8:] for s in panel.train]).reshape(-1, 4)
        np.testing.assert_allclose(WindowDataset.to_original(batch["y"], batch).numpy(), raw, rtol=1e-5)
    assert batch["age"][:19].tolist() == list(range(18, -1, -1))
    fc = WindowDataset(panel, lookback=8, forecast=True).batch()
    np.testing.assert_allclose(WindowDataset.to_original(fc["y"], fc).numpy(), panel.test, rtol=1e-5)
    # short series are left-padded in forecast windows
    short = WindowDataset(Panel([np.array([2.0, 3.0])], 1, 1, test=np.array([[4.0]])), lookback=4, forecast=True)
    assert (short.x[0] * short.scale[0]).tolist() == pytest.approx([2.0, 2.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="lookback \\+ horizon = 43"):
        WindowDataset(panel, lookback=39)
    with pytest.raises(ValueError, match="normalization must be one of"):
        WindowDataset(panel, lookback=4, normalization="minmax")


def test_datamodules(data_root):
    dm = SyntheticDataModule(num_series=4, length=60, period=6, horizon=6, lookback=12, batch_size=16)
    assert (dm.input_size, dm.horizon) == (12, 6)  # known before setup, for the CLI links
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (16, 12) and batch["y"].shape == (16, 6)
    assert len(dm.val_set) == 4 and len(dm.test_set) == 4
    np.testing.assert_allclose(WindowDataset.to_original(dm.test_set.y, dm.test_set.batch()).numpy(), dm.panel.test,
                               rtol=1e-5)
    assert TourismDataModule("yearly", lookback=2).horizon == 4
    assert ForecastDataModule("statsmodels:macrodata").horizon == 8
    with pytest.raises(ValueError, match="frequency must be one of"):
        TourismDataModule("weekly")
    with pytest.raises(ValueError, match="batch_size"):
        ForecastDataModule(batch_size=0)


def test_seeded_determinism_of_shuffle():
    def first():
        dm = SyntheticDataModule(batch_size=8, seed=3)
        dm.setup()
        return next(iter(dm.train_dataloader()))["x"]

    torch.testing.assert_close(first(), first(), rtol=0, atol=0)
    assert replace(synthetic_panel(seed=1)).train[0][0] == synthetic_panel(seed=1).train[0][0]
