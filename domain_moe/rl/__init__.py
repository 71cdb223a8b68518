"""In-context RL with T2MIR: token-wise and task-wise MoE in an Algorithm Distillation transformer.

Wu et al., "Mixture-of-Experts Meets In-Context Reinforcement Learning" (NeurIPS 2025). The task families
(:mod:`domain_moe.rl.envs`) and the learning histories need gymnasium (the ``rl`` extra); the models need torch
only; the DataModule, the task, the CLI and the benchmark also need Lightning, imported where used.
"""

from domain_moe.utils.imports import require

require("gymnasium", extra="rl", feature="domain_moe.rl")

from domain_moe.rl.envs import DarkRoom, PointRobot, make_env  # noqa: E402 (after the dependency check on purpose)
from domain_moe.rl.histories import LearningHistories, generate_histories  # noqa: E402
from domain_moe.rl.models import ADTransformer, DenseFFN, T2MIRLayer, contrastive_routing_loss  # noqa: E402

__all__ = [
    "ADTransformer",
    "DarkRoom",
    "DenseFFN",
    "LearningHistories",
    "PointRobot",
    "T2MIRLayer",
    "contrastive_routing_loss",
    "generate_histories",
    "make_env",
]
