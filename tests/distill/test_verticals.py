import pytest

from domain_moe.distill.verticals import FASHION_MNIST_VERTICALS, check_verticals, class_to_vertical, pair_verticals


def test_fashion_verticals_partition_ten_classes():
    assert class_to_vertical(FASHION_MNIST_VERTICALS).tolist() == [0, 2, 0, 2, 0, 1, 0, 1, 2, 1]


@pytest.mark.parametrize(
    ("verticals", "num_classes", "err", "match"),
    [
        ([[0, 1], [1, 2]], None, ValueError, r"overlap: class 1 is in verticals\[0\] and verticals\[1\]"),
        ([[0, 2]], None, ValueError, r"missing classes \[1\]"),
        ([[0, 1]], 3, ValueError, r"missing classes \[2\]"),
        ([[0, 5]], 3, ValueError, r"classes in \[0, 3\), got \[5\]"),
        ([[0], []], None, ValueError, r"verticals\[1\] is empty"),
        ([], None, ValueError, "at least one vertical"),
        ("012", None, TypeError, "sequence of class lists"),
        ([[0, 1.0]], None, TypeError, "must hold ints"),
    ],
)
def test_bad_verticals(verticals, num_classes, err, match):
    with pytest.raises(err, match=match):
        check_verticals(verticals, num_classes)


def test_pair_verticals_by_left_item_and_by_pair():
    base = [[0, 2], [1]]
    groups, names = pair_verticals(base, num_base=3, by="left")
    assert groups == [[0, 1, 2, 6, 7, 8], [3, 4, 5]] and names == ["v0", "v1"]
    groups, names = pair_verticals(FASHION_MNIST_VERTICALS, by="pair")
    assert len(groups) == 9 and sorted(c for g in groups for c in g) == list(range(100))
    assert [len(g) for g in pair_verticals(FASHION_MNIST_VERTICALS)[0]] == [40, 30, 30]
    with pytest.raises(ValueError, match="by must be"):
        pair_verticals(base, 3, by="right")
