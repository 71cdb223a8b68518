"""Forecasting data: panel loaders, rolling origins, lag windows and Lightning DataModules.

A :class:`Panel` holds the training part of ``N`` series (variable lengths), their seasonal period,
the forecast horizon and, when known, the hold-out ``[N, H]``. Loaders read the tourism competition
files, ETTh1/ETTh2, exchange rates, ILI, the M4 file layout, a one-column-per-series CSV and the series
embedded in statsmodels and pmdarima; :func:`load_dataset` resolves the benchmark's dataset strings.
:class:`WindowDataset` turns a panel into lag windows ``x[L] -> y[H]`` with per-window scaling for a
global model, and the DataModules serve them to a :class:`~domain_moe.timeseries.tasks.ForecastTask`.

Nothing here writes to disk or touches the network; files are read from ``root`` (default
``$DOMAIN_MOE_DATA`` or ``../shared/data`` from the repository root).
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from domain_moe.utils.imports import require

__all__ = [
    "NORMALIZATIONS",
    "TOURISM",
    "ForecastDataModule",
    "Panel",
    "SyntheticDataModule",
    "TourismDataModule",
    "WindowDataset",
    "default_root",
    "holdout",
    "load_csv",
    "load_dataset",
    "load_ett",
    "load_exchange_rate",
    "load_illness",
    "load_m4",
    "load_pmdarima",
    "load_statsmodels",
    "load_tourism",
    "rolling_origins",
    "synthetic_panel",
]

#: Tourism competition: frequency -> (seasonal period, competition horizon, header rows).
TOURISM = {"monthly": (12, 24, 3), "quarterly": (4, 8, 3), "yearly": (1, 4, 2)}
#: M4 competition: frequency -> (seasonal period, horizon).
M4 = {
    "Yearly": (1, 6), "Quarterly": (4, 8), "Monthly": (12, 18), "Weekly": (1, 13), "Daily": (1, 14), "Hourly": (24, 48),
}
#: pmdarima's embedded series (``load_gasoline`` downloads, so it is absent): name -> (period, horizon).
PMDARIMA = {
    "taylor": (48, 48), "wineind": (12, 12), "woolyrnq": (4, 8), "austres": (4, 8), "airpassengers": (12, 12),
    "lynx": (1, 10), "ausbeer": (4, 8), "sunspots": (12, 12), "heartrate": (1, 20), "msft": (1, 10),
}
#: statsmodels' embedded series: name -> (period, horizon, columns or None for all numeric ones).
STATSMODELS = {
    "co2": (52, 52, None), "elec_equip": (12, 12, None), "sunspots": (1, 10, ("SUNACTIVITY",)),
    "nile": (1, 10, ("volume",)),
    "macrodata": (4, 8, ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1")),
}
#: Usual settings of the long-horizon panels: name -> (period, horizon).
PANELS = {"etth1": (24, 96), "etth2": (24, 96), "exchange-rate": (1, 30), "ili": (52, 24)}
NORMALIZATIONS = ("window", "series", "none")


def default_root() -> Path:
    """``$DOMAIN_MOE_DATA``, else ``../shared/data`` relative to the current directory."""
    return Path(os.environ.get("DOMAIN_MOE_DATA", Path("..") / "shared" / "data"))


def _root(root: str | os.PathLike | None) -> Path:
    return default_root() if root is None else Path(root)


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found at {path}. Point root (or the DOMAIN_MOE_DATA environment variable) at the shared data "
        "folder that holds timeseries/ (see the data README), or pass the file's path."
    )


@dataclass
class Panel:
    """A panel of series ready for forecasting at one origin.

    Attributes:
        train: each series' observations up to the forecast origin (variable lengths, no NaN).
        period: seasonal period ``m`` (1 for non-seasonal data).
        horizon: forecast horizon ``H``.
        test: the ``H`` values after the origin, or ``None`` when unknown.
        names: one name per series.
        freq: a frequency label (``"monthly"``, ``"H"``, ...), informational.

    Shapes:
        - train[i]: ``[T_i]``
        - test: ``[N, H]``
    """

    train: list[np.ndarray]
    period: int
    horizon: int
    test: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    freq: str = ""

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("Panel.train holds no series")
        for name, value in (("period", self.period), ("horizon", self.horizon)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Panel.{name} must be an int >= 1, got {value!r}")
        self.train = [np.asarray(s, dtype=np.float64) for s in self.train]
        if not self.names:
            self.names = [f"s{i}" for i in range(len(self.train))]
        if len(self.names) != len(self.train):
            raise ValueError(f"Panel.names must name every series ({len(self.train)}), got {len(self.names)}")
        for name, s in zip(self.names, self.train):
            if s.ndim != 1 or s.size == 0:
                raise ValueError(f"series {name!r} must be a non-empty 1-d array, got shape {s.shape}")
            _check_gaps(s, name)
        if self.test is not None:
            self.test = np.asarray(self.test, dtype=np.float64)
            if self.test.shape != (len(self.train), self.horizon):
                raise ValueError(
                    f"Panel.test must have shape [N={len(self.train)}, horizon={self.horizon}], got {self.test.shape}"
                )
            if np.isnan(self.test).any():
                raise ValueError(f"Panel.test contains {int(np.isnan(self.test).sum())} NaN values")

    def __len__(self) -> int:
        return len(self.train)

    def subset(self, index: Sequence[int]) -> Panel:
        """The panel restricted to the series at ``index``."""
        index = list(index)
        return replace(
            self,
            train=[self.train[i] for i in index],
            names=[self.names[i] for i in index],
            test=None if self.test is None else self.test[index],
        )


def _check_gaps(values: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(
            f"series {name!r} has {bad.size} missing/non-finite values (first at position {int(bad[0])}); "
            "fill or drop the gaps before forecasting"
        )


def _strip_edges(values: np.ndarray, name: str) -> np.ndarray:
    """Drop leading/trailing NaN (ragged columns); interior NaN is a gap and raises."""
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size == 0:
        raise ValueError(f"series {name!r} holds no observations")
    out = values[finite[0] : finite[-1] + 1]
    _check_gaps(out, name)
    return out


# ----------------------------------------------------------------------------------------------- tourism


def _read_tourism_file(path: Path, header_rows: int) -> tuple[list[str], list[np.ndarray]]:
    pd = require("pandas", extra="timeseries", feature="domain_moe.timeseries data loaders")
    if not path.is_file():
        raise _missing(path, "tourism competition file")
    frame = pd.read_csv(path)
    names = [str(c) for c in frame.columns]
    values = frame.to_numpy(dtype=np.float64)
    series = []
    for j, name in enumerate(names):
        length = values[0, j]
        if not np.isfinite(length) or length < 1:
            raise ValueError(f"{path}: series {name!r} has no valid length in its first header row, got {length}")
        # Read exactly the stated length: 79 yearly series have one extra non-empty cell past it.
        s = values[header_rows : header_rows + int(length), j]
        if s.size != int(length):
            raise ValueError(f"{path}: series {name!r} states length {int(length)} but holds only {s.size} values")
        _check_gaps(s, name)
        series.append(s)
    return names, series


def load_tourism(root: str | os.PathLike | None = None, frequency: str = "monthly") -> Panel:
    """The tourism forecasting competition (Athanasopoulos et al., IJF 2011) at its competition horizon.

    Args:
        root: the shared data folder (holding ``timeseries/tourism``), or the tourism folder itself.
        frequency: ``"monthly"`` (366 series, h = 24), ``"quarterly"`` (427, h = 8) or ``"yearly"`` (518, h = 4).

    Returns:
        The panel with ``train`` from ``*_in.csv`` and ``test`` from ``*_oos.csv``.

    Raises:
        ValueError: an unknown frequency, or in and out-of-sample files that disagree.
        FileNotFoundError: a missing file (the message names the path).
    """
    if frequency not in TOURISM:
        raise ValueError(f"frequency must be one of {tuple(TOURISM)}, got {frequency!r}")
    period, horizon, header = TOURISM[frequency]
    base = _root(root)
    folder = base if (base / f"{frequency}_in.csv").exists() else base / "timeseries" / "tourism"
    names, train = _read_tourism_file(folder / f"{frequency}_in.csv", header)
    test_names, test = _read_tourism_file(folder / f"{frequency}_oos.csv", header)
    if test_names != names:
        raise ValueError(f"{folder}: {frequency}_in.csv and {frequency}_oos.csv name different series")
    lengths = {len(t) for t in test}
    if lengths != {horizon}:
        raise ValueError(
            f"{folder}: {frequency} hold-outs must all have the competition horizon {horizon}, got {lengths}"
        )
    return Panel(train, period, horizon, np.stack(test), names, frequency)


# ------------------------------------------------------------------------------------------- other files


def load_ett(root: str | os.PathLike | None = None, name: str = "ETTh1", columns: Sequence[str] | None = None,
             rows: int | None = 14400) -> Panel:
    """ETTh1/ETTh2 (Zhou et al., AAAI 2021): hourly transformer loads and oil temperature, one series per column.

    Args:
        root: the shared data folder (holding ``timeseries/ETT-small``) or the file's folder.
        name: ``"ETTh1"`` or ``"ETTh2"``.
        columns: the variables to keep (default all seven).
        rows: keep the first ``rows`` hours (14 400 = the usual 12/4/4-month split); ``None`` keeps all.
    """
    pd = require("pandas", extra="timeseries", feature="domain_moe.timeseries data loaders")
    if name not in ("ETTh1", "ETTh2"):
        raise ValueError(f"name must be 'ETTh1' or 'ETTh2', got {name!r}")
    base = _root(root)
    path = base / f"{name}.csv"
    if not path.exists():
        path = base / "timeseries" / "ETT-small" / f"{name}.csv"
    if not path.is_file():
        raise _missing(path, f"{name} file")
    frame = pd.read_csv(path)
    cols = list(columns) if columns is not None else [c for c in frame.columns if c != "date"]
    unknown = [c for c in cols if c not in frame.columns]
    if unknown:
        raise ValueError(f"columns {unknown} are not in {path}; it has {list(frame.columns)}")
    frame = frame.iloc[:rows] if rows is not None else frame
    _check_freq(pd, frame["date"], "h", path)
    return Panel([frame[c].to_numpy(np.float64) for c in cols], 24, PANELS[name.lower()][1], names=cols, freq="h")


def load_exchange_rate(root: str | os.PathLike | None = None) -> Panel:
    """Daily exchange rates of 8 currencies, 1990-2016 (Lai et al., LSTNet), one series per currency."""
    base = _root(root)
    path = base / "exchange_rate.txt.gz"
    if not path.exists():
        path = base / "timeseries" / "exchange_rate" / "exchange_rate.txt.gz"
    if not path.is_file():
        raise _missing(path, "exchange_rate.txt.gz")
    with gzip.open(path, "rt") as fh:
        values = np.loadtxt(fh, delimiter=",")
    return Panel(list(values.T), 1, PANELS["exchange-rate"][1], names=[f"rate{i}" for i in range(values.shape[1])],
                 freq="D")


def load_illness(root: str | os.PathLike | None = None) -> Panel:
    """US weekly influenza-like illness (CDC ILINet, Autoformer layout), one series per column."""
    pd = require("pandas", extra="timeseries", feature="domain_moe.timeseries data loaders")
    base = _root(root)
    path = base / "national_illness.csv"
    if not path.exists():
        path = base / "timeseries" / "illness" / "national_illness.csv"
    if not path.is_file():
        raise _missing(path, "national_illness.csv")
    frame = pd.read_csv(path)
    cols = [c for c in frame.columns if c != "date"]
    return Panel([frame[c].to_numpy(np.float64) for c in cols], 52, PANELS["ili"][1], names=cols, freq="W")


def _check_freq(pd: Any, dates: Any, freq: str, path: Path | str) -> None:
    """Raise when the dates' inferred frequency is not ``freq`` (for example weekly data passed as monthly)."""
    index = pd.DatetimeIndex(pd.to_datetime(dates))
    if len(index) < 3:
        return
    with warnings.catch_warnings():  # pandas 3 warns about infer_freq's future return type
        warnings.simplefilter("ignore")
        inferred = pd.infer_freq(index[: min(len(index), 500)])
    want = pd.tseries.frequencies.to_offset(freq).rule_code
    got = None if inferred is None else pd.tseries.frequencies.to_offset(inferred).rule_code
    if got is None or got.split("-")[0].upper().rstrip("S") != want.split("-")[0].upper().rstrip("S"):
        raise ValueError(f"{path}: freq={freq!r} was requested but the dates have frequency {inferred!r}")


