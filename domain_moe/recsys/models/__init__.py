"""Multi-task ranking models (plain ``nn.Module``s, torch only)."""

from domain_moe.recsys.models.base import MultiTaskModel
from domain_moe.recsys.models.extraction import ExtractionLayer
from domain_moe.recsys.models.feature_gate import FeatureGate
from domain_moe.recsys.models.home import HoME
from domain_moe.recsys.models.inputs import FeatureEmbedding
from domain_moe.recsys.models.mmoe import MMoE, OMoE
from domain_moe.recsys.models.ple import CGC, PLE
from domain_moe.recsys.models.shared_bottom import SharedBottom
from domain_moe.recsys.models.towers import Towers

__all__ = [
    "CGC",
    "PLE",
    "ExtractionLayer",
    "FeatureEmbedding",
    "FeatureGate",
    "HoME",
    "MMoE",
    "MultiTaskModel",
    "OMoE",
    "SharedBottom",
    "Towers",
]
