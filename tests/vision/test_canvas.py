import torch

from domain_moe.vision.canvas import BOS, EOS, TEMPLATES, AnswerSpace, make_canvases
from domain_moe.vision.data import synthetic_items


def test_deterministic_given_seed():
    items, labels = synthetic_items(50, seed=3)
    a = make_canvases(items, labels, 10, seed=5)
    b = make_canvases(items, labels, 10, seed=5)
    c = make_canvases(items, labels, 10, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.as_dict().values(), b.as_dict().values(), strict=True))
    assert not torch.equal(a.image, c.image)


def test_boxes_masks_and_semantic_are_consistent(canvases):
    for i in range(len(canvases)):
        n = int(canvases.num_items[i])
        assert 1 <= n <= 3
        assert (canvases.box_class[i, n:] == -1).all() and (canvases.box_class[i, :n] >= 0).all()
        for k in range(n):
            ys, xs = torch.nonzero(canvases.instance[i] == k + 1, as_tuple=True)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert canvases.boxes[i, k].tolist() == [float(v) for v in box]
            sem = canvases.semantic[i][canvases.instance[i] == k + 1]
            assert (sem == canvases.box_class[i, k] + 1).all()
        assert ((canvases.semantic[i] == 0) == (canvases.instance[i] == 0)).all()
        # Visible item pixels are foreground; the background is black.
        assert (canvases.image[i, 0][canvases.instance[i] == 0] == 0).all()


def test_caption_is_left_to_right(canvases):
    for i in range(len(canvases)):
        n = int(canvases.num_items[i])
        cap = canvases.caption[i]
        assert cap[0] == BOS and cap[n + 1] == EOS and (cap[n + 2 :] == 0).all()
        centres = (canvases.boxes[i, :n, 0] + canvases.boxes[i, :n, 2]) / 2
        order = sorted(range(n), key=lambda k: (float(centres[k]), float(canvases.boxes[i, k, 1])))
        assert [int(t) - 3 for t in cap[1 : n + 1]] == [int(canvases.box_class[i, k]) for k in order]


def test_answers_are_valid_and_correct(canvases):
    space = AnswerSpace(10, 3)
    mask = space.mask()
    assert mask[canvases.context, canvases.answer].all()
    for i in range(len(canvases)):
        t = TEMPLATES[int(canvases.context[i])]
        n = int(canvases.num_items[i])
        classes = canvases.box_class[i, :n].tolist()
        arg = int(canvases.argument[i])
        if t == "count":
            assert int(canvases.answer[i]) == space.count(n)
        elif t == "exists":
            assert int(canvases.answer[i]) == (space.yes if arg in classes else space.no)
        elif t == "count_class":
            assert int(canvases.answer[i]) == space.count(classes.count(arg))
        elif t == "leftmost":
            centres = (canvases.boxes[i, :n, 0] + canvases.boxes[i, :n, 2]) / 2
            assert int(canvases.answer[i]) == classes[int(centres.argmin())]
        else:
            assert arg == -1 or arg in classes
    assert set(canvases.context.tolist()) == set(range(len(TEMPLATES)))


def test_presence_matches_classes(canvases):
    for i in range(len(canvases)):
        n = int(canvases.num_items[i])
        assert set(torch.nonzero(canvases.presence[i]).flatten().tolist()) == set(canvases.box_class[i, :n].tolist())


def test_bad_inputs():
    import pytest

    items, labels = synthetic_items(5)
    with pytest.raises(ValueError, match="images must be"):
        make_canvases(items, labels[:3], 2)
    with pytest.raises(ValueError, match="canvas_size"):
        make_canvases(items, labels, 2, canvas_size=20)
    with pytest.raises(ValueError, match="scale_range"):
        make_canvases(items, labels, 2, scale_range=(0.9, 0.5))
