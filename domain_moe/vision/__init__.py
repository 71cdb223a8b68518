"""Vision MoE on timm: MoVA (context-aware routing over heterogeneous experts + MoV-Adapter) and Astrea.

Importing this package registers the ``moe_``-prefixed models with timm's registry
(``timm.create_model("moe_mova_tiny")``). The models need torch and timm; the DataModules, tasks, CLI and
benchmark also need Lightning (the ``vision`` extra).
"""

from domain_moe.utils.imports import require

require("timm", extra="vision", feature="domain_moe.vision")

from domain_moe.vision.canvas import TEMPLATES, AnswerSpace, make_canvases  # noqa: E402 (after the check)
from domain_moe.vision.experts import ExpertPool, FeatureAligner, TimmExpert, align_to_grid  # noqa: E402
from domain_moe.vision.models import (  # noqa: E402
    Astrea,
    AstreaFusion,
    ContextRouter,
    ExpertCrossAttention,
    ExpertNetwork,
    MoVA,
    MoVAdapter,
    SingleSourceModel,
    StochasticExpertDrop,
)
from domain_moe.vision.registry import register_timm_models  # noqa: E402

register_timm_models()

__all__ = [
    "TEMPLATES",
    "AnswerSpace",
    "Astrea",
    "AstreaFusion",
    "ContextRouter",
    "ExpertCrossAttention",
    "ExpertNetwork",
    "ExpertPool",
    "FeatureAligner",
    "MoVA",
    "MoVAdapter",
    "SingleSourceModel",
    "StochasticExpertDrop",
    "TimmExpert",
    "align_to_grid",
    "make_canvases",
    "register_timm_models",
]
