"""Graph models: the MLP and GNN baselines (also Mowst's experts) and Mowst itself."""

from domain_moe.graph.models.gnn import GNN
from domain_moe.graph.models.mlp import NodeMLP
from domain_moe.graph.models.mowst import ConfidenceGate, Mowst, MowstOutput, MowstSample, dispersion

__all__ = ["GNN", "ConfidenceGate", "Mowst", "MowstOutput", "MowstSample", "NodeMLP", "dispersion"]
