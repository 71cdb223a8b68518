"""The default tiny expert pool and the ``moe_``-prefixed model builders registered with timm.

Roles follow the Astrea expert matrix (classification, captioning, detection, segmentation); each trunk is a
different timm family with its own width and stride, so alignment is exercised for real. The builders return
untrained models (``pretrained=True`` is refused: there are no published weights for these compositions).
"""

from __future__ import annotations

from typing import Any

from domain_moe.vision.canvas import TEMPLATES, AnswerSpace
from domain_moe.vision.experts import ExpertPool, TimmExpert
from domain_moe.vision.heads import QuestionHead
from domain_moe.vision.models.astrea import Astrea
from domain_moe.vision.models.context_router import ContextRouter
from domain_moe.vision.models.mov_adapter import MoVAdapter
from domain_moe.vision.models.mova import MoVA

__all__ = ["BASE_SPEC", "EXPERT_SPECS", "build_base", "build_pool", "moe_astrea_tiny", "moe_mova_tiny"]

#: The base encoder: a small ViT on the canvas downsampled to 32 px, 8x8 patch tokens of width 64.
BASE_SPEC: dict[str, Any] = {
    "model_name": "test_vit",
    "out_index": -1,
    "img_size": 32,
    "model_kwargs": {"img_size": 32, "patch_size": 4},
}
#: The four experts, by role: (timm trunk, stage) giving widths 192/128/32/24 at strides 16/16/8/4 on 64 px.
EXPERT_SPECS: dict[str, dict[str, Any]] = {
    "classification": {"model_name": "test_resnet", "out_index": 3, "img_size": 64},
    "captioning": {"model_name": "test_byobnet", "out_index": 3, "img_size": 64},
    "detection": {"model_name": "test_efficientnet", "out_index": 2, "img_size": 64},
    "segmentation": {"model_name": "test_convnext", "out_index": 0, "img_size": 64},
}


def build_base(checkpoint: str | None = None) -> TimmExpert:
    """The default base encoder (optionally with trained weights)."""
    return TimmExpert(**BASE_SPEC, checkpoint=checkpoint)


def build_pool(checkpoints: dict[str, str] | None = None, grid: int = 8) -> ExpertPool:
    """The default frozen pool, in :data:`EXPERT_SPECS` order (optionally with trained weights per role)."""
    checkpoints = checkpoints or {}
    experts = [TimmExpert(**spec, checkpoint=checkpoints.get(role)) for role, spec in EXPERT_SPECS.items()]
    return ExpertPool(experts, names=list(EXPERT_SPECS), grid=grid)


def _check_pretrained(pretrained: bool, kwargs: dict[str, Any]) -> None:
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError("pretrained=True: there are no published weights for the moe_ vision models")


def moe_mova_tiny(pretrained: bool = False, **kwargs: Any) -> MoVA:
    """MoVA with the default tiny base and pool, 2 adapter blocks, K_max = 2 (untrained)."""
    _check_pretrained(pretrained, kwargs)
    grid, d_model, d_context = 8, 64, 32
    pool = build_pool(grid=grid)
    answers = AnswerSpace(10, kwargs.pop("max_items", 3))
    head = QuestionHead(d_model, len(TEMPLATES), 10, answers.mask(), d_context=d_context)
    router = ContextRouter(d_model, grid, len(TEMPLATES), 10, len(pool), d_context=d_context, top_k=2)
    adapter = MoVAdapter(d_model, pool.channels, grid * grid, d_context, num_blocks=2, top_k=2)
    return MoVA(router, adapter, head, base=build_base(), pool=pool, grid=grid, **kwargs)


def moe_astrea_tiny(pretrained: bool = False, **kwargs: Any) -> Astrea:
    """Astrea with the default tiny base and four-expert matrix (untrained)."""
    _check_pretrained(pretrained, kwargs)
    grid, d_model = 8, 64
    pool = build_pool(grid=grid)
    answers = AnswerSpace(10, kwargs.pop("max_items", 3))
    head = QuestionHead(d_model, len(TEMPLATES), 10, answers.mask())
    return Astrea(d_model, pool.channels, head, base=build_base(), pool=pool, grid=grid, **kwargs)
