r"""Reproduce the expert-loss MoE claims: methods x datasets x seeds -> JSON records + a markdown table.

Usage::

    python -m domain_moe.timeseries.benchmark --datasets tourism-monthly tourism-quarterly tourism-yearly \\
        --methods seasonal-naive ets arima theta single-expert moe expert-loss-moe --seeds 3 --out results.json
    python -m domain_moe.timeseries.benchmark --datasets etth1:horizon=96 --methods seasonal-naive moe --out ett.json
    python -m domain_moe.timeseries.benchmark --experiment online --datasets pmdarima:taylor --out online.json

Datasets are :func:`~domain_moe.timeseries.data.load_dataset` strings. ``etth1``/``etth2`` follow the
long-horizon protocol (z-scored with the first 12 months, models trained on them, scored by MSE/MAE at
``--origins`` origins spread over the 4 test months; statistical models fit the last ``--history`` hours).
Everything else is scored at the panel's fixed origin (the competition hold-out for tourism and M4,
the last ``horizon`` points otherwise) with MASE (competition scale: whole series), MASE on the training
scale, MAPE, sMAPE and RMSE, each the mean over series.

Methods: ``seasonal-naive``, ``ets``, ``arima``, ``theta`` (deterministic, run once), and the neural
``single-expert``, ``moe`` (gamma = 0) and ``expert-loss-moe`` (run per seed); options follow a colon,
for example ``expert-loss-moe:gamma=1,variant=gate``.

Each finished (dataset, method, seed) cell stores its forecasts in ``<out>.cache/`` so an interrupted
run resumes where it stopped; ``results.json`` is rewritten after every cell as a list of records
``{dataset, method, metric, mean, std, n, values, higher_is_better, device, seconds}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domain_moe.timeseries.data import Panel, load_dataset, load_ett
from domain_moe.timeseries.metrics import evaluate_forecasts
from domain_moe.utils.records import record

__all__ = ["METHODS", "EvalSetup", "main", "make_method", "markdown_table", "prepare", "run_benchmark"]

STATISTICAL = ("seasonal-naive", "ets", "arima", "theta")
NEURAL = ("single-expert", "moe", "expert-loss-moe")
METHODS = STATISTICAL + NEURAL
#: Lookback per seasonal period for the tourism panels (the spec's ~1.25 seasons, doubled for monthly).
LOOKBACK = {12: 24, 4: 8, 1: 4, 24: 96, 52: 52, 48: 96}


@dataclass
class EvalSetup:
    """What one dataset string means for the benchmark.

    Attributes:
        name: the dataset string.
        fit_panel: the series neural models train on (their training parts).
        origins: panels whose ``train`` ends at a forecast origin and whose ``test`` holds the truth.
        metrics: metric names of :func:`evaluate_forecasts`.
        lookback: lags of the neural models.
        history: statistical models see at most this many last observations (``None`` = all).
    """

    name: str
    fit_panel: Panel
    origins: list[Panel]
    metrics: tuple[str, ...]
    lookback: int
    history: int | None = None


def _parse(spec: str) -> tuple[str, dict[str, str]]:
    head, _, rest = spec.partition(":")
    opts = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"options are key=value pairs, got {item!r} in {spec!r}")
        opts[key] = value
    return head, opts


def prepare(dataset: str, root: str | None = None, origins: int = 10, history: int = 720,
            max_series: int | None = None) -> EvalSetup:
    """Build the evaluation setup of one dataset string (see the module docstring)."""
    head, opts = _parse(dataset) if dataset.startswith(("etth1", "etth2")) else (dataset, {})
    if head in ("etth1", "etth2"):
        horizon = int(opts.get("horizon", 96))
        lookback = int(opts.get("lookback", 96))
        panel = load_ett(root, "ETTh" + head[-1])
        train_rows, test_start = 8640, 8640 + 2880
        # z-score every variable with the training months, the convention of the long-horizon papers.
        stats = [(s[:train_rows].mean(), s[:train_rows].std()) for s in panel.train]
        series = [(s - m) / sd for s, (m, sd) in zip(panel.train, stats)]
        last = len(series[0]) - horizon
        starts = np.linspace(test_start, last, origins).round().astype(int)
        setups = [
            Panel([s[:t0] for s in series], 24, horizon, np.stack([s[t0 : t0 + horizon] for s in series]),
                  list(panel.names), "h")
            for t0 in starts
        ]
        fit = Panel([s[:train_rows] for s in series], 24, horizon, names=list(panel.names), freq="h")
        return EvalSetup(dataset, fit, setups, ("mse", "mae"), lookback, history)
    panel = load_dataset(dataset, root)
    if max_series is not None:
        panel = panel.subset(range(min(max_series, len(panel))))
    if panel.test is None:
        from domain_moe.timeseries.data import holdout

        panel = holdout(panel)
    lookback = LOOKBACK.get(panel.period, max(2 * panel.period, panel.horizon))
    return EvalSetup(dataset, replace(panel, test=None), [panel], ("mase", "mase_train", "mape", "smape", "rmse"),
                     lookback)


def make_method(method: str, setup: EvalSetup, seed: int, epochs: int | None = None) -> Any:
    """Instantiate a forecaster for a method string (statsmodels/torch imported only when needed)."""
    head, opts = _parse(method)
    if head == "seasonal-naive":
        from domain_moe.timeseries.baselines import SeasonalNaive

        return SeasonalNaive()
    if head == "ets":
        from domain_moe.timeseries.baselines import ETS

        # Hourly data: 2-season seasonal ETS over a month of history is the affordable choice.
        return ETS(damped=setup.fit_panel.period < 24, multiplicative=setup.fit_panel.period < 24)
    if head == "arima":
        from domain_moe.timeseries.baselines import ARIMA

        # Hourly data: only the airline model; a seasonal ARIMA fit with m = 24 takes seconds per series.
        return ARIMA() if setup.fit_panel.period < 24 else ARIMA(orders=((0, 1, 1),))
    if head == "theta":
        from domain_moe.timeseries.baselines import Theta

        return Theta()
    if head in NEURAL:
        from domain_moe.timeseries.forecaster import NeuralForecaster

        # The residual over seasonal naive helped on seasonal panels (spec pilot; quarterly tourism 1.58 -> 1.49).
        kwargs: dict[str, Any] = {"lookback": setup.lookback, "seed": seed, "residual": setup.fit_panel.period > 1}
        if epochs is not None:
            kwargs["epochs"] = epochs
        if head == "single-expert":
            kwargs.update(num_experts=1, num_linear=0, gamma=0.0)
        elif head == "moe":
            kwargs.update(gamma=0.0)
        for key, value in opts.items():
            if key in ("variant", "base_loss", "normalization"):
                kwargs[key] = value
            elif key == "residual":
                kwargs[key] = value.lower() in ("1", "true", "yes")
            elif key in ("gamma", "lr", "weight_decay", "temperature"):
                kwargs[key] = float(value)
            else:
                kwargs[key] = int(value)
        return NeuralForecaster(**kwargs)
    raise ValueError(f"unknown method {method!r}; choose from {METHODS} (options after a colon)")


def _cap(panel: Panel, history: int | None) -> Panel:
    if history is None:
        return panel
    return replace(panel, train=[s[-history:] for s in panel.train])


def _device() -> str:
    cpu = platform.processor() or platform.machine()
    try:  # the model name is what makes timings comparable; platform.processor() is often empty on Linux
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores), torch {torch.__version__}, threads {torch.get_num_threads()}"


def run_cell(setup: EvalSetup, method: str, seed: int, epochs: int | None = None) -> dict[str, Any]:
    """Fit one method on one dataset (one seed) and forecast every origin."""
    torch.manual_seed(seed)
    model = make_method(method, setup, seed, epochs)
    start = time.perf_counter()
    forecasts = []
    if _parse(method)[0] in NEURAL:
        model.fit(setup.fit_panel)
        forecasts = [model.predict(origin) for origin in setup.origins]
    else:
        fallbacks = 0
        for origin in setup.origins:
            model.fit(_cap(origin, setup.history))
            forecasts.append(model.predict())
            fallbacks += model.fallbacks
    seconds = time.perf_counter() - start
    extras: dict[str, Any] = {"fallbacks": int(getattr(model, "fallbacks", 0)), "device": _device()}
    if hasattr(model, "gate_usage"):
        extras["gate_usage"] = [float(g) for g in model.gate_usage]
    return {"forecasts": np.stack(forecasts), "seconds": seconds, **extras}


def _scores(setup: EvalSetup, forecasts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-series metrics, averaged over origins (shape ``[N]`` per metric)."""
    per_origin = [
        evaluate_forecasts(fc, o.test, o.train, o.period, setup.metrics) for fc, o in zip(forecasts, setup.origins)
    ]
    return {m: np.mean([p[m] for p in per_origin], axis=0) for m in setup.metrics}