def load_csv(path: str | os.PathLike, period: int, horizon: int, freq: str | None = None,
             date_column: str | None = "date") -> Panel:
    """A generic CSV with one column per series (ragged ends allowed) and an optional date column.

    Args:
        path: the CSV file.
        period: seasonal period ``m``.
        horizon: forecast horizon ``H``.
        freq: the expected pandas frequency of ``date_column`` (``"MS"``, ``"W"``, ``"h"``); a mismatch raises.
        date_column: name of the date column, dropped from the series (ignored when absent).

    Raises:
        FileNotFoundError: a missing file.
        ValueError: interior gaps (NaN between observations), non-numeric columns or a frequency mismatch.
    """
    pd = require("pandas", extra="timeseries", feature="domain_moe.timeseries data loaders")
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "CSV file")
    frame = pd.read_csv(path)
    if date_column is not None and date_column in frame.columns:
        if freq is not None:
            _check_freq(pd, frame[date_column], freq, path)
        frame = frame.drop(columns=[date_column])
    elif freq is not None:
        raise ValueError(
            f"{path}: freq={freq!r} needs a date column named {date_column!r}, found {list(frame.columns)}"
        )
    series = []
    for col in frame.columns:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        bad = frame[col].notna() & np.isnan(values)
        if bad.any():
            raise ValueError(f"{path}: column {col!r} holds non-numeric values (row {int(np.flatnonzero(bad)[0])})")
        series.append(_strip_edges(values, str(col)))
    return Panel(series, period, horizon, names=[str(c) for c in frame.columns], freq=freq or "")


