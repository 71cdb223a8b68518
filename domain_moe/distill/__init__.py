"""Knowledge Concentration: many frozen specialist teachers distilled into one student (Gao et al., 2017).

The models (:mod:`domain_moe.distill.models`), the soft targets and the schedules need torch only (timm for
:class:`~domain_moe.distill.models.TimmNet`); the DataModules, the tasks, the CLI and the benchmark also need
Lightning (the ``distill`` extra), imported where used.
"""

from domain_moe.distill.models import ConcentrationStudent, ConvNet, SCHead, TeacherEnsemble, TimmNet, VerticalPace
from domain_moe.distill.schedule import pace_quantile, self_paced_weights
from domain_moe.distill.targets import concentration_loss, concentration_targets
from domain_moe.distill.verticals import FASHION_MNIST_VERTICALS, check_verticals, class_to_vertical

__all__ = [
    "FASHION_MNIST_VERTICALS",
    "ConcentrationStudent",
    "ConvNet",
    "SCHead",
    "TeacherEnsemble",
    "TimmNet",
    "VerticalPace",
    "check_verticals",
    "class_to_vertical",
    "concentration_loss",
    "concentration_targets",
    "pace_quantile",
    "self_paced_weights",
]