def run_benchmark(datasets: Sequence[str], methods: Sequence[str], seeds: int = 3,
                  out: str | os.PathLike = "results.json",
                  root: str | None = None, origins: int = 10, history: int = 720, epochs: int | None = None,
                  max_series: int | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run (resumably) and return the records; see the module docstring."""
    out = Path(out)
    cache = out.with_suffix(out.suffix + ".cache")
    records: list[dict[str, Any]] = []
    for dataset in datasets:
        setup = prepare(dataset, root, origins, history, max_series)
        for method in methods:
            is_neural = _parse(method)[0] in NEURAL
            runs = []
            for seed in range(seeds if is_neural else 1):
                path = cache / _slug(dataset) / f"{_slug(method)}_seed{seed}.npz"
                if path.exists():
                    with np.load(path, allow_pickle=False) as saved:
                        cell = {"forecasts": saved["forecasts"], "seconds": float(saved["seconds"]),
                                "meta": json.loads(str(saved["meta"]))}
                else:
                    if progress:
                        print(f"[benchmark] {dataset} / {method} / seed {seed} ...", flush=True)
                    result = run_cell(setup, method, seed, epochs)
                    meta = {k: v for k, v in result.items() if k not in ("forecasts", "seconds")}
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(path, forecasts=result["forecasts"], seconds=result["seconds"], meta=json.dumps(meta))
                    cell = {"forecasts": result["forecasts"], "seconds": result["seconds"], "meta": meta}
                    if progress:
                        print(f"[benchmark]   done in {cell['seconds']:.1f}s {meta}", flush=True)
                runs.append(cell)
            records.extend(_records(setup, method, runs))
            _write(out, records)
    return records


def _records(setup: EvalSetup, method: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    per_run = [_scores(setup, r["forecasts"]) for r in runs]
    seconds = float(np.mean([r["seconds"] for r in runs]))
    device = runs[0]["meta"].get("device") or _device()  # where the cell ran, not where it was read back
    cell = {"dataset": setup.name, "method": method, "device": device, "seconds": seconds}
    out = []
    metrics = list(setup.metrics) + (["mase_median"] if "mase" in setup.metrics else [])
    for metric in metrics:
        values = [
            float(np.median(s["mase"])) if metric == "mase_median" else float(np.mean(s[metric])) for s in per_run
        ]
        out.append(record(metric=metric, values=values, higher_is_better=False, **cell))
    usage = [r["meta"].get("gate_usage") for r in runs if r["meta"].get("gate_usage")]
    if usage:
        # The health check of the spec: the least-used expert's mean gate weight, per seed.
        mins = [float(min(u)) for u in usage]
        out.append({
            **record(metric="min_gate_usage", values=mins, higher_is_better=True, **cell),
            "per_expert": [float(u) for u in np.mean(usage, axis=0)],
        })
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in text)[-120:]


def _write(out: Path, records: list[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(records, indent=1))
    tmp.replace(out)


def markdown_table(records: Sequence[dict[str, Any]], metric: str) -> str:
    """A dataset x method table of ``mean ± std`` for one metric."""
    rows = [r for r in records if r["metric"] == metric]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["dataset"], r["method"]): r for r in rows}
    lines = [f"| {metric} | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for m in methods:
        vals = []
        for d in datasets:
            r = cell.get((d, m))
            vals.append("" if r is None else f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["n"] > 1 else ""))
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def paired_test(setup: EvalSetup, cache: Path, method_a: str, method_b: str, seeds: int,
                metric: str = "mase") -> dict[str, float]:
    """Paired Wilcoxon signed-rank test over series x seeds of ``method_a`` vs ``method_b`` (one-sided: a < b)."""
    from scipy.stats import wilcoxon

    def scores(method: str) -> np.ndarray:
        out = []
        for seed in range(seeds):
            path = cache / _slug(setup.name) / f"{_slug(method)}_seed{seed}.npz"
            if not path.exists():
                path = cache / _slug(setup.name) / f"{_slug(method)}_seed0.npz"
            with np.load(path) as saved:
                out.append(_scores(setup, saved["forecasts"])[metric])
        return np.concatenate(out)

    a, b = scores(method_a), scores(method_b)
    stat = wilcoxon(a, b, alternative="less")
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "wins_a": float((a < b).mean()),
            "p_value": float(stat.pvalue), "n": int(a.size)}


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m domain_moe.timeseries.benchmark",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--datasets", "--dataset", nargs="+", default=["tourism-quarterly"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="results.json")
    parser.add_argument("--root", default=None, help="shared data folder (default $DOMAIN_MOE_DATA)")
    parser.add_argument("--origins", type=int, default=10, help="forecast origins of the ETT protocol")
    parser.add_argument("--history", type=int, default=720, help="observations statistical models see on ETT")
    parser.add_argument("--epochs", type=int, default=None, help="override the neural models' epochs")
    parser.add_argument("--max-series", type=int, default=None, help="first N series only (quick runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small models)")
    parser.add_argument("--experiment", choices=("accuracy", "online"), default="accuracy")
    parser.add_argument("--init-epochs", type=int, default=60, help="online: epochs of the initial fit and refits")
    parser.add_argument("--update-epochs", type=int, default=10, help="online: epochs of a partial update")
    parser.add_argument("--update-window", type=int, default=336,
                        help="online: newest windows per series an update sees")
    parser.add_argument("--update-lr", type=float, default=None, help="online: learning rate of updates")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="also print a paired Wilcoxon test of method A < method B per dataset")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.experiment == "online":
        from domain_moe.timeseries.online import OnlineConfig, online_benchmark

        config = OnlineConfig(args.origins, None, args.init_epochs, args.update_epochs, args.update_window,
                              args.update_lr)
        return online_benchmark(args.datasets, args.seeds, args.out, args.root, args.origins, config=config)
    records = run_benchmark(args.datasets, args.methods, args.seeds, args.out, args.root, args.origins, args.history,
                            args.epochs, args.max_series)
    metrics = list(dict.fromkeys(r["metric"] for r in records))
    for metric in metrics:
        print(markdown_table(records, metric) + "\n")
    if args.compare:
        cache = Path(args.out).with_suffix(Path(args.out).suffix + ".cache")
        for dataset in args.datasets:
            setup = prepare(dataset, args.root, args.origins, args.history, args.max_series)
            metric = "mase" if "mase" in setup.metrics else "mse"
            print(dataset, args.compare, paired_test(setup, cache, *args.compare, args.seeds, metric))
    return records


if __name__ == "__main__":
    main()
