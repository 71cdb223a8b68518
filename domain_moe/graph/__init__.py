"""Graph MoE methods on torch-geometric: Mowst (weak MLP / strong GNN experts with a confidence gate).

The models (:mod:`domain_moe.graph.models`) need torch and torch-geometric; the DataModules, the tasks, the CLI
and the benchmark also need Lightning (the ``graph`` extra), imported where used.
"""

from domain_moe.utils.imports import require

require("torch_geometric", extra="graph", feature="domain_moe.graph")

from domain_moe.graph.checks import check_graph  # noqa: E402 (after the dependency check on purpose)
from domain_moe.graph.models import GNN, ConfidenceGate, Mowst, MowstOutput, MowstSample, NodeMLP, dispersion  # noqa: E402

__all__ = ["GNN", "ConfidenceGate", "Mowst", "MowstOutput", "MowstSample", "NodeMLP", "check_graph", "dispersion"]
