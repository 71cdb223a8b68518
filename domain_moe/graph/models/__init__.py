"""Graph models: the MLP and GNN baselines (also Mowst's experts), Mowst, and the GMoPE prompt-expert mixture."""

from domain_moe.graph.models.gmope import GMoPE, PromptExpertMoE, structure_summary
from domain_moe.graph.models.gnn import GNN
from domain_moe.graph.models.mlp import NodeMLP
from domain_moe.graph.models.mowst import (
    ConfidenceGate,
    HyperConfidenceGate,
    Mowst,
    MowstOutput,
    MowstSample,
    dispersion,
)
from domain_moe.graph.models.prompt import FeaturePrompt

__all__ = [
    "GNN",
    "ConfidenceGate",
    "FeaturePrompt",
    "GMoPE",
    "HyperConfidenceGate",
    "Mowst",
    "MowstOutput",
    "MowstSample",
    "NodeMLP",
    "PromptExpertMoE",
    "dispersion",
    "structure_summary",
]
