"""Dispatch: plan building, row gather and combine, grouped linear maps, and backend choice."""

from domain_moe.core.dispatch.backend import (
    BACKENDS,
    ENV_VAR,
    current_backend,
    resolve_backend,
    triton_available,
    use_backend,
)
from domain_moe.core.dispatch.reference import (
    build_plan,
    combine,
    expert_buffer_positions,
    from_expert_buffer,
    gather_rows,
    grouped_linear,
    grouped_mm_supported,
    rows_from_all_experts,
    to_expert_buffer,
)

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "build_plan",
    "combine",
    "current_backend",
    "expert_buffer_positions",
    "from_expert_buffer",
    "gather_rows",
    "grouped_linear",
    "grouped_mm_supported",
    "resolve_backend",
    "rows_from_all_experts",
    "to_expert_buffer",
    "triton_available",
    "use_backend",
]