def load_m4(folder: str | os.PathLike, frequency: str) -> Panel:
    """The M4 competition layout: ``<Freq>-train.csv`` and ``<Freq>-test.csv``, one row per series, id first.

    Args:
        folder: the folder holding both files.
        frequency: ``Yearly``, ``Quarterly``, ``Monthly``, ``Weekly``, ``Daily`` or ``Hourly``.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: an unknown frequency, or a test file whose width is not the frequency's horizon.
    """
    pd = require("pandas", extra="timeseries", feature="domain_moe.timeseries data loaders")
    if frequency not in M4:
        raise ValueError(f"frequency must be one of {tuple(M4)}, got {frequency!r}")
    period, horizon = M4[frequency]
    folder = Path(folder)
    tables = []
    for part in ("train", "test"):
        path = folder / f"{frequency}-{part}.csv"
        if not path.is_file():
            raise _missing(path, f"M4 {part} file")
        tables.append(pd.read_csv(path, index_col=0))
    train, test = tables
    if list(train.index) != list(test.index):
        raise ValueError(f"{folder}: {frequency}-train.csv and {frequency}-test.csv list different series")
    test_values = test.to_numpy(np.float64)
    if test_values.shape[1] != horizon:
        raise ValueError(
            f"{folder}: {frequency}-test.csv has {test_values.shape[1]} values per series, but the {frequency} "
            f"horizon is {horizon}; is the frequency right?"
        )
    series = [_strip_edges(row, str(name)) for name, row in zip(train.index, train.to_numpy(np.float64))]
    return Panel(series, period, horizon, test_values, [str(i) for i in train.index], frequency)


