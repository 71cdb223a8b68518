import pytest
import torch

import domain_moe.vision.metrics as metrics_module
from domain_moe.vision.metrics import (
    BoxHitRate,
    CaptionScores,
    DetectionScores,
    QuestionAccuracy,
    box_iou,
    map_available,
    retrieval_recall_at_k,
)

needs_map = pytest.mark.skipif(not map_available(), reason="no COCO backend (pycocotools / faster-coco-eval)")


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


@needs_map
def test_detection_scores_perfect_then_shifted_boxes():
    gt = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0], [0.0, 0.0, 0.0, 0.0]]])
    gt_classes = torch.tensor([[1, 2, -1]])
    scores = torch.tensor([[0.9, 0.8, 0.1]])
    classes = torch.tensor([[1, 2, 0]])
    # the third prediction sits where no box is: a low-scored false positive ranks last and costs nothing
    far = torch.tensor([[[50.0, 50.0, 60.0, 60.0]]])
    m = DetectionScores()
    m.update(torch.cat([gt[:, :2], far], 1), scores, classes, gt, gt_classes)
    out = m.compute()
    assert {k: float(v) for k, v in out.items()} == {"map": 1.0, "map_50": 1.0, "hit_rate": 1.0}
    # shifting the first box by 1 px: IoU 81/119 = 0.68 passes 0.5 but not the stricter COCO thresholds
    m.reset()
    shifted = torch.cat([gt[:, :2], far], 1).clone()
    shifted[0, 0] += 1
    m.update(shifted, scores, classes, gt, gt_classes)
    out = m.compute()
    assert float(out["map_50"]) == 1.0 and 0.5 < float(out["map"]) < 1.0
    # by 4 px: IoU 36/164 misses even at 0.5
    m.reset()
    shifted[0, 0] += 3
    m.update(shifted, scores, classes, gt, gt_classes)
    worse = m.compute()
    assert float(worse["map_50"]) < 1.0 and float(worse["map"]) < float(out["map"])
    assert float(worse["hit_rate"]) == 0.5


@needs_map
def test_detection_scores_hit_rate_agrees_with_box_hit_rate():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(4, 5, 2, generator=gen) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(4, 5, 2, generator=gen) * 15], -1)
    gt = boxes[:, :3] + torch.randn(4, 3, 4, generator=gen) * 2
    gt_classes = torch.tensor([[0, 1, -1], [2, 2, 2], [1, -1, -1], [0, 3, 1]])
    scores, classes = torch.rand(4, 5, generator=gen), torch.randint(4, (4, 5), generator=gen)
    classes[:, :3] = gt_classes.clamp_min(0)
    ours, reference = DetectionScores(), BoxHitRate(0.5)
    ours.update(boxes, scores, classes, gt, gt_classes)
    reference.update(boxes, scores, classes, gt, gt_classes)
    assert 0 < float(reference.compute()) < 1
    assert float(ours.compute()["hit_rate"]) == float(reference.compute())


def test_detection_scores_without_backend_names_the_extra(monkeypatch):
    monkeypatch.setattr(metrics_module, "module_available", lambda name: False)
    assert not map_available()
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'domain-moe\[vision\]'"):
        DetectionScores()


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
