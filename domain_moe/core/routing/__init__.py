"""Routers: each maps tokens ``x[T, D]`` to a :class:`~domain_moe.core.types.RoutingDecision`."""

from domain_moe.core.routing.base import (
    DROP_POLICIES,
    Router,
    apply_capacity,
    check_logits,
    count_assignments,
)
from domain_moe.core.routing.dense import DenseRouter
from domain_moe.core.routing.expert_choice import ExpertChoiceRouter
from domain_moe.core.routing.fixed import fixed_decision
from domain_moe.core.routing.masked_top_k import MaskedTopKRouter
from domain_moe.core.routing.noisy import NoisyTopKRouter
from domain_moe.core.routing.null_experts import NullExpertRouter
from domain_moe.core.routing.random import RandomRouter
from domain_moe.core.routing.random_subset import RandomSubsetRouter
from domain_moe.core.routing.soft import SoftMoERouter
from domain_moe.core.routing.switch import SwitchRouter
from domain_moe.core.routing.threshold import ThresholdRouter
from domain_moe.core.routing.top_k import TopKRouter
from domain_moe.core.routing.top_p import TopPRouter

__all__ = [
    "DROP_POLICIES",
    "DenseRouter",
    "ExpertChoiceRouter",
    "MaskedTopKRouter",
    "NoisyTopKRouter",
    "NullExpertRouter",
    "RandomRouter",
    "RandomSubsetRouter",
    "Router",
    "SoftMoERouter",
    "SwitchRouter",
    "ThresholdRouter",
    "TopKRouter",
    "TopPRouter",
    "apply_capacity",
    "check_logits",
    "count_assignments",
    "fixed_decision",
]
