"""``domain-moe-graph fit|validate|test --config ...``: the LightningCLI of the graph tasks."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import ArgsType, LightningArgumentParser

from domain_moe.graph.data import GraphDataModule
from domain_moe.graph.tasks import NodeClassificationTask
from domain_moe.training.cli import MoELightningCLI

__all__ = ["GraphCLI", "main", "run"]


class GraphCLI(MoELightningCLI):
    """:class:`~domain_moe.training.cli.MoELightningCLI` plus the task-level links of node classification.

    ``data.num_features`` and ``data.num_classes`` go into the network (the base links); ``data.metric`` and
    ``data.num_classes`` also go into the task.

    Args:
        *args: passed to :class:`MoELightningCLI`.
        **kwargs: passed to :class:`MoELightningCLI`.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the base links, then ``data.metric/num_classes -> model.init_args.*``."""
        super().add_arguments_to_parser(parser)
        for name in ("metric", "num_classes"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")


def run(args: ArgsType = None, **kwargs: Any) -> GraphCLI:
    """Run the graph CLI from Python (notebooks, tests): ``run(["fit", "--config", "cfg.yaml"])``.

    Args:
        args: a command-line style list, a dict, or ``None`` for ``sys.argv``.
        **kwargs: passed to :class:`GraphCLI` (``run=False`` only instantiates).

    Returns:
        The CLI (``cli.trainer``, ``cli.model``, ``cli.datamodule``).
    """
    return GraphCLI(NodeClassificationTask, GraphDataModule, args=args, **kwargs)


def main(args: ArgsType = None) -> None:
    """Console entry point ``domain-moe-graph``."""
    run(args)
