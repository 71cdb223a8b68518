"""Graph MoE methods on torch-geometric.

Mowst (weak MLP / strong GNN experts with a confidence gate) and GMoPE (expert-specific prompts over a shared,
contrastively pre-trained GNN backbone, with SVD feature alignment across graphs and prompt-only tuning).

The models (:mod:`domain_moe.graph.models`) need torch and torch-geometric; the DataModules, the tasks, the CLI
and the benchmarks also need Lightning (the ``graph`` extra), imported where used.
"""

from domain_moe.utils.imports import require

require("torch_geometric", extra="graph", feature="domain_moe.graph")

# After the dependency check on purpose.
from domain_moe.graph.alignment import SVDFeatureAlignment, svd_align  # noqa: E402
from domain_moe.graph.checks import check_graph  # noqa: E402
from domain_moe.graph.models import (  # noqa: E402
    GNN,
    ConfidenceGate,
    FeaturePrompt,
    GMoPE,
    HyperConfidenceGate,
    Mowst,
    MowstOutput,
    MowstSample,
    NodeMLP,
    PromptExpertMoE,
    dispersion,
)

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
    "SVDFeatureAlignment",
    "check_graph",
    "dispersion",
    "svd_align",
]
