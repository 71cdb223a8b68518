"""``domain-moe-vision fit|validate|test --config ...``: the LightningCLI of the vision tasks."""

from __future__ import annotations

import warnings
from typing import Any

from lightning.pytorch.cli import ArgsType

from domain_moe.training.cli import MoELightningCLI
from domain_moe.training.task import MoETask

__all__ = ["VisionCLI", "main", "run"]


class VisionCLI(MoELightningCLI):
    """:class:`~domain_moe.training.cli.MoELightningCLI` for the vision tasks.

    Configs spell out the networks in full (expert trunks, heads, routers), so no data-to-model links are
    added: the canvas sizes and answer space are fixed by the configs' arguments.

    Args:
        *args: passed to :class:`MoELightningCLI`.
        **kwargs: passed to :class:`MoELightningCLI`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("data_links", ())
        super().__init__(*args, **kwargs)


def run(args: ArgsType = None, **kwargs: Any) -> VisionCLI:
    """Run the vision CLI from Python (notebooks, tests): ``run(["fit", "--config", "cfg.yaml"])``.

    Args:
        args: a command-line style list, a dict, or ``None`` for ``sys.argv``.
        **kwargs: passed to :class:`VisionCLI` (``run=False`` only instantiates).

    Returns:
        The CLI (``cli.trainer``, ``cli.model``, ``cli.datamodule``).
    """
    import domain_moe.vision  # noqa: F401 (registers the moe_ models with timm)
    from domain_moe.vision.data import CanvasDataModule  # noqa: F401 (importable by class_path)

    with warnings.catch_warnings():
        # Explicit args are the point of run(); sys.argv then belongs to pytest or the notebook kernel.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return VisionCLI(MoETask, None, args=args, **kwargs)


def main(args: ArgsType = None) -> None:
    """Console entry point ``domain-moe-vision``."""
    run(args)
