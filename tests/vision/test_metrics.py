import torch

from domain_moe.vision.metrics import BoxHitRate, CaptionScores, QuestionAccuracy, box_iou, retrieval_recall_at_k


def test_question_accuracy_per_template():
    m = QuestionAccuracy(3)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    m.update(logits, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1]))
    out = m.compute()
    assert out["per_template"][:2].tolist() == [0.5, 0.5] and torch.isnan(out["per_template"][2])
    assert out["mean"] == 0.5


def test_box_iou_and_hit_rate_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[50 / 150, 1.0]]))
    m = BoxHitRate(0.5)
    preds = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]])
    gt = torch.tensor([[[1.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 0.0, 0.0]]])
    # first matches (same class), second has the wrong class, third is padding
    m.update(preds, torch.tensor([[0.9, 0.8]]), torch.tensor([[1, 2]]), gt, torch.tensor([[1, 3, -1]]))
    assert m.compute() == 0.5


def test_caption_scores_by_hand():
    m = CaptionScores()
    target = torch.tensor([[1, 3, 4, 2, 0], [1, 5, 6, 2, 0]])
    generated = torch.tensor([[1, 3, 5, 2, 2], [1, 5, 6, 2, 7]])
    m.update(generated, target)
    out = m.compute()
    # non-pad targets: 3,4,2 | 5,6,2 -> hits 3,2 | 5,6,2 -> 5/6; the second caption is exact
    torch.testing.assert_close(out["token_acc"], torch.tensor(5 / 6))
    assert out["exact"] == 0.5
    assert 0 < out["bleu"] < 1
    m.reset()
    m.update(target, target)
    torch.testing.assert_close(m.compute()["bleu"], torch.tensor(1.0))


def test_retrieval_recall():
    q = torch.eye(3)
    keys = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pos = torch.eye(3, dtype=torch.bool)
    assert retrieval_recall_at_k(q, keys, pos, k=1) == 1 / 3
    assert retrieval_recall_at_k(q, keys, pos, k=3) == 1.0
