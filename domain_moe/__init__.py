"""domain_moe: Mixture-of-Experts beyond language modelling, on one shared core.

Graphs, vision, time series, in-context RL, recommendation and distillation build on ``domain_moe.core``.

``import domain_moe`` needs only torch: Lightning, timm, PyG, statsmodels, gymnasium and Triton load
only when a subpackage that needs them is imported.
"""

from domain_moe.core import (
    BACKENDS,
    DenseRouter,
    DispatchPlan,
    ExpertChoiceRouter,
    Experts,
    GLUExperts,
    MLPExperts,
    ModuleListExperts,
    MoE,
    MoEAux,
    NoisyTopKRouter,
    NullExpertRouter,
    RandomRouter,
    Router,
    RoutingDecision,
    SharedExperts,
    SoftMoERouter,
    SwitchRouter,
    TopKRouter,
    TopPRouter,
    collect_aux,
    deepseek_moe,
    use_backend,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "DenseRouter",
    "DispatchPlan",
    "ExpertChoiceRouter",
    "Experts",
    "GLUExperts",
    "MLPExperts",
    "MoE",
    "MoEAux",
    "ModuleListExperts",
    "NoisyTopKRouter",
    "NullExpertRouter",
    "RandomRouter",
    "Router",
    "RoutingDecision",
    "SharedExperts",
    "SoftMoERouter",
    "SwitchRouter",
    "TopKRouter",
    "TopPRouter",
    "__version__",
    "collect_aux",
    "deepseek_moe",
    "use_backend",
]
