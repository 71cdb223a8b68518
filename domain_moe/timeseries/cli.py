"""``domain-moe-timeseries fit|validate|test|predict --config ...``; ``predict`` writes forecasts to CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import ArgsType

from domain_moe.timeseries.data import ForecastDataModule
from domain_moe.timeseries.tasks import ForecastTask
from domain_moe.training.cli import MoELightningCLI

__all__ = ["ForecastCLI", "ForecastWriter", "main", "run"]


class ForecastWriter(L.Callback):
    """Collects ``ForecastTask.predict_step`` outputs and writes them as a long CSV at the end of predict.

    Columns: ``series`` (name), ``step`` (1..H), ``forecast``, then ``expert_<k>`` forecasts and
    ``gate_<k>`` weights of every expert.

    Args:
        path: output file.

    Example:
        >>> ForecastWriter("forecasts.csv").path.name
        'forecasts.csv'
    """

    def __init__(self, path: str = "forecasts.csv") -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start a new file's worth of rows."""
        self.rows = []

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        """Turn one batch of forecasts into rows."""
        names = list(getattr(trainer.datamodule, "series_names", []) or [])
        for i, series in enumerate(outputs["series"].tolist()):
            name = names[series] if series < len(names) else str(series)
            fc = outputs["forecast"][i]
            for h in range(fc.shape[0]):
                row = {"series": name, "step": h + 1, "forecast": float(fc[h])}
                for k in range(outputs["gate"].shape[1]):
                    row[f"expert_{k}"] = float(outputs["expert_forecast"][i, k, h])
                for k in range(outputs["gate"].shape[1]):
                    row[f"gate_{k}"] = float(outputs["gate"][i, k])
                self.rows.append(row)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the CSV."""
        if not self.rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)


class ForecastCLI(MoELightningCLI):
    """:class:`MoELightningCLI` that links ``input_size``/``horizon`` and adds ``predict --forecasts PATH``."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Add ``--forecasts`` on top of the shared arguments and links."""
        super().add_arguments_to_parser(parser)
        parser.add_argument("--forecasts", type=str, default="forecasts.csv",
                            help="predict only: CSV file the forecasts are written to.")

    def before_predict(self) -> None:
        """Attach the CSV writer."""
        self.trainer.callbacks.append(ForecastWriter(self._get(self.config, "forecasts", "forecasts.csv")))


def run(args: ArgsType = None, **kwargs: Any) -> ForecastCLI:
    """Run the time-series CLI from Python (notebooks, tests); ``args`` as for ``run_cli``."""
    if isinstance(args, tuple):
        args = list(args)
    return ForecastCLI(ForecastTask, ForecastDataModule, args=args, data_links=("input_size", "horizon"), **kwargs)


def main(args: ArgsType = None) -> None:
    """Console entry point ``domain-moe-timeseries``."""
    run(args)
