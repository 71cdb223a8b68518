import pytest
import timm

import domain_moe.vision  # noqa: F401 (registers the models)
from domain_moe.vision.models import Astrea, MoVA
from domain_moe.vision.registry import TIMM_MODELS, register_timm_models


def test_moe_models_are_registered_with_timm():
    assert set(TIMM_MODELS) <= set(timm.list_models("moe_*"))
    assert all(name.startswith("moe_") for name in TIMM_MODELS)
    assert register_timm_models() == list(TIMM_MODELS)  # idempotent
    assert isinstance(timm.create_model("moe_mova_tiny"), MoVA)
    assert isinstance(timm.create_model("moe_astrea_tiny", moco=False), Astrea)


def test_no_pretrained_weights():
    with pytest.raises(ValueError, match="no published weights"):
        timm.create_model("moe_mova_tiny", pretrained=True)
