"""The shared MoE core: routers, experts, dispatch, losses and balancing (depends on torch only)."""

from domain_moe.core import losses
from domain_moe.core.dense_moe import DenseMoE, DenseMoEOutput
from domain_moe.core.dispatch import BACKENDS, build_plan, combine, gather_rows, grouped_linear, use_backend
from domain_moe.core.experts import Experts, GLUExperts, LinearExperts, MLPExperts, ModuleListExperts, SharedExperts
from domain_moe.core.moe import MoE, collect_aux, deepseek_moe
from domain_moe.core.multi_gate import MultiGate, MultiGateMoE
from domain_moe.core.routing import (
    DenseRouter,
    ExpertChoiceRouter,
    MaskedTopKRouter,
    NoisyTopKRouter,
    NullExpertRouter,
    RandomRouter,
    RandomSubsetRouter,
    Router,
    SoftMoERouter,
    SwitchRouter,
    ThresholdRouter,
    TopKRouter,
    TopPRouter,
    fixed_decision,
)
from domain_moe.core.types import DispatchPlan, MoEAux, RoutingDecision

__all__ = [
    "BACKENDS",
    "DenseMoE",
    "DenseMoEOutput",
    "DenseRouter",
    "DispatchPlan",
    "ExpertChoiceRouter",
    "Experts",
    "GLUExperts",
    "LinearExperts",
    "MLPExperts",
    "MaskedTopKRouter",
    "MoE",
    "MoEAux",
    "ModuleListExperts",
    "MultiGate",
    "MultiGateMoE",
    "NoisyTopKRouter",
    "NullExpertRouter",
    "RandomRouter",
    "RandomSubsetRouter",
    "Router",
    "RoutingDecision",
    "SharedExperts",
    "SoftMoERouter",
    "SwitchRouter",
    "ThresholdRouter",
    "TopKRouter",
    "TopPRouter",
    "build_plan",
    "collect_aux",
    "combine",
    "deepseek_moe",
    "fixed_decision",
    "gather_rows",
    "grouped_linear",
    "losses",
    "use_backend",
]