# -------------------------------------------------------------------------------------- package series


def load_statsmodels(name: str, column: str | None = None) -> Panel:
    """A series embedded in statsmodels (no download): ``co2``, ``elec_equip``, ``sunspots``, ``nile``, ``macrodata``.

    ``co2`` has 59 missing weeks; they are linearly interpolated (the only loader that fills gaps, because
    the gaps are a known property of that data set). ``macrodata`` gives seven real-economy series.
    """
    require("statsmodels", extra="timeseries", feature="domain_moe.timeseries.load_statsmodels")
    if name not in STATSMODELS:
        raise ValueError(f"name must be one of {tuple(STATSMODELS)}, got {name!r}")
    import importlib

    period, horizon, cols = STATSMODELS[name]
    frame = importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data
    if name == "co2":
        frame = frame.interpolate()
    cols = list(cols) if cols is not None else list(frame.columns)
    if column is not None:
        if column not in frame.columns:
            raise ValueError(f"column {column!r} is not in statsmodels {name}; it has {list(frame.columns)}")
        cols = [column]
    values = [frame[c].to_numpy(np.float64) for c in cols]
    return Panel(values, period, horizon, names=[str(c) for c in cols], freq=name)


def load_pmdarima(name: str) -> Panel:
    """A series embedded in pmdarima (``taylor``, ``wineind``, ``woolyrnq``, ``airpassengers``, ...)."""
    datasets = require("pmdarima.datasets", extra="timeseries", feature="domain_moe.timeseries.load_pmdarima")
    if name not in PMDARIMA:
        raise ValueError(f"name must be one of {tuple(PMDARIMA)}, got {name!r}")
    period, horizon = PMDARIMA[name]
    values = np.asarray(getattr(datasets, f"load_{name}")(), dtype=np.float64)
    return Panel([values], period, horizon, names=[name], freq=name)


