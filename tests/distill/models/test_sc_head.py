import pytest
import torch

from domain_moe.distill.models.sc_head import HEADS, SCHead, head_weight_count

VERTICALS = [[0, 2, 4, 6], [5, 7, 9], [1, 3, 8]]


@pytest.mark.parametrize("head", HEADS)
def test_weight_count_matches_the_paper_formula(head):
    sb, s1, s2, m, n = 24, 16, 8, 3, 10
    module = SCHead(sb, VERTICALS, head=head, shared_width=s1, block_width=s2)
    formula = {
        "linear": sb * n,
        "fc": sb * s1 + s1 * s2 + s2 * n,
        "fc_sc": sb * s1 + s1 * s2 * m + s2 * n,
        "sc_sc": sb * s1 * m + s1 * s2 * m + s2 * n,
    }[head]
    assert module.weight_count() == formula == head_weight_count(head, sb, s1, s2, m, n)
    biases = {"linear": n, "fc": s1 + s2 + n, "fc_sc": s1 + s2 * m + n, "sc_sc": (s1 + s2) * m + n}[head]
    assert sum(p.numel() for p in module.parameters()) == formula + biases


def test_sc_layers_add_the_stated_parameters_over_fc():
    sb, s1, s2, m = 24, 16, 8, 3
    fc = SCHead(sb, VERTICALS, head="fc", shared_width=s1, block_width=s2)
    sc = SCHead(sb, VERTICALS, head="fc_sc", shared_width=s1, block_width=s2)
    extra = sum(p.numel() for p in sc.parameters()) - sum(p.numel() for p in fc.parameters())
    # (M - 1) more private hidden layers of width s2 (weights and biases); the classifier stays s2 * N.
    assert extra == (m - 1) * (s1 * s2 + s2)


def test_classes_connect_only_to_their_vertical_block():
    torch.manual_seed(0)
    head = SCHead(6, VERTICALS, head="fc_sc", shared_width=5, block_width=4)
    x = torch.randn(3, 6)
    # Zeroing vertical 1's private block changes only vertical 1's logits.
    before = head(x)
    with torch.no_grad():
        for p in head.blocks.experts[1].parameters():
            p.zero_()
    after = head(x)
    changed = (before - after).abs().amax(0) > 0
    assert changed.tolist() == [c in VERTICALS[1] for c in range(10)]


def test_sc_output_equals_per_vertical_oracle():
    torch.manual_seed(1)
    head = SCHead(6, VERTICALS, head="sc_sc", shared_width=5, block_width=4)
    x = torch.randn(4, 6)
    oracle = torch.zeros(4, 10)
    for v, classes in enumerate(VERTICALS):
        oracle[:, classes] = head.blocks.experts[v].layers(x)
    torch.testing.assert_close(head(x), oracle)


def test_bad_inputs():
    with pytest.raises(ValueError, match="head must be one of"):
        SCHead(8, VERTICALS, head="moe")
    with pytest.raises(ValueError, match="block_width must be a positive int"):
        SCHead(8, VERTICALS, block_width=0)
    with pytest.raises(ValueError, match="overlap"):
        SCHead(8, [[0, 1], [1]])
    with pytest.raises(ValueError, match=r"x must have shape \[B, in_features=8\]"):
        SCHead(8, VERTICALS)(torch.randn(2, 7))
