"""Routers: each maps tokens ``x[T, D]`` to a :class:`~domain_moe.core.types.RoutingDecision`."""

from domain_moe.core.routing.base import DROP_POLICIES, Router, apply_capacity, check_logits, count_assignments
from domain_moe.core.routing.top_k import TopKRouter

__all__ = ["DROP_POLICIES", "Router", "TopKRouter", "apply_capacity", "check_logits", "count_assignments"]
