"""domain_moe: Mixture-of-Experts for graphs, vision, time series, in-context RL, recommendation and
distillation, on one shared core.

``import domain_moe`` needs only torch: Lightning, timm, PyG, statsmodels, gymnasium and Triton load
only when a subpackage that needs them is imported.
"""

from domain_moe.core import (
    BACKENDS,
    DispatchPlan,
    Experts,
    GLUExperts,
    MLPExperts,
    MoE,
    MoEAux,
    ModuleListExperts,
    Router,
    RoutingDecision,
    SharedExperts,
    TopKRouter,
    collect_aux,
    deepseek_moe,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "DispatchPlan",
    "Experts",
    "GLUExperts",
    "MLPExperts",
    "MoE",
    "MoEAux",
    "ModuleListExperts",
    "Router",
    "RoutingDecision",
    "SharedExperts",
    "TopKRouter",
    "__version__",
    "collect_aux",
    "deepseek_moe",
    "use_backend",
]
