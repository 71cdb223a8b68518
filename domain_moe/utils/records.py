"""Benchmark records: the resumable run log ``<out>.runs.jsonl`` and its aggregation into ``DESIGN.md`` records.

Every domain benchmark trains (dataset, method, seed) runs, appends each finished run as one JSON line to
``<out>.runs.jsonl`` (so an interrupted benchmark resumes) and aggregates the runs into one record per
(dataset, method, metric)::

    {"dataset", "method", "metric", "mean", "std", "n", "values", "higher_is_better", "device", "seconds"}

with ``std`` the sample standard deviation (0 for a single value). Standard library only, so that
``domain_moe.utils`` stays importable without the domains' optional packages.

Example:
    >>> runs = [{"dataset": "d", "method": "m", "seed": s, "metrics": {"acc": a}, "seconds": 1.0}
    ...         for s, a in enumerate([70.0, 74.0])]
    >>> record = summarise(runs, "cpu")[0]
    >>> record["mean"], record["std"], record["n"], record["seconds"]
    (72.0, 2.8284271247461903, 2, 2.0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal

__all__ = ["RUNS_SUFFIX", "RunLog", "lower_is_better", "record", "summarise"]

#: Suffix of the run log next to a benchmark's ``--out`` file.
RUNS_SUFFIX = ".runs.jsonl"

NanPolicy = Literal["keep", "skip", "null"]
HigherIsBetter = bool | Callable[[str], bool] | Collection[str]


class RunLog:
    """The run log of a benchmark: one JSON object per line, one line per finished run.

    Args:
        path: the ``.runs.jsonl`` file; it need not exist yet (no run finished).

    Example:
        >>> import tempfile
        >>> log = RunLog.beside(Path(tempfile.mkdtemp()) / "results.json")
        >>> log.path.name
        'results.json.runs.jsonl'
        >>> log.append({"dataset": "d", "method": "m", "seed": 0, "metrics": {"acc": 1.0}, "seconds": 0.5})
        >>> log.done("dataset", "method", "seed")
        {('d', 'm', 0)}
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def beside(cls, out: str | PathLike[str]) -> RunLog:
        """The log of the results file ``out``: ``<out>.runs.jsonl`` in the same folder."""
        out = Path(out)
        return cls(out.with_name(out.name + RUNS_SUFFIX))

    def _numbered(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if not self.path.exists():
            return
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                run = json.loads(line)
            except json.JSONDecodeError as err:
                # A run cut off mid-write by an interrupted benchmark lands here; say where, so it can be removed.
                raise ValueError(f"RunLog: {self.path}:{number} is not a JSON line ({err.msg})") from err
            if not isinstance(run, dict):
                raise ValueError(f"RunLog: {self.path}:{number} is a {type(run).__name__}, expected a JSON object")
            yield number, run

    def load(self) -> list[dict[str, Any]]:
        """The finished runs in the order they were appended (none when the file does not exist yet).

        Raises:
            ValueError: a line is not a JSON object; the message names the file and the line number.
        """
        return [run for _, run in self._numbered()]

    def append(self, run: Mapping[str, Any]) -> None:
        """Append one finished run as a JSON line (the file and its folder are created when missing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps(run) + "\n")

    def done(self, *keys: str) -> set[tuple[Any, ...]]:
        """The ``keys`` of every logged run as tuples, e.g. ``done("dataset", "method", "seed")``.

        Raises:
            ValueError: a logged run lacks one of ``keys`` (named with the file and line number).
        """
        if not keys:
            raise ValueError("RunLog.done: keys must name at least one run field, e.g. 'method', 'seed'")
        out = set()
        for number, run in self._numbered():
            missing = [k for k in keys if k not in run]
            if missing:
                raise ValueError(f"RunLog.done: {self.path}:{number} has no {missing[0]!r} (keys {keys})")
            out.add(tuple(run[k] for k in keys))
        return out


def lower_is_better(names: Collection[str] = (), suffixes: Sequence[str] = ()) -> Callable[[str], bool]:
    """A ``higher_is_better`` rule: false for the metrics in ``names`` or ending with one of ``suffixes``.

    Example:
        >>> rule = lower_is_better({"epochs"}, suffixes=("_ms", "loss"))
        >>> [rule(m) for m in ("accuracy", "epochs", "step_ms", "val_loss")]
        [True, False, False, False]
    """
    names, ends = frozenset(names), tuple(suffixes)
    return lambda metric: not (metric in names or metric.endswith(ends))


def _rule(higher_is_better: HigherIsBetter) -> Callable[[str], bool]:
    if isinstance(higher_is_better, bool):
        return lambda metric: higher_is_better
    if callable(higher_is_better):
        return higher_is_better
    if isinstance(higher_is_better, str):
        # A bare string is a collection of characters: almost surely a one-metric set written without braces.
        raise TypeError(f"higher_is_better must be a bool, a callable or a set of metrics, got {higher_is_better!r}")
    names = frozenset(higher_is_better)
    return lambda metric: metric in names


def record(
    dataset: str,
    method: str,
    metric: str,
    values: Sequence[Any],
    *,
    higher_is_better: bool,
    device: str,
    seconds: float,
    nan: NanPolicy = "keep",
) -> dict[str, Any]:
    """One ``DESIGN.md`` record from the per-run values of a (dataset, method, metric) cell.

    Args:
        dataset: the record's dataset.
        method: the record's method.
        metric: the record's metric.
        values: one value per run, in run order; written as given (``nan="null"`` writes NaN as ``None``).
        higher_is_better: whether a larger value is better.
        device: where the runs ran.
        seconds: the wall time to report for the cell.
        nan: ``"keep"``: NaN enters the mean and std like any value (both become NaN); ``"skip"``: the mean and
            std are over the non-NaN values, ``n`` counts every value and the mean is NaN when none is left;
            ``"null"``: as ``"skip"`` but ``n`` counts the non-NaN values only, NaN values are written as
            ``None`` and the mean is ``None`` when none is left (JSON has no NaN).

    Returns:
        The record, keys in the ``DESIGN.md`` order.

    Example:
        >>> r = record("d", "m", "acc", [1.0, float("nan"), 3.0], higher_is_better=True, device="cpu",
        ...            seconds=3.0, nan="null")
        >>> r["mean"], r["std"], r["n"], r["values"]
        (2.0, 1.4142135623730951, 2, [1.0, None, 3.0])
    """
    if nan not in ("keep", "skip", "null"):
        raise ValueError(f"record: nan must be 'keep', 'skip' or 'null', got {nan!r}")
    values = list(values)
    used = values if nan == "keep" else [v for v in values if v == v]  # v != v only for NaN
    if not values:
        raise ValueError(f"record: values of ({dataset!r}, {method!r}, {metric!r}) must not be empty")
    mean: float | None
    std = 0.0
    if used:
        # Left-to-right sums, as every benchmark computed them before sharing this code: records stay identical.
        mean = sum(used) / len(used)
        std = math.sqrt(sum((v - mean) ** 2 for v in used) / max(len(used) - 1, 1))
    else:
        mean = None if nan == "null" else math.nan
    return {
        "dataset": dataset,
        "method": method,
        "metric": metric,
        "mean": mean,
        "std": std,
        "n": len(used) if nan == "null" else len(values),
        "values": [v if v == v else None for v in values] if nan == "null" else values,
        "higher_is_better": higher_is_better,
        "device": device,
        "seconds": seconds,
    }


def _cells(run: Mapping[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """(dataset, method, metric, value) of a run ``{"metrics": {...}}`` or ``{"rows": {method: {...}}}``."""
    if "rows" in run:
        for row, metrics in run["rows"].items():
            for metric, value in metrics.items():
                yield run["dataset"], row, metric, value
    else:
        for metric, value in run["metrics"].items():
            yield run["dataset"], run["method"], metric, value


def summarise(
    runs: Iterable[Mapping[str, Any]],
    device: str,
    higher_is_better: HigherIsBetter = True,
    *,
    seconds: Literal["method", "cell"] = "method",
    nan: NanPolicy = "keep",
) -> list[dict[str, Any]]:
    """Aggregate runs into ``DESIGN.md`` records, one per (dataset, method, metric) in first-seen order.

    Args:
        runs: finished runs, ``{"dataset", "method", "metrics": {metric: value}, "seconds", ...}``, or with
            ``"rows": {row: {metric: value}}`` instead of ``"metrics"`` when one run scores several rows
            (each row is a record's method, the run's own ``"method"`` is not used).
        device: the device string of every record.
        higher_is_better: ``True``/``False`` for every metric, a callable of the metric name (see
            :func:`lower_is_better`), or the set of metrics where higher is better (others: lower).
        seconds: ``"method"``: the seconds of every run of the (dataset, method) (or row) summed, the same in
            each of its records; ``"cell"``: only the runs that have a value of the record's metric summed.
        nan: NaN handling, see :func:`record`.

    Returns:
        The records.
    """
    if seconds not in ("method", "cell"):
        raise ValueError(f"summarise: seconds must be 'method' or 'cell', got {seconds!r}")
    rule = _rule(higher_is_better)
    cells: dict[tuple[str, str, str], list[Any]] = {}
    cell_seconds: dict[tuple[str, str, str], float] = {}
    method_seconds: dict[tuple[str, str], float] = {}
    for index, run in enumerate(runs):
        missing = [k for k in ("dataset", "seconds", "rows" if "rows" in run else "method") if k not in run]
        if missing or not isinstance(run.get("rows", run.get("metrics")), Mapping):
            raise ValueError(
                f"summarise: runs[{index}] needs 'dataset', 'seconds' and 'metrics' or 'rows', got {run!r}"
            )
        for method in run["rows"] if "rows" in run else [run["method"]]:
            key = (run["dataset"], method)
            method_seconds[key] = method_seconds.get(key, 0.0) + run["seconds"]
        for dataset, method, metric, value in _cells(run):
            cells.setdefault((dataset, method, metric), []).append(value)
            cell_seconds[(dataset, method, metric)] = cell_seconds.get((dataset, method, metric), 0.0) + run["seconds"]
    return [
        record(
            dataset,
            method,
            metric,
            values,
            higher_is_better=rule(metric),
            device=device,
            seconds=cell_seconds[(dataset, method, metric)] if seconds == "cell" else method_seconds[(dataset, method)],
            nan=nan,
        )
        for (dataset, method, metric), values in cells.items()
    ]
