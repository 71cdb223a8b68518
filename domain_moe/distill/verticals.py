"""Verticals: the partition of the label space into groups of classes, one specialist teacher each."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "FASHION_MNIST_VERTICALS",
    "FASHION_MNIST_VERTICAL_NAMES",
    "check_verticals",
    "class_to_vertical",
    "pair_verticals",
]

#: Fashion-MNIST grouped into tops {T-shirt/top, Pullover, Coat, Shirt}, footwear {Sandal, Sneaker, Ankle boot}
#: and other {Trouser, Dress, Bag}; the confusable classes share one vertical, so one specialist owns them.
FASHION_MNIST_VERTICALS: tuple[tuple[int, ...], ...] = ((0, 2, 4, 6), (5, 7, 9), (1, 3, 8))
FASHION_MNIST_VERTICAL_NAMES: tuple[str, ...] = ("tops", "footwear", "other")


def check_verticals(verticals: Sequence[Sequence[int]], num_classes: int | None = None) -> list[list[int]]:
    """Validate a partition of ``range(num_classes)`` into verticals and return it as lists of ints.

    Every class must belong to exactly one vertical (Gao et al., arXiv 1711.07607, §3: the teacher of a
    sample is the specialist of its label's vertical, so an overlap or a gap leaves it undefined).

    Args:
        verticals: the classes of each vertical.
        num_classes: ``N``; ``None`` infers it as ``1 + max class``.

    Returns:
        The verticals as ``list[list[int]]`` (order kept).

    Raises:
        TypeError: not a sequence of sequences of ints.
        ValueError: an empty vertical, a class outside ``[0, N)``, a class in two verticals, or a missing class.

    Example:
        >>> check_verticals([[0, 2], [1]])
        [[0, 2], [1]]
    """
    if isinstance(verticals, (str, bytes)) or not isinstance(verticals, Sequence):
        raise TypeError(f"verticals must be a sequence of class lists, got {type(verticals).__name__}")
    if len(verticals) == 0:
        raise ValueError("verticals must hold at least one vertical, got an empty sequence")
    out: list[list[int]] = []
    for v, classes in enumerate(verticals):
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
            raise TypeError(f"verticals[{v}] must be a sequence of class ids, got {type(classes).__name__}")
        if len(classes) == 0:
            raise ValueError(f"verticals[{v}] is empty; every vertical needs at least one class")
        for c in classes:
            if isinstance(c, bool) or not isinstance(c, int):
                raise TypeError(f"verticals[{v}] must hold ints, got {c!r} ({type(c).__name__})")
        out.append([int(c) for c in classes])
    flat = [c for classes in out for c in classes]
    n = 1 + max(flat) if num_classes is None else num_classes
    bad = sorted({c for c in flat if c < 0 or c >= n})
    if bad:
        raise ValueError(f"verticals must hold classes in [0, {n}), got {bad}")
    seen: dict[int, int] = {}
    for v, classes in enumerate(out):
        for c in classes:
            if c in seen:
                raise ValueError(f"verticals overlap: class {c} is in verticals[{seen[c]}] and verticals[{v}]")
            seen[c] = v
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        raise ValueError(f"verticals must cover every class in [0, {n}); missing classes {missing}")
    return out


def class_to_vertical(verticals: Sequence[Sequence[int]], num_classes: int | None = None) -> Tensor:
    """The vertical of every class, after :func:`check_verticals`.

    Shapes:
        - output: ``[N]`` (int64)

    Example:
        >>> class_to_vertical([[0, 2], [1]]).tolist()
        [0, 1, 0]
    """
    checked = check_verticals(verticals, num_classes)
    out = torch.empty(sum(len(v) for v in checked), dtype=torch.long)
    for v, classes in enumerate(checked):
        out[classes] = v
    return out


def pair_verticals(
    verticals: Sequence[Sequence[int]], num_base: int = 10, by: str = "left"
) -> tuple[list[list[int]], list[str]]:
    """Verticals of the pair label space ``left * num_base + right`` (``num_base**2`` classes).

    Args:
        verticals: the verticals of the single-item classes.
        num_base: classes of one item.
        by: ``"left"`` (a pair's vertical is its left item's: ``M`` verticals) or ``"pair"`` (the verticals of
            both items: ``M**2`` verticals).

    Returns:
        ``(verticals, names)``; names are ``"v<u>"`` or ``"v<u>-v<w>"``.

    Example:
        >>> vs, names = pair_verticals([[0], [1]], num_base=2, by="pair")
        >>> vs, names
        ([[0], [1], [2], [3]], ['v0-v0', 'v0-v1', 'v1-v0', 'v1-v1'])
    """
    base = check_verticals(verticals, num_base)
    if by == "left":
        groups = [sorted(a * num_base + b for a in left for b in range(num_base)) for left in base]
        return groups, [f"v{u}" for u in range(len(base))]
    if by == "pair":
        groups, names = [], []
        for u, left in enumerate(base):
            for w, right in enumerate(base):
                groups.append(sorted(a * num_base + b for a in left for b in right))
                names.append(f"v{u}-v{w}")
        return groups, names
    raise ValueError(f"by must be 'left' or 'pair', got {by!r}")
