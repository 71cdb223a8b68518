"""``domain-moe-distill fit|validate|test --config ...``: the LightningCLI of Knowledge Concentration."""

from __future__ import annotations

import warnings
from typing import Any

from lightning.pytorch.cli import ArgsType

from domain_moe.distill.data import VerticalDataModule
from domain_moe.training.cli import MoELightningCLI
from domain_moe.training.task import MoETask

__all__ = ["DistillCLI", "main", "run"]


class DistillCLI(MoELightningCLI):
    """:class:`~domain_moe.training.cli.MoELightningCLI` with the links of the distillation tasks.

    ``data.num_outputs`` goes into the network's ``num_classes`` (a specialist: ``N_v`` of its vertical),
    ``data.verticals`` into the student's ``verticals`` and ``data.vertical_names`` into the task's
    ``vertical_names``; a link is skipped where the target has no such argument.

    Args:
        *args: passed to :class:`MoELightningCLI`.
        **kwargs: passed to :class:`MoELightningCLI`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("data_links", ("verticals",))
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Add the base links, then ``data.num_outputs -> model.init_args.model.init_args.num_classes``."""
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.num_outputs", "model.init_args.model.init_args.num_classes", apply_on="instantiate")


def run(args: ArgsType = None, **kwargs: Any) -> DistillCLI:
    """Run the distillation CLI from Python (notebooks, tests): ``run(["fit", "--config", "cfg.yaml"])``.

    Args:
        args: a command-line style list, a dict, or ``None`` for ``sys.argv``.
        **kwargs: passed to :class:`DistillCLI` (``run=False`` only instantiates).

    Returns:
        The CLI (``cli.trainer``, ``cli.model``, ``cli.datamodule``).
    """
    if args is None:
        return DistillCLI(MoETask, VerticalDataModule, args=args, **kwargs)
    with warnings.catch_warnings():
        # Explicit args are the point of run(); sys.argv then belongs to pytest or the notebook kernel.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return DistillCLI(MoETask, VerticalDataModule, args=args, **kwargs)


def main(args: ArgsType = None) -> None:
    """Console entry point ``domain-moe-distill``."""
    run(args)
