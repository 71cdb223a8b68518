"""Plain ``nn.Module``s of Knowledge Concentration (torch only; :class:`TimmNet` needs timm)."""

from domain_moe.distill.models.convnet import ConvNet
from domain_moe.distill.models.pace import VerticalPace
from domain_moe.distill.models.sc_head import HEADS, SCHead, head_weight_count
from domain_moe.distill.models.student import ConcentrationStudent
from domain_moe.distill.models.teachers import TeacherEnsemble, load_module_weights
from domain_moe.distill.models.timm_net import TimmNet

__all__ = [
    "HEADS",
    "ConcentrationStudent",
    "ConvNet",
    "SCHead",
    "TeacherEnsemble",
    "TimmNet",
    "VerticalPace",
    "head_weight_count",
    "load_module_weights",
]
