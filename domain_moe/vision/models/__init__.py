"""Vision MoE models: MoVA (router + MoV-Adapter) and Astrea (aligned experts + allocator), plain nn.Modules."""

from domain_moe.vision.models.astrea import Astrea, AstreaFusion
from domain_moe.vision.models.context_router import ContextRouter, ContextScorer
from domain_moe.vision.models.cross_attention import ExpertCrossAttention
from domain_moe.vision.models.describer import CaptionEncoder, Describer
from domain_moe.vision.models.expert_network import ExpertNetwork
from domain_moe.vision.models.momentum import MomentumEncoder
from domain_moe.vision.models.mov_adapter import MoVAdapter, MoVAdapterBlock
from domain_moe.vision.models.mova import MoVA
from domain_moe.vision.models.probe import SingleSourceModel
from domain_moe.vision.models.stochastic_residual import StochasticExpertDrop

__all__ = [
    "Astrea",
    "AstreaFusion",
    "CaptionEncoder",
    "ContextRouter",
    "ContextScorer",
    "Describer",
    "ExpertCrossAttention",
    "ExpertNetwork",
    "MoVA",
    "MoVAdapter",
    "MoVAdapterBlock",
    "MomentumEncoder",
    "SingleSourceModel",
    "StochasticExpertDrop",
]
