"""Expert containers: stacked MLP/GLU experts, arbitrary module experts, shared experts."""

from domain_moe.core.experts.activation import ACTIVATIONS, get_activation
from domain_moe.core.experts.base import Experts
from domain_moe.core.experts.glu import GLUExperts
from domain_moe.core.experts.linear import LinearExperts
from domain_moe.core.experts.mlp import MLPExperts
from domain_moe.core.experts.module_list import ModuleListExperts
from domain_moe.core.experts.shared import SharedExperts

__all__ = [
    "ACTIVATIONS",
    "Experts",
    "GLUExperts",
    "LinearExperts",
    "MLPExperts",
    "ModuleListExperts",
    "SharedExperts",
    "get_activation",
]
