"""The LightningCLI of domain_moe: subclass mode, data-to-model links, optional test after fit."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden

from domain_moe.training.task import MoETask

__all__ = ["MoELightningCLI", "main", "run_cli"]


class MoELightningCLI(LightningCLI):
    """LightningCLI for MoE tasks: ``fit / validate / test / predict`` with ``--config`` composition.

    Differences from ``LightningCLI``:

    * Subclass mode for the model (a :class:`MoETask` subclass) and the data, so configs name both with
      ``class_path``/``init_args``.
    * Values the DataModule knows are linked into the injected network on instantiation: for every
      name in ``data_links`` (default ``num_features``, ``num_classes``),
      ``data.<name> -> model.init_args.model.init_args.<name>``. A link is skipped when the DataModule
      has no such attribute or the network has no such argument, so one CLI serves every task; set
      linked values nowhere else (the config value would be replaced).
    * The optimizer and scheduler are the task's own ``optimizer``/``scheduler`` arguments
      (``auto_configure_optimizers=False``), not top-level ``--optimizer`` groups.
    * ``fit --test_after_fit true`` tests the best checkpoint (or the final weights without
      checkpointing) when training ends and prints the metrics table.
    * The saved ``config.yaml`` is overwritten on re-runs in the same directory.

    Args:
        model_class: base class of the accepted tasks.
        datamodule_class: base class of the accepted DataModules (``None``: any, optional).
        *args: passed to ``LightningCLI``.
        data_links: DataModule attributes linked into the network's constructor arguments.
        subclass_mode_model: accept subclasses of ``model_class``.
        subclass_mode_data: accept subclasses of ``datamodule_class``.
        save_config_kwargs: passed to ``SaveConfigCallback`` (``overwrite`` defaults to ``True``).
        auto_configure_optimizers: add LightningCLI's top-level optimizer groups.
        **kwargs: passed to ``LightningCLI`` (``args``, ``run``, ``trainer_defaults``, ...).

    Example:
        >>> cli = MoELightningCLI(args=["--print_config"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model_class: type[L.LightningModule] | None = MoETask,
        datamodule_class: type[L.LightningDataModule] | None = None,
        *args: Any,
        data_links: Sequence[str] = ("num_features", "num_classes"),
        subclass_mode_model: bool = True,
        subclass_mode_data: bool = True,
        save_config_kwargs: dict[str, Any] | None = None,
        auto_configure_optimizers: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(data_links, str):
            raise TypeError(f"data_links must be a sequence of attribute names, got the string {data_links!r}")
        # Read by add_arguments_to_parser, which LightningCLI.__init__ calls.
        self.data_links = tuple(data_links)
        super().__init__(
            model_class,
            datamodule_class,
            *args,
            save_config_kwargs={"overwrite": True, **(save_config_kwargs or {})},
            subclass_mode_model=subclass_mode_model,
            subclass_mode_data=subclass_mode_data,
            auto_configure_optimizers=auto_configure_optimizers,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add ``--test_after_fit`` and the data-to-model links."""
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="fit only: test the best checkpoint (or the final weights) when training ends.",
        )
        prefix = "model.init_args.model" if self.subclass_mode_model else "model.model"
        for name in self.data_links:
            parser.link_arguments(f"data.{name}", f"{prefix}.init_args.{name}", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI re-parses the model from the checkpoint's hyperparameters when --ckpt_path is given.
        # Our tasks keep the injected network out of hparams and receive data-linked arguments (num_classes,
        # metric) that cannot be set directly, so that re-parse fails or drops the network. The run's config
        # describes the model; the checkpoint restores weights, optimizer and loop state.
        return None

    def after_fit(self) -> None:
        """Run ``test`` when ``--test_after_fit`` is set and training ended normally."""
        config = self.config.get(str(self.subcommand), self.config)
        if not config.get("test_after_fit", False) or self.trainer.interrupted:
            return
        if self.datamodule is None and not is_overridden("test_dataloader", self.model):
            rank_zero_warn("test_after_fit: no DataModule and no model.test_dataloader(); skipping the test.")
            return
        checkpoint = self.trainer.checkpoint_callback
        ckpt_path = "best" if checkpoint is not None and getattr(checkpoint, "best_model_path", "") else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)


def run_cli(
    model_class: type[L.LightningModule] | None = MoETask,
    datamodule_class: type[L.LightningDataModule] | None = None,
    args: ArgsType = None,
    **kwargs: Any,
) -> MoELightningCLI:
    """Run :class:`MoELightningCLI` from Python (notebooks, tests, domain entry points).

    Args:
        model_class: base class of the accepted tasks.
        datamodule_class: base class of the accepted DataModules.
        args: command-line style ``list`` (``["fit", "--config", "exp.yaml"]``), a ``dict`` (for example
            ``{"fit": {"model": {...}, "data": {...}, "trainer": {...}}}``), or ``None`` for ``sys.argv``.
        **kwargs: passed to :class:`MoELightningCLI` (``run=False`` only instantiates).

    Returns:
        The CLI object: ``cli.trainer``, ``cli.model``, ``cli.datamodule`` and ``cli.config``.

    Example:
        >>> cli = run_cli(args=["fit", "--config", "configs/core/moe_digits.yaml"])  # doctest: +SKIP
        >>> cli.trainer.callback_metrics["test/acc"]  # doctest: +SKIP
    """
    if args is not None and not isinstance(args, (list, tuple, dict)) and not hasattr(args, "as_dict"):
        raise TypeError(f"run_cli: args must be a list, a dict, a Namespace or None, got {type(args).__name__}")
    if isinstance(args, tuple):
        args = list(args)
    if args is None:
        return MoELightningCLI(model_class, datamodule_class, args=args, **kwargs)
    with warnings.catch_warnings():
        # Explicit args are the point of run_cli; sys.argv then belongs to pytest or the notebook kernel.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return MoELightningCLI(model_class, datamodule_class, args=args, **kwargs)


def main(args: ArgsType = None) -> None:
    """Console entry point ``domain-moe``: ``domain-moe fit --config configs/core/moe_digits.yaml``."""
    run_cli(args=args)
