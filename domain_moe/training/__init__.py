"""Lightning glue shared by every domain: the base task, callbacks, the CLI and seeding.

Needs the ``train`` extra (``pip install 'domain-moe[train]'``); ``import domain_moe`` alone never
imports Lightning.
"""

from domain_moe.utils.imports import require

for _name in ("lightning", "torchmetrics", "jsonargparse"):
    require(_name, extra="train", feature="domain_moe.training")

from domain_moe.training.callbacks import ExpertBiasCallback, ExpertLoadMonitor  # noqa: E402
from domain_moe.training.classification import ClassificationTask  # noqa: E402
from domain_moe.training.classifier import MoEClassifier  # noqa: E402
from domain_moe.training.cli import MoELightningCLI, main, run_cli  # noqa: E402
from domain_moe.training.digits import DigitsDataModule  # noqa: E402
from domain_moe.training.seed import seed_everything  # noqa: E402
from domain_moe.training.task import MoETask, named_moe_layers  # noqa: E402

del _name

__all__ = [
    "ClassificationTask",
    "DigitsDataModule",
    "ExpertBiasCallback",
    "ExpertLoadMonitor",
    "MoEClassifier",
    "MoELightningCLI",
    "MoETask",
    "main",
    "named_moe_layers",
    "run_cli",
    "seed_everything",
]
