"""Public test helpers: the naive per-token MoE oracle, conformance checks, skip decorators."""

from domain_moe.testing.checks import check_experts, check_router
from domain_moe.testing.decorators import only_cuda, requires, requires_triton
from domain_moe.testing.naive import naive_moe, naive_moe_forward

__all__ = [
    "check_experts",
    "check_router",
    "naive_moe",
    "naive_moe_forward",
    "only_cuda",
    "requires",
    "requires_triton",
]
