"""Multi-task recommendation: HoME with MMoE, OMoE, CGC, PLE and shared-bottom baselines.

The models (:mod:`domain_moe.recsys.models`) and metrics need torch only; the DataModules, the task, the CLI
and the benchmark need the ``recsys`` extra (Lightning), imported where used.
"""

from domain_moe.recsys.models import CGC, PLE, FeatureEmbedding, HoME, MMoE, MultiTaskModel, OMoE, SharedBottom

__all__ = ["CGC", "PLE", "FeatureEmbedding", "HoME", "MMoE", "MultiTaskModel", "OMoE", "SharedBottom"]
