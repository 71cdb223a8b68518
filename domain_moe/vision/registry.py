"""Registration of the ``moe_`` vision models with timm's model registry (done on import of the package)."""

from __future__ import annotations

__all__ = ["TIMM_MODELS", "register_timm_models"]

#: Names registered with timm.
TIMM_MODELS = ("moe_mova_tiny", "moe_astrea_tiny")


def register_timm_models() -> list[str]:
    """Register :data:`TIMM_MODELS` with ``timm.models.register_model`` (idempotent); returns the names."""
    import timm
    from timm.models import register_model

    from domain_moe.vision import zoo

    for name in TIMM_MODELS:
        if not timm.is_model(name):
            register_model(getattr(zoo, name))
    return list(TIMM_MODELS)
