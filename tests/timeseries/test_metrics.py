import numpy as np
import pytest
import torch

from domain_moe.timeseries.metrics import (
    MeanAbsoluteScaledError,
    evaluate_forecasts,
    mae,
    mape,
    mase,
    mase_scale,
    mse,
    rmse,
    smape,
)

FC = np.array([[10.0, 12.0], [5.0, 5.0]])
ACT = np.array([[11.0, 10.0], [4.0, 6.0]])


def test_mape_smape_rmse_mae_by_hand():
    np.testing.assert_allclose(mape(FC, ACT), [100 * (1 / 11 + 2 / 10) / 2, 100 * (1 / 4 + 1 / 6) / 2])
    np.testing.assert_allclose(smape(FC, ACT), [100 * (2 * 1 / 21 + 2 * 2 / 22) / 2, 100 * (2 / 9 + 2 / 11) / 2],
                               rtol=1e-6)
    np.testing.assert_allclose(rmse(FC, ACT), [np.sqrt((1 + 4) / 2), 1.0])
    np.testing.assert_allclose(mse(FC, ACT), [2.5, 1.0])
    np.testing.assert_allclose(mae(FC, ACT), [1.5, 1.0])


def test_mase_competition_and_training_scale_by_hand():
    insample = [np.array([1.0, 3.0, 2.0, 4.0, 3.0]), np.array([2.0, 2.0, 4.0, 4.0])]
    # period 2: |2-1|,|4-3|,|3-2| -> 1 ; series 2: |4-2|,|4-2| -> 2
    train = mase(FC, ACT, insample, period=2, scale="train")
    np.testing.assert_allclose(train, [1.5 / 1.0, 1.0 / 2.0])
    # full scale adds the hold-out: [1,3,2,4,3,11,10] -> |2-1|,|4-3|,|3-2|,|11-4|,|10-3| = 1,1,1,7,7 -> 17/5
    full = mase(FC, ACT, insample, period=2, scale="full")
    s2 = np.mean([2, 2, 0, 2])  # [2,2,4,4,4,6]: |4-2|,|4-2|,|4-4|,|6-4|
    np.testing.assert_allclose(full, [1.5 / (17 / 5), 1.0 / s2])


def test_mase_scale_falls_back_to_naive_lag_for_short_series():
    assert mase_scale([1.0, 2.0, 4.0], period=4) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"insample": [1.0, np.nan, 2.0], "period": 1}, "NaN"),
        ({"insample": [1.0], "period": 1}, "at least 2"),
        ({"insample": [2.0, 2.0, 2.0], "period": 1}, "constant"),
        ({"insample": [1.0, 2.0], "period": 0}, "period"),
    ],
)
def test_mase_scale_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mase_scale(**kwargs)


def test_bad_shapes_and_nan_are_named():
    with pytest.raises(ValueError, match="same shape"):
        mape(FC, ACT[:, :1])
    with pytest.raises(ValueError, match="forecast contains 1 NaN"):
        rmse(np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="scale must be one of"):
        mase(FC, ACT, [np.arange(5.0)] * 2, 1, scale="test")
    with pytest.raises(ValueError, match="one series per forecast row"):
        mase(FC, ACT, [np.arange(5.0)], 1)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_forecasts(FC, ACT, [np.arange(5.0)] * 2, 1, ("mase", "r2"))


def test_torchmetric_mase_matches_function():
    insample = [np.array([1.0, 3.0, 2.0, 4.0, 3.0]), np.array([2.0, 2.0, 4.0, 4.0])]
    scales = torch.tensor([mase_scale(s, 2) for s in insample])
    metric = MeanAbsoluteScaledError()
    metric.update(torch.tensor(FC[:1]), torch.tensor(ACT[:1]), scales[:1])
    metric.update(torch.tensor(FC[1:]), torch.tensor(ACT[1:]), scales[1:])
    assert float(metric.compute()) == pytest.approx(mase(FC, ACT, insample, 2, "train").mean())
    with pytest.raises(ValueError, match="scale must be"):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3))
