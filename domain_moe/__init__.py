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
from domain_moe.core import (
    DenseRouter,
    ExpertChoiceRouter,
    NoisyTopKRouter,
    NullExpertRouter,
    RandomRouter,
    SoftMoERouter,
    SwitchRouter,
    TopPRouter,
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
