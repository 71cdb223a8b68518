"""``domain-moe-recsys fit|validate|test --config ...``: the LightningCLI of the multi-task recommenders."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import ArgsType, LightningArgumentParser

from domain_moe.recsys.data import RecDataModule
from domain_moe.recsys.tasks import MultiTaskTask
from domain_moe.training.cli import MoELightningCLI

__all__ = ["RecsysCLI", "main", "run"]

#: DataModule attributes linked into the model's constructor.
MODEL_LINKS = ("task_names", "cardinalities", "num_dense")


class RecsysCLI(MoELightningCLI):
    """:class:`~domain_moe.training.cli.MoELightningCLI` plus the task-level links of multi-task data.

    ``data.task_names``, ``data.cardinalities`` and ``data.num_dense`` go into the model;
    ``data.task_names`` and ``data.task_types`` also go into :class:`MultiTaskTask`.

    Args:
        *args: passed to :class:`MoELightningCLI`.
        **kwargs: passed to :class:`MoELightningCLI`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("data_links", MODEL_LINKS)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the base links, then ``data.task_names/task_types -> model.init_args.*``."""
        super().add_arguments_to_parser(parser)
        for name in ("task_names", "task_types"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")


def run(args: ArgsType = None, **kwargs: Any) -> RecsysCLI:
    """Run the recsys CLI from Python (notebooks, tests): ``run(["fit", "--config", "cfg.yaml"])``.

    Args:
        args: a command-line style list, a dict, or ``None`` for ``sys.argv``.
        **kwargs: passed to :class:`RecsysCLI` (``run=False`` only instantiates).

    Returns:
        The CLI (``cli.trainer``, ``cli.model``, ``cli.datamodule``).
    """
    return RecsysCLI(MultiTaskTask, RecDataModule, args=args, **kwargs)


def main(args: ArgsType = None) -> None:
    """Console entry point ``domain-moe-recsys``."""
    run(args)
