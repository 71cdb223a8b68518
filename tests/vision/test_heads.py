import pytest
import torch

from domain_moe.vision.canvas import AnswerSpace
from domain_moe.vision.heads import (
    CaptionDecoder,
    ContextEmbedding,
    DetectionHead,
    QuestionHead,
    SegmentationHead,
    decode_detections,
)


def test_context_id_out_of_range_is_a_clear_error():
    emb = ContextEmbedding(6, 10, 8)
    with pytest.raises(ValueError, match=r"context ids must lie in \[0, num_contexts=6\), got min 0, max 6"):
        emb(torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="argument ids"):
        emb(torch.tensor([0, 1]), torch.tensor([10, -1]))
    with pytest.raises(TypeError, match="context must be an int tensor"):
        emb(torch.tensor([0.0]))


def test_question_head_masks_invalid_answers():
    mask = AnswerSpace(10, 3).mask()
    head = QuestionHead(16, 6, 10, mask, d_context=8, num_heads=2)
    logits = head(torch.randn(4, 9, 16), torch.tensor([0, 1, 3, 5]), torch.tensor([2, -1, -1, 4]))
    assert ((logits > -1e3) == mask[[0, 1, 3, 5]]).all()
    default = QuestionHead(16, 6, 10, None, num_heads=2, max_items=3)
    assert torch.equal(default.answer_mask, mask)
    with pytest.raises(ValueError, match="tokens must be"):
        head(torch.randn(4, 9, 8), torch.tensor([0, 1, 3, 5]))


def test_decode_detections_by_hand():
    heat = torch.full((1, 3, 4, 4), -10.0)
    heat[0, 2, 1, 3] = 5.0  # class 2 at cell (y=1, x=3)
    heat[0, 0, 3, 0] = 4.0
    size = torch.zeros(1, 2, 4, 4)
    size[0, :, 1, 3] = torch.tensor([0.25, 0.5])  # 16 x 32 px on a 64 px image
    offset = torch.full((1, 2, 4, 4), 0.5)
    boxes, scores, classes = decode_detections(heat, size, offset, image_size=64, max_detections=2)
    assert classes[0].tolist() == [2, 0]
    # centre = (3 + 0.5) * 16 = 56, (1 + 0.5) * 16 = 24
    torch.testing.assert_close(boxes[0, 0], torch.tensor([48.0, 8.0, 64.0, 40.0]))
    assert scores[0, 0] > scores[0, 1]


def test_head_shapes():
    assert SegmentationHead(8, 11, 64)(torch.randn(2, 8, 16, 16)).shape == (2, 11, 64, 64)
    heat, size, off = DetectionHead(8, 10)(torch.randn(2, 8, 8, 8))
    assert heat.shape == (2, 10, 8, 8) and size.min() >= 0 and off.max() <= 1
    dec = CaptionDecoder(8, 13, 16)
    cap = torch.tensor([[1, 3, 4, 2, 0]] * 2)
    assert dec(torch.randn(2, 8, 4, 4), cap).shape == (2, 4, 13)
    gen = dec.generate(torch.randn(2, 8, 4, 4), 5)
    assert gen.shape == (2, 5) and (gen[:, 0] == 1).all()
