"""``domain-moe-rl fit|test --config ...``: the LightningCLI of in-context RL."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import ArgsType

from domain_moe.rl.data import ICRLDataModule
from domain_moe.rl.tasks import InContextRLTask
from domain_moe.training.cli import MoELightningCLI

__all__ = ["DATA_LINKS", "RLCLI", "main", "run"]

#: DataModule attributes linked into the network's constructor.
DATA_LINKS = ("state_dim", "action_dim", "discrete_actions", "max_episode_steps", "max_context_steps")


class RLCLI(MoELightningCLI):
    """:class:`~domain_moe.training.cli.MoELightningCLI` with the environment sizes linked into the model.

    ``test`` runs the in-context evaluation on ``data.init_args.eval_tasks`` (config or command line, e.g.
    ``--data.init_args.eval_tasks '[[0, 0], [6, 6]]'``) or on the held-out split; ``--ckpt_path`` loads
    trained weights.

    Args:
        *args: passed to :class:`MoELightningCLI`.
        **kwargs: passed to :class:`MoELightningCLI`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("data_links", DATA_LINKS)
        super().__init__(*args, **kwargs)


def run(args: ArgsType = None, **kwargs: Any) -> RLCLI:
    """Run the RL CLI from Python (notebooks, tests): ``run(["fit", "--config", "cfg.yaml"])``.

    Args:
        args: a command-line style list, a dict, or ``None`` for ``sys.argv``.
        **kwargs: passed to :class:`RLCLI` (``run=False`` only instantiates).

    Returns:
        The CLI (``cli.trainer``, ``cli.model``, ``cli.datamodule``).
    """
    return RLCLI(InContextRLTask, ICRLDataModule, args=args, **kwargs)


def main(args: ArgsType = None) -> None:
    """Console entry point ``domain-moe-rl``."""
    torch_threads()
    run(args)


def torch_threads() -> None:
    """One intra-op thread unless ``OMP_NUM_THREADS`` says otherwise: these models are tiny and CPU sharing costs."""
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
