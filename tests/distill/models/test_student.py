import pytest
import torch
from torch import nn

from domain_moe.distill.models import ConcentrationStudent, ConvNet, TimmNet

VERTICALS = [[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]]


def test_tabular_backbone_and_pace_parameters():
    mlp = nn.Sequential(nn.Linear(12, 16), nn.ReLU())
    student = ConcentrationStudent(mlp, VERTICALS, in_features=16, shared_width=8, block_width=4)
    out = student(torch.randn(5, 12))
    assert out.shape == (5, 10)
    assert student.pace_parameters() == [student.pace.gamma]
    for classes in VERTICALS:  # self-paced blocks: each block's norm is its gamma
        torch.testing.assert_close(out[:, classes].norm(dim=1), torch.full((5,), float(len(classes)) ** 0.5))


def test_timm_backbone():
    student = ConcentrationStudent(TimmNet("test_resnet", num_classes=0), VERTICALS, head="fc", pace="none")
    assert student(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert student.pace_parameters() == []


def test_bad_inputs():
    with pytest.raises(TypeError, match=r"backbone must be an nn\.Module"):
        ConcentrationStudent("resnet", VERTICALS)
    with pytest.raises(TypeError, match="in_features is needed"):
        ConcentrationStudent(nn.Linear(3, 4), VERTICALS)
    with pytest.raises(ValueError, match="missing classes"):
        ConcentrationStudent(ConvNet(1, 0, (4,)), [[0, 1], [3]])
    with pytest.raises(ValueError, match="timm model"):
        TimmNet("no_such_model_xyz")