def synthetic_panel(num_series: int = 8, length: int = 96, period: int = 12, horizon: int = 12, seed: int = 0,
                    with_test: bool = True) -> Panel:
    """Seeded seasonal series with trends and noise, for smoke tests and examples.

    Half of the series are additive-seasonal with a trend, half multiplicative with a level shift, so
    experts have different regimes to specialise on.

    Example:
        >>> panel = synthetic_panel(num_series=3, length=40, period=4, horizon=4)
        >>> len(panel), panel.test.shape
        (3, (3, 4))
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length + horizon)
    series = []
    for i in range(num_series):
        phase = rng.uniform(0, 2 * np.pi)
        season = np.sin(2 * np.pi * t / period + phase)
        level = 50.0 + 10.0 * rng.random()
        if i % 2 == 0:
            y = level + 0.1 * t + 5.0 * season
        else:
            shift = np.where(t > length // 2, 1.3, 1.0)
            y = level * shift * (1.0 + 0.2 * season)
        series.append(y + rng.normal(0.0, 0.5, size=y.shape))
    values = np.stack(series)
    test = values[:, length:] if with_test else None
    train = list(values[:, :length]) if with_test else list(values)
    return Panel(train, period, horizon, test, freq="synthetic")


# ----------------------------------------------------------------------------------- names and origins


def load_dataset(spec: str, root: str | os.PathLike | None = None) -> Panel:
    """Resolve a benchmark dataset string to a panel.

    Names: ``tourism-monthly|quarterly|yearly``, ``etth1``, ``etth2``, ``exchange-rate``, ``ili``,
    ``statsmodels:<name>``, ``pmdarima:<name>``, ``synthetic[:seed=<n>]``; with paths: ``m4:<dir>:<Freq>``
    and ``csv:<path>[:period=<m>,horizon=<h>]``.

    Example:
        >>> len(load_dataset("synthetic:seed=1"))
        8
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset must be a non-empty string, got {spec!r}")
    if spec.startswith("tourism-"):
        return load_tourism(root, spec.split("-", 1)[1])
    if spec in ("etth1", "etth2"):
        return load_ett(root, "ETTh" + spec[-1])
    if spec == "exchange-rate":
        return load_exchange_rate(root)
    if spec == "ili":
        return load_illness(root)
    prefix, _, rest = spec.partition(":")
    if prefix == "statsmodels" and rest:
        name, _, column = rest.partition("/")
        return load_statsmodels(name, column or None)
    if prefix == "pmdarima" and rest:
        return load_pmdarima(rest)
    if prefix == "synthetic":
        opts = _options(rest)
        return synthetic_panel(**{k: int(v) for k, v in opts.items()})
    if prefix == "m4" and rest:
        folder, _, freq = rest.rpartition(":")
        if not folder:
            raise ValueError(f"m4 datasets are written m4:<dir>:<Freq>, got {spec!r}")
        return load_m4(folder, freq)
    if prefix == "csv" and rest:
        path, opts = rest, {}
        head, _, tail = rest.rpartition(":")
        if head and "=" in tail:
            path, opts = head, _options(tail)
        return load_csv(path, int(opts.get("period", 1)), int(opts.get("horizon", 1)), opts.get("freq"))
    raise ValueError(
        f"unknown dataset {spec!r}; use tourism-monthly|quarterly|yearly, etth1, etth2, exchange-rate, ili, "
        "statsmodels:<name>, pmdarima:<name>, synthetic, m4:<dir>:<Freq> or csv:<path>[:period=m,horizon=h]"
    )


def _options(text: str) -> dict[str, str]:
    out = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"dataset options are key=value pairs separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def holdout(panel: Panel, horizon: int | None = None, min_train: int | None = None) -> Panel:
    """Move the last ``horizon`` observations of every series into ``test`` (a fixed forecast origin).

    Args:
        panel: series without a hold-out (or whose hold-out is dropped).
        horizon: steps to hold out (default ``panel.horizon``).
        min_train: shortest training part allowed (default ``panel.period + 1``, the least a seasonal
            naive forecast and a MASE scale need).

    Raises:
        ValueError: a series shorter than ``horizon + min_train`` (the message names it).
    """
    horizon = panel.horizon if horizon is None else horizon
    need = horizon + (panel.period + 1 if min_train is None else min_train)
    short = [(n, len(s)) for n, s in zip(panel.names, panel.train) if len(s) < need]
    if short:
        name, size = short[0]
        raise ValueError(
            f"series {name!r} has {size} observations; holding out horizon={horizon} needs at least {need} "
            f"(horizon + seasonal lag + 1); {len(short)} series are too short"
        )
    return replace(panel, train=[s[:-horizon] for s in panel.train], test=np.stack([s[-horizon:] for s in panel.train]),
                   horizon=horizon)


