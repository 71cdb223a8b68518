"""Plain ``nn.Module``s of the in-context RL domain (no Lightning)."""

from domain_moe.rl.models.ad_transformer import LAST_FFNS, TOKEN_LAYOUTS, ADTransformer
from domain_moe.rl.models.dense_ffn import DenseFFN, matched_dense_hidden
from domain_moe.rl.models.t2mir_layer import (
    TASK_ROUTINGS,
    T2MIRLayer,
    contrastive_routing_accuracy,
    contrastive_routing_loss,
)

__all__ = [
    "LAST_FFNS",
    "TASK_ROUTINGS",
    "TOKEN_LAYOUTS",
    "ADTransformer",
    "DenseFFN",
    "T2MIRLayer",
    "contrastive_routing_accuracy",
    "contrastive_routing_loss",
    "matched_dense_hidden",
]
