"""Feature prompts (GPF / GMoPE's per-expert prompts)."""

import pytest
import torch

from domain_moe.graph.models.prompt import FeaturePrompt


def test_forward_adds_the_indexed_prompt_to_every_row():
    prompt = FeaturePrompt(5, num_prompts=3)
    x = torch.randn(4, 5)
    torch.testing.assert_close(prompt(x, 2), x + prompt.weight[2].expand(4, 5))
    prompt(x, 0).sum().backward()
    assert prompt.weight.grad[0].eq(4.0).all() and prompt.weight.grad[1:].eq(0).all()


def test_mean_abs_cosine_by_hand():
    prompt = FeaturePrompt(4, num_prompts=3)
    with torch.no_grad():
        prompt.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [-3.0, 0, 0, 0]]))
    # pairs (0,1)=0, (0,2)=1, (1,2)=0, each counted twice: mean 2/6.
    torch.testing.assert_close(prompt.mean_abs_cosine(), torch.tensor(1.0 / 3.0))
    assert float(FeaturePrompt(4).mean_abs_cosine()) == 0.0


def test_reset_is_seeded():
    torch.manual_seed(0)
    a = FeaturePrompt(6, 2).weight.detach().clone()
    torch.manual_seed(0)
    torch.testing.assert_close(FeaturePrompt(6, 2).weight.detach(), a)


def test_bad_inputs():
    with pytest.raises(ValueError, match="in_channels"):
        FeaturePrompt(0)
    with pytest.raises(ValueError, match="num_prompts"):
        FeaturePrompt(3, num_prompts=0)
    prompt = FeaturePrompt(3, 2)
    with pytest.raises(ValueError, match=r"x must be \[N, 3\], got shape \(2, 4\)"):
        prompt(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="index"):
        prompt(torch.zeros(2, 3), 2)