def rolling_origins(panel: Panel, num_origins: int, step: int | None = None) -> list[Panel]:
    """Rolling-origin evaluation: ``num_origins`` panels whose origins move forward by ``step``.

    The last origin leaves exactly ``horizon`` observations after it; earlier ones end ``step`` earlier
    each (default ``step = horizon``, non-overlapping test windows). A panel with a hold-out is first
    joined back to full series.

    Example:
        >>> origins = rolling_origins(synthetic_panel(num_series=2, length=60, horizon=6), num_origins=3)
        >>> [len(p.train[0]) for p in origins]
        [48, 54, 60]
    """
    if not isinstance(num_origins, int) or num_origins < 1:
        raise ValueError(f"num_origins must be an int >= 1, got {num_origins!r}")
    step = panel.horizon if step is None else step
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be an int >= 1, got {step!r}")
    full = panel.train if panel.test is None else [np.concatenate([s, t]) for s, t in zip(panel.train, panel.test)]
    joined = replace(panel, train=full, test=None)
    out = []
    for k in range(num_origins - 1, -1, -1):
        cut = k * step
        trimmed = replace(joined, train=[s[: len(s) - cut] if cut else s for s in full])
        out.append(holdout(trimmed))
    return out


# -------------------------------------------------------------------------------------------- windows


def _last_window(series: np.ndarray, lookback: int) -> np.ndarray:
    # Short series are left-padded with their first value: a flat history adds no spurious trend.
    if len(series) >= lookback:
        return series[-lookback:]
    return np.concatenate([np.full(lookback - len(series), series[0]), series])


