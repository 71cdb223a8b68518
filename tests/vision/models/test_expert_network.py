import pytest
import torch

from domain_moe.vision.experts import TimmExpert
from domain_moe.vision.heads import CaptionDecoder, ClassificationHead
from domain_moe.vision.models import ExpertNetwork


def test_resizes_only_when_asked():
    trunk = TimmExpert("test_vit", -1, img_size=32, model_kwargs={"img_size": 32, "patch_size": 4})
    net = ExpertNetwork(trunk, ClassificationHead(64, 10), "presence", img_size=32)
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 10)
    fcn = ExpertNetwork(TimmExpert("test_resnet", 3, img_size=64), ClassificationHead(192, 10))
    assert fcn.features(torch.zeros(1, 1, 28, 28)).shape[-1] == 2  # 28 px items, no resize


def test_captioning_needs_the_caption_and_bad_task():
    trunk = TimmExpert("test_byobnet", 3, img_size=64)
    net = ExpertNetwork(trunk, CaptionDecoder(128, 13, 16), "captioning")
    with pytest.raises(ValueError, match="teacher forcing"):
        net(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="task must be one of"):
        ExpertNetwork(trunk, CaptionDecoder(128, 13, 16), "depth")
