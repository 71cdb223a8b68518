import itertools

import pytest
import torch

from domain_moe.recsys.metrics import GroupAUC, auc, gauc


def direct_auc(s, y):
    """Pairwise definition: P(score_pos > score_neg) + 0.5 P(tie)."""
    pos = [a for a, b in zip(s, y) if b == 1]
    neg = [a for a, b in zip(s, y) if b == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def direct_gauc(s, y, g):
    num = den = 0.0
    for user in sorted(set(g)):
        rows = [i for i, u in enumerate(g) if u == user]
        ys = [y[i] for i in rows]
        if 0 < sum(ys) < len(ys):
            num += len(rows) * direct_auc([s[i] for i in rows], ys)
            den += len(rows)
    return num / den


@pytest.mark.parametrize("seed", range(4))
def test_gauc_matches_direct_per_user_computation(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 300
    scores = torch.randint(0, 12, (n,), generator=gen).float() / 4  # many ties
    labels = (torch.rand(n, generator=gen) < 0.3).long()
    groups = torch.randint(100, 140, (n,), generator=gen)
    expected = direct_gauc(scores.tolist(), labels.tolist(), groups.tolist())
    assert float(gauc(scores, labels, groups)) == pytest.approx(expected, abs=1e-12)


def test_auc_matches_torchmetrics_and_direct():
    from torchmetrics.functional.classification import binary_auroc

    scores = torch.randn(500).round(decimals=1)
    labels = (torch.rand(500) < 0.2).long()
    assert float(auc(scores, labels)) == pytest.approx(direct_auc(scores.tolist(), labels.tolist()), abs=1e-12)
    assert float(auc(scores, labels)) == pytest.approx(float(binary_auroc(scores, labels)), abs=1e-6)


def test_single_class_users_are_skipped_and_all_single_gives_nan():
    s = torch.tensor([0.1, 0.9, 0.3, 0.4])
    y = torch.tensor([0, 1, 1, 1])
    g = torch.tensor([0, 0, 1, 1])
    assert float(gauc(s, y, g)) == 1.0
    assert torch.isnan(gauc(s, torch.ones(4), g))


def test_group_auc_metric_accumulates():
    metric = GroupAUC()
    s, y, g = torch.rand(200), (torch.rand(200) < 0.5).long(), torch.randint(0, 10, (200,))
    metric.update(s[:120], y[:120], g[:120])
    metric.update(s[120:], y[120:], g[120:])
    assert float(metric.compute()) == pytest.approx(float(gauc(s, y, g)), abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(s, y[:5], g)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="same shape"):
        gauc(torch.rand(3), torch.ones(3), torch.zeros(4))
