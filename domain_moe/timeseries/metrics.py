"""Forecast accuracy: MASE (competition seasonal scaling), sMAPE, MAPE, RMSE, MAE, MSE.

Per-series functions take a forecast and its actuals for ``N`` series and ``H`` horizon steps and return
one value per series, so tables can report means and medians and paired tests can compare methods
series by series. MAPE, sMAPE, RMSE, MAE and MSE come from torchmetrics; MASE (which torchmetrics does
not have) is our own, following the tourism competition (Athanasopoulos et al., IJF 2011) and M4
(Makridakis et al., IJF 2020): the MAE of the forecast divided by the in-sample MAE of the seasonal
naive method with lag ``m``.

The tourism competition's published MASE figures are reproduced only when the scale is computed over
the whole series, training part and hold-out together (``scale="full"``); the Monash archive and M4 use
the training part alone (``scale="train"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.regression import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    symmetric_mean_absolute_percentage_error,
)

__all__ = [
    "MASE_SCALES",
    "MeanAbsoluteScaledError",
    "evaluate_forecasts",
    "mae",
    "mape",
    "mase",
    "mase_scale",
    "mse",
    "rmse",
    "smape",
]

MASE_SCALES = ("full", "train")


def _as_2d(name: str, value: np.ndarray | Tensor | Sequence[Sequence[float]]) -> Tensor:
    out = torch.as_tensor(np.asarray(value, dtype=np.float64))
    if out.dim() == 1:
        out = out.unsqueeze(0)
    if out.dim() != 2:
        raise ValueError(f"{name} must have shape [N, H] (or [H] for one series), got {tuple(out.shape)}")
    return out


def _pair(forecast: np.ndarray | Tensor, actual: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
    pred, true = _as_2d("forecast", forecast), _as_2d("actual", actual)
    if pred.shape != true.shape:
        raise ValueError(f"forecast and actual must have the same shape [N, H], got {tuple(pred.shape)} and "
                         f"{tuple(true.shape)}")
    if pred.numel() == 0:
        raise ValueError("forecast is empty: there is nothing to score")
    if torch.isnan(pred).any():
        raise ValueError(f"forecast contains {int(torch.isnan(pred).sum())} NaN values")
    if torch.isnan(true).any():
        raise ValueError(f"actual contains {int(torch.isnan(true).sum())} NaN values")
    return pred, true


def _per_series(fn, forecast, actual, **kwargs) -> np.ndarray:
    pred, true = _pair(forecast, actual)
    return np.array([float(fn(p, t, **kwargs)) for p, t in zip(pred, true)])


def mape(forecast: np.ndarray | Tensor, actual: np.ndarray | Tensor) -> np.ndarray:
    """Mean absolute percentage error in percent, per series (torchmetrics, times 100).

    Shapes:
        - forecast, actual: ``[N, H]``
        - output: ``[N]``

    Example:
        >>> mape([[110.0, 90.0]], [[100.0, 100.0]]).round(6).tolist()
        [10.0]
    """
    return 100.0 * _per_series(mean_absolute_percentage_error, forecast, actual)


def smape(forecast: np.ndarray | Tensor, actual: np.ndarray | Tensor) -> np.ndarray:
    """Symmetric MAPE in percent (``200 |F - A| / (|F| + |A|)``, M4's definition), per series.

    Shapes:
        - forecast, actual: ``[N, H]``
        - output: ``[N]``
    """
    return 100.0 * _per_series(symmetric_mean_absolute_percentage_error, forecast, actual)


def rmse(forecast: np.ndarray | Tensor, actual: np.ndarray | Tensor) -> np.ndarray:
    """Root mean squared error per series (torchmetrics).

    Shapes:
        - forecast, actual: ``[N, H]``
        - output: ``[N]``
    """
    return _per_series(mean_squared_error, forecast, actual, squared=False)


def mse(forecast: np.ndarray | Tensor, actual: np.ndarray | Tensor) -> np.ndarray:
    """Mean squared error per series (torchmetrics).

    Shapes:
        - forecast, actual: ``[N, H]``
        - output: ``[N]``
    """
    return _per_series(mean_squared_error, forecast, actual)


def mae(forecast: np.ndarray | Tensor, actual: np.ndarray | Tensor) -> np.ndarray:
    """Mean absolute error per series (torchmetrics).

    Shapes:
        - forecast, actual: ``[N, H]``
        - output: ``[N]``
    """
    return _per_series(mean_absolute_error, forecast, actual)


def mase_scale(insample: np.ndarray | Sequence[float], period: int) -> float:
    """In-sample MAE of the seasonal naive method: ``mean_t |y_t - y_{t-m}|``.

    A series with no complete seasonal difference (``len(insample) <= period``) falls back to the
    naive lag ``m = 1``, as the Monash archive does for series shorter than one season.

    Args:
        insample: the observations the scale is computed on.
        period: seasonal period ``m`` (1 for non-seasonal data).

    Raises:
        ValueError: a period below 1, NaN values, fewer than two observations, or a zero scale (a
            constant series, for which MASE is undefined).

    Example:
        >>> mase_scale([1.0, 2.0, 4.0, 7.0], period=1)
        2.0
    """
    if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 1:
        raise ValueError(f"period must be an int >= 1, got {period!r}")
    y = np.asarray(insample, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"insample must be one series of shape [T], got shape {y.shape}")
    if np.isnan(y).any():
        raise ValueError(f"insample contains {int(np.isnan(y).sum())} NaN values; fill or drop the gaps first")
    if y.size < 2:
        raise ValueError(f"insample needs at least 2 observations for a MASE scale, got {y.size}")
    lag = int(period) if y.size > period else 1
    scale = float(np.mean(np.abs(y[lag:] - y[:-lag])))
    if scale == 0.0:
        raise ValueError("insample is constant at the seasonal lag (MASE scale 0): MASE is undefined")
    return scale


def mase(
    forecast: np.ndarray | Tensor,
    actual: np.ndarray | Tensor,
    insample: Sequence[np.ndarray],
    period: int,
    scale: str = "full",
) -> np.ndarray:
    """Mean absolute scaled error per series.

    Args:
        forecast: point forecasts.
        actual: the hold-out values.
        insample: each series' training part (variable lengths).
        period: seasonal period ``m`` of the scale.
        scale: ``"full"`` (training part + hold-out, the tourism competition's published figures) or
            ``"train"`` (training part only, Monash and M4).

    Shapes:
        - forecast, actual: ``[N, H]``
        - output: ``[N]``

    Example:
        >>> mase([[3.0, 3.0]], [[4.0, 5.0]], [[1.0, 2.0, 3.0]], period=1, scale="train").tolist()
        [1.5]
    """
    if scale not in MASE_SCALES:
        raise ValueError(f"scale must be one of {MASE_SCALES}, got {scale!r}")
    pred, true = _pair(forecast, actual)
    if len(insample) != pred.shape[0]:
        raise ValueError(f"insample must hold one series per forecast row ({pred.shape[0]}), got {len(insample)}")
    out = np.empty(pred.shape[0])
    for i, (p, t, hist) in enumerate(zip(pred.numpy(), true.numpy(), insample)):
        hist = np.asarray(hist, dtype=np.float64)
        base = np.concatenate([hist, t]) if scale == "full" else hist
        out[i] = np.mean(np.abs(p - t)) / mase_scale(base, period)
    return out


def evaluate_forecasts(
    forecast: np.ndarray,
    actual: np.ndarray,
    insample: Sequence[np.ndarray],
    period: int,
    metrics: Sequence[str] = ("mase", "smape", "mape", "rmse"),
) -> dict[str, np.ndarray]:
    """Several per-series metrics at once; ``"mase"`` is the competition scale, ``"mase_train"`` the other.

    Example:
        >>> sorted(evaluate_forecasts([[2.0]], [[3.0]], [[1.0, 2.0]], 1, ("mase", "rmse")))
        ['mase', 'rmse']
    """
    funcs = {"smape": smape, "mape": mape, "rmse": rmse, "mse": mse, "mae": mae}
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        if name == "mase":
            out[name] = mase(forecast, actual, insample, period, "full")
        elif name == "mase_train":
            out[name] = mase(forecast, actual, insample, period, "train")
        elif name in funcs:
            out[name] = funcs[name](forecast, actual)
        else:
            raise ValueError(f"metrics: unknown metric {name!r}; choose from {[*funcs, 'mase', 'mase_train']}")
    return out


class MeanAbsoluteScaledError(Metric):
    """MASE accumulated over batches of windows, for logging in a Lightning task.

    Each window carries its own scale (its series' in-sample seasonal-naive MAE), so the metric is the
    mean over windows of ``mean_h |F - A| / scale``. Keyword arguments go to ``torchmetrics.Metric``.

    Shapes:
        - preds, target: ``[B, H]``
        - scale: ``[B]``
        - output: ``[]``

    Example:
        >>> metric = MeanAbsoluteScaledError()
        >>> metric.update(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0]]), torch.tensor([0.5]))
        >>> float(metric.compute())
        1.0
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, scale: Tensor) -> None:
        """Add a batch: ``preds``/``target`` ``[B, H]``, ``scale`` ``[B]`` (positive)."""
        if preds.shape != target.shape or preds.dim() != 2:
            raise ValueError(
                f"preds and target must both be [B, H], got {tuple(preds.shape)} and {tuple(target.shape)}"
            )
        if scale.shape != preds.shape[:1]:
            raise ValueError(f"scale must be [B={preds.shape[0]}], got {tuple(scale.shape)}")
        err = (preds - target).abs().mean(-1).double() / scale.double()
        self.total += err.sum()
        self.count += err.numel()

    def compute(self) -> Tensor:
        """Mean scaled error over every window seen."""
        return self.total / self.count.clamp_min(1)