def _seasonal_base(x: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Seasonal-naive continuation of each lookback row (naive when the lookback is shorter than ``m``)."""
    lag = period if x.shape[1] >= period else 1
    reps = -(-horizon // lag)
    return np.tile(x[:, -lag:], (1, reps))[:, :horizon]


class WindowDataset(Dataset):
    """Lag windows of a panel for a global forecaster: ``x[L] -> y[H]`` with per-window scaling.

    Training windows slide with stride 1 over each series' training part; forecast windows (``forecast=True``)
    are one per series, ending at the origin, with the hold-out as target when the panel has one. Series
    shorter than the lookback are left-padded in forecast windows and give no training window.

    Scaling (``normalization``): ``"window"`` divides by the mean absolute value of the lookback (robust to
    level shifts, the usual choice for global models on tourism data); ``"series"`` standardises with the
    training part's mean and std; ``"none"`` keeps raw values. With ``residual=True`` the target is the
    scaled difference to the seasonal-naive forecast from the lookback, which is added back by
    :meth:`to_original` (the pilot of the spec found this easier to learn).

    Each item is a dict: ``x`` ``[L]``, ``y`` ``[H]`` (scaled target; NaN-free zeros when unknown),
    ``base`` ``[H]`` (scaled seasonal-naive forecast, zeros without ``residual``), ``loc``/``scale`` (the
    window's affine scaling), ``mase_scale`` (the series' in-sample seasonal-naive MAE), ``series`` (index)
    and ``age`` (steps between the window's last target and the end of the training part; 0 = newest),
    which calibration-window masks use.

    Args:
        panel: the series.
        lookback: lags ``L``.
        normalization: one of :data:`NORMALIZATIONS`.
        residual: learn the residual over the seasonal-naive forecast.
        forecast: one window per series at the origin instead of all training windows.
        max_age: keep only training windows with ``age < max_age`` (the most recent calibration window).

    Shapes:
        - x: ``[L]``
        - y, base: ``[H]``
    """

    def __init__(
        self,
        panel: Panel,
        lookback: int,
        normalization: Literal["window", "series", "none"] = "window",
        residual: bool = False,
        forecast: bool = False,
        max_age: int | None = None,
    ) -> None:
        if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 1:
            raise ValueError(f"lookback must be an int >= 1, got {lookback!r}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.panel, self.lookback, self.horizon = panel, lookback, panel.horizon
        self.normalization, self.residual, self.forecast = normalization, residual, forecast
        mase = np.array([_safe_mase_scale(s, panel.period) for s in panel.train])
        stats = np.array([(s.mean(), s.std() if s.std() > 0 else 1.0) for s in panel.train])
        H = panel.horizon
        if forecast:
            x = np.stack([_last_window(s, lookback) for s in panel.train])
            y = panel.test if panel.test is not None else np.zeros((len(panel), H))
            series = np.arange(len(panel))
            age = np.zeros(len(panel), dtype=np.int64)
        else:
            xs, ys, ids, ages = [], [], [], []
            for i, s in enumerate(panel.train):
                count = len(s) - lookback - H + 1
                if count < 1:
                    continue
                win = np.lib.stride_tricks.sliding_window_view(s, lookback + H)
                xs.append(win[:, :lookback])
                ys.append(win[:, lookback:])
                ids.append(np.full(count, i))
                ages.append(np.arange(count - 1, -1, -1))
            if not xs:
                longest = max(len(s) for s in panel.train)
                raise ValueError(
                    f"no series is long enough for one training window: lookback + horizon = {lookback + H} but the "
                    f"longest series has {longest} observations"
                )
            x, y, series, age = np.concatenate(xs), np.concatenate(ys), np.concatenate(ids), np.concatenate(ages)
            if max_age is not None:
                keep = age < max_age
                x, y, series, age = x[keep], y[keep], series[keep], age[keep]
        if normalization == "window":
            loc = np.zeros(len(x))
            scale = np.abs(x).mean(1)
            scale = np.where(scale > 0, scale, 1.0)
        elif normalization == "series":
            loc, scale = stats[series, 0], stats[series, 1]
        else:
            loc, scale = np.zeros(len(x)), np.ones(len(x))
        xn = (x - loc[:, None]) / scale[:, None]
        yn = (y - loc[:, None]) / scale[:, None]
        base = _seasonal_base(xn, H, panel.period) if residual else np.zeros_like(yn)
        self.x = torch.as_tensor(xn, dtype=torch.float32)
        self.y = torch.as_tensor(yn - base, dtype=torch.float32)
        self.base = torch.as_tensor(base, dtype=torch.float32)
        self.loc = torch.as_tensor(loc, dtype=torch.float32)
        self.scale = torch.as_tensor(scale, dtype=torch.float32)
        self.mase_scale = torch.as_tensor(mase[series], dtype=torch.float32)
        self.series = torch.as_tensor(series, dtype=torch.long)
        self.age = torch.as_tensor(age, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: getattr(self, k)[i] for k in ("x", "y", "base", "loc", "scale", "mase_scale", "series", "age")}

    def batch(self, index: Tensor | slice | None = None) -> dict[str, Tensor]:
        """Several items at once (a fast path for plain training loops)."""
        index = slice(None) if index is None else index
        return {k: getattr(self, k)[index] for k in ("x", "y", "base", "loc", "scale", "mase_scale", "series", "age")}

    @staticmethod
    def to_original(pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Map a scaled model output (residual or not) back to the series' units.

        Shapes:
            - pred: ``[B, H]`` (or ``[B, ..., H]``, broadcast over middle dimensions)
            - output: same as ``pred``
        """
        extra = pred.dim() - 2
        def expand(t: Tensor) -> Tensor:
            return t.reshape(t.shape[0], *([1] * (extra + 1))) if t.dim() == 1 else t.reshape(
                t.shape[0], *([1] * extra), t.shape[-1])
        return (pred + expand(batch["base"])) * expand(batch["scale"]) + expand(batch["loc"])


def _safe_mase_scale(series: np.ndarray, period: int) -> float:
    lag = period if len(series) > period else 1
    if len(series) <= lag:
        return 1.0
    scale = float(np.mean(np.abs(series[lag:] - series[:-lag])))
    return scale if scale > 0 else 1.0


# -------------------------------------------------------------------------------------------- modules


class ForecastDataModule(L.LightningDataModule):
    """Lag windows of any named dataset for :class:`~domain_moe.timeseries.tasks.ForecastTask`.

    Train windows come from each series' training part minus its last ``horizon`` points, the validation
    set is one window per series ending there (the last in-sample block), and test/predict use one window
    per series at the forecast origin (the dataset's hold-out, or the last ``horizon`` points when it has
    none). ``input_size`` and ``horizon`` are known right after construction, so the CLI links them into
    the model.

    Args:
        dataset: a :func:`load_dataset` string.
        lookback: lags ``L`` (the model's ``input_size``).
        horizon: override the dataset's horizon (``None`` keeps it; must match for a panel with a hold-out).
        root: the shared data folder (default ``$DOMAIN_MOE_DATA``).
        normalization: window scaling (see :class:`WindowDataset`).
        residual: learn the residual over seasonal naive.
        batch_size: training batch size.
        max_series: keep the first ``max_series`` series (``None`` = all), for quick runs.
        num_workers: DataLoader workers.
        seed: seed of the training shuffle.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        lookback: int = 24,
        horizon: int | None = None,
        root: str | None = None,
        normalization: Literal["window", "series", "none"] = "window",
        residual: bool = False,
        batch_size: int = 256,
        max_series: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.dataset, self.root, self.lookback = dataset, root, lookback
        self.normalization, self.residual = normalization, residual
        self.batch_size, self.max_series, self.num_workers, self.seed = batch_size, max_series, num_workers, seed
        self.input_size = lookback
        self.horizon = horizon if horizon is not None else _known_horizon(dataset)
        self.panel: Panel | None = None
        self.series_names: list[str] = []

    def load_panel(self) -> Panel:
        """The panel at the forecast origin (hold-out in ``test``)."""
        panel = load_dataset(self.dataset, self.root)
        if self.max_series is not None:
            panel = panel.subset(range(min(self.max_series, len(panel))))
        if panel.test is None:
            return holdout(panel, self.horizon)
        if self.horizon is not None and self.horizon != panel.horizon:
            raise ValueError(f"horizon={self.horizon} but {self.dataset} has a fixed hold-out of {panel.horizon} steps")
        return panel

    def setup(self, stage: str | None = None) -> None:
        """Load the panel and build the window sets."""
        if self.panel is not None:
            return
        panel = self.load_panel()
        self.panel, self.series_names, self.horizon = panel, list(panel.names), panel.horizon
        kwargs = {"lookback": self.lookback, "normalization": self.normalization, "residual": self.residual}
        long_enough = [i for i, s in enumerate(panel.train) if len(s) > 2 * panel.horizon]
        fit_panel = replace(panel.subset(long_enough), test=None)
        val_panel = holdout(fit_panel, min_train=1)
        self.train_set = WindowDataset(replace(val_panel, test=None), **kwargs)
        self.val_set = WindowDataset(val_panel, forecast=True, **kwargs)
        self.test_set = WindowDataset(panel, forecast=True, **kwargs)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training windows (seeded)."""
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=gen,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        """One window per series ending at the start of the last in-sample block."""
        return DataLoader(self.val_set, batch_size=1024, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        """One window per series at the forecast origin, with the hold-out as target."""
        return DataLoader(self.test_set, batch_size=1024, num_workers=self.num_workers)

    def predict_dataloader(self) -> DataLoader:
        """The forecast windows (as for test)."""
        return self.test_dataloader()


def _known_horizon(dataset: str) -> int | None:
    if dataset.startswith("tourism-") and dataset[8:] in TOURISM:
        return TOURISM[dataset[8:]][1]
    if dataset in PANELS:
        return PANELS[dataset][1]
    prefix, _, rest = dataset.partition(":")
    if prefix == "pmdarima" and rest in PMDARIMA:
        return PMDARIMA[rest][1]
    if prefix == "statsmodels" and rest.partition("/")[0] in STATSMODELS:
        return STATSMODELS[rest.partition("/")[0]][1]
    if prefix == "m4":
        return M4.get(rest.rpartition(":")[2], (None, None))[1]
    if prefix == "synthetic":
        return int(_options(rest).get("horizon", 12))
    if prefix == "csv":
        return int(_options(rest.rpartition(":")[2]).get("horizon", 1)) if "=" in rest else 1
    return None


class TourismDataModule(ForecastDataModule):
    """The tourism competition at its horizon (24 / 8 / 4) for one frequency.

    Args:
        frequency: ``"monthly"``, ``"quarterly"`` or ``"yearly"``.
        lookback: lags ``L`` (spec defaults: 15 / 5 / 2, about 1.25 seasons).
        root: the shared data folder.
        normalization: window scaling.
        residual: learn the residual over seasonal naive.
        batch_size: training batch size.
        max_series: keep the first ``max_series`` series.
        num_workers: DataLoader workers.
        seed: seed of the training shuffle.
    """

    def __init__(
        self,
        frequency: Literal["monthly", "quarterly", "yearly"] = "monthly",
        lookback: int = 15,
        root: str | None = None,
        normalization: Literal["window", "series", "none"] = "window",
        residual: bool = False,
        batch_size: int = 256,
        max_series: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if frequency not in TOURISM:
            raise ValueError(f"frequency must be one of {tuple(TOURISM)}, got {frequency!r}")
        super().__init__(f"tourism-{frequency}", lookback, None, root, normalization, residual, batch_size,
                         max_series, num_workers, seed)


class SyntheticDataModule(ForecastDataModule):
    """Seeded synthetic seasonal panel (:func:`synthetic_panel`) for smoke tests and examples.

    Args:
        num_series: series in the panel.
        length: training length of each series.
        period: seasonal period.
        horizon: forecast horizon.
        lookback: lags ``L``.
        batch_size: training batch size.
        seed: data and shuffle seed.
    """

    def __init__(
        self,
        num_series: int = 8,
        length: int = 96,
        period: int = 12,
        horizon: int = 12,
        lookback: int = 24,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__("synthetic", lookback, horizon, None, "window", False, batch_size, None, 0, seed)
        self.options = {"num_series": num_series, "length": length, "period": period, "horizon": horizon, "seed": seed}

    def load_panel(self) -> Panel:
        """The synthetic panel with its hold-out."""
        return synthetic_panel(**self.options)
