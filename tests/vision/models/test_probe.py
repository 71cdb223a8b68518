import pytest
import torch

from domain_moe.vision.canvas import AnswerSpace
from domain_moe.vision.heads import QuestionHead
from domain_moe.vision.models import SingleSourceModel


def test_probe_learns_a_source_dependent_answer():
    torch.manual_seed(0)
    head = QuestionHead(16, 6, 10, AnswerSpace(10, 3).mask(), d_context=8, num_heads=2)
    probe = SingleSourceModel(4, 16, head)
    # Template 3 (leftmost) answers a class; make the class readable from token 0's first channel.
    answer = torch.randint(10, (64,))
    tokens = torch.randn(64, 5, 4) * 0.1
    tokens[:, 0, 0] = answer.float()
    context = torch.full((64,), 3)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(probe(tokens, context), answer)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (probe(tokens, context).argmax(-1) == answer).float().mean() > 0.8


def test_width_mismatch():
    head = QuestionHead(16, 6, 10, AnswerSpace(10, 3).mask(), num_heads=2)
    with pytest.raises(ValueError, match="d_model=8"):
        SingleSourceModel(4, 8, head)
