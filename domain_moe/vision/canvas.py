"""Multi-object canvases built from real item images, with boxes, masks, captions and context questions.

Several items (Fashion-MNIST garments, or any grey item images) are pasted on a larger black canvas. Every
canvas comes with what the heterogeneous experts of MoVA (Zong et al., NeurIPS 2024) and Astrea (Yang et al.,
arXiv 2503.09445) are trained on: item classes, tight boxes of the visible parts, an instance-id map and a
semantic mask, a left-to-right caption of class tokens, and one context question whose template decides which
expert should help ("is there a <c>?", "how many items?", "what is at the left?", ...). Generation is
deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "TEMPLATES",
    "AnswerSpace",
    "Canvases",
    "caption_vocab_size",
    "make_canvases",
]

#: Question templates, in context-id order.
TEMPLATES = ("exists", "count", "count_class", "leftmost", "largest", "where")
#: Templates that take a class argument.
_WITH_ARGUMENT = frozenset({"exists", "count_class", "where"})
#: Caption tokens: pad, begin, end, then class ``c`` is token ``3 + c``.
PAD, BOS, EOS = 0, 1, 2
#: Pixel intensity (in [0, 1]) from which a pixel belongs to an item.
FOREGROUND = 0.05


def caption_vocab_size(num_classes: int) -> int:
    """Caption vocabulary size: three special tokens plus one per class."""
    return 3 + num_classes


@dataclass(frozen=True)
class AnswerSpace:
    """The one answer vocabulary of every template: classes, yes/no, counts ``0..max_items``, thirds.

    Args:
        num_classes: item classes.
        max_items: most items per canvas.
    """

    num_classes: int
    max_items: int

    @property
    def yes(self) -> int:
        """Answer id of "yes"."""
        return self.num_classes

    @property
    def no(self) -> int:
        """Answer id of "no"."""
        return self.num_classes + 1

    def count(self, n: int) -> int:
        """Answer id of the count ``n``."""
        return self.num_classes + 2 + n

    def third(self, i: int) -> int:
        """Answer id of left (0), centre (1) or right (2)."""
        return self.num_classes + 3 + self.max_items + i

    @property
    def size(self) -> int:
        """Number of answers."""
        return self.num_classes + 6 + self.max_items

    def mask(self) -> Tensor:
        """Valid answers per template.

        Shapes:
            - output: ``[len(TEMPLATES), size]`` (bool)
        """
        m = torch.zeros(len(TEMPLATES), self.size, dtype=torch.bool)
        classes = slice(0, self.num_classes)
        m[TEMPLATES.index("exists"), [self.yes, self.no]] = True
        m[TEMPLATES.index("count"), [self.count(n) for n in range(1, self.max_items + 1)]] = True
        m[TEMPLATES.index("count_class"), [self.count(n) for n in range(self.max_items + 1)]] = True
        m[TEMPLATES.index("leftmost"), classes] = True
        m[TEMPLATES.index("largest"), classes] = True
        m[TEMPLATES.index("where"), [self.third(i) for i in range(3)]] = True
        return m


@dataclass
class Canvases:
    """A split of generated canvases (all tensors share the leading ``N``).

    Attributes:
        image: canvases in ``[0, 1]``.
        instance: instance-id map, 0 background, ``i + 1`` the visible part of item ``i``.
        semantic: semantic mask, 0 background, ``1 + class``.
        boxes: tight ``(x1, y1, x2, y2)`` boxes of the visible parts (pixel edges, ``x2``/``y2`` exclusive).
        box_class: class per item, ``-1`` for padding.
        num_items: items per canvas.
        caption: ``<bos>`` class tokens left to right ``<eos>``, padded with ``<pad>``.
        context: template id of the question.
        argument: class argument of the question, ``-1`` when the template takes none.
        answer: answer id in the :class:`AnswerSpace`.
        presence: multi-hot classes present.

    Shapes:
        - image: ``[N, 1, S, S]``; instance, semantic: ``[N, S, S]``
        - boxes: ``[N, M, 4]``; box_class: ``[N, M]``; caption: ``[N, M + 2]``; presence: ``[N, C]``
        - num_items, context, argument, answer: ``[N]``
    """

    image: Tensor
    instance: Tensor
    semantic: Tensor
    boxes: Tensor
    box_class: Tensor
    num_items: Tensor
    caption: Tensor
    context: Tensor
    argument: Tensor
    answer: Tensor
    presence: Tensor

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def as_dict(self) -> dict[str, Tensor]:
        """The fields as a dict of tensors (the batch format of the vision tasks)."""
        return dict(self.__dict__)


def _place(
    rng: np.random.Generator, occupied: np.ndarray, fg: np.ndarray, size: int, max_overlap: float
) -> tuple[int, int] | None:
    h, w = fg.shape
    area = max(int(fg.sum()), 1)
    for _ in range(50):
        y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        region = occupied[y : y + h, x : x + w]
        overlap = int((region & fg).sum())
        if overlap <= max_overlap * area:
            return y, x
    return None


def _question(
    rng: np.random.Generator,
    classes: list[int],
    boxes: np.ndarray,
    areas: np.ndarray,
    size: int,
    answers: AnswerSpace,
) -> tuple[int, int, int]:
    """One uniquely answerable question ``(template, argument, answer)`` about a canvas."""
    n = len(classes)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    present = sorted(set(classes))
    absent = [c for c in range(answers.num_classes) if c not in present]
    options = ["exists", "count", "count_class"]
    if n == 1 or np.sort(cx)[1] - np.sort(cx)[0] > 2.0:
        options.append("leftmost")
    if n == 1 or np.sort(areas)[-2] < 0.9 * np.sort(areas)[-1]:
        options.append("largest")
    once = [c for c in present if classes.count(c) == 1]
    if once:
        options.append("where")
    template = options[int(rng.integers(len(options)))]
    if template in ("exists", "count_class"):
        pick_present = not absent or rng.random() < 0.5
        arg = int(rng.choice(present)) if pick_present else int(rng.choice(absent))
        if template == "exists":
            return TEMPLATES.index(template), arg, answers.yes if arg in present else answers.no
        return TEMPLATES.index(template), arg, answers.count(classes.count(arg))
    if template == "count":
        return TEMPLATES.index(template), -1, answers.count(n)
    if template == "leftmost":
        return TEMPLATES.index(template), -1, classes[int(np.argmin(cx))]
    if template == "largest":
        return TEMPLATES.index(template), -1, classes[int(np.argmax(areas))]
    arg = int(rng.choice(once))
    third = min(int(cx[classes.index(arg)] * 3 // size), 2)
    return TEMPLATES.index(template), arg, answers.third(third)


def make_canvases(
    images: Tensor,
    labels: Tensor,
    num_canvases: int,
    *,
    canvas_size: int = 64,
    max_items: int = 3,
    scale_range: tuple[float, float] = (0.7, 1.0),
    max_overlap: float = 0.1,
    num_classes: int | None = None,
    seed: int = 0,
) -> Canvases:
    """Paste ``1..max_items`` random items per canvas and derive boxes, masks, caption and a question.

    Each item is rescaled by ``s ~ U(scale_range)`` (bilinear) and placed by rejection sampling (50 tries,
    else dropped) so that its foreground overlaps the foreground already there by at most ``max_overlap`` of
    its area; later items are pasted on top. Boxes and instance masks describe the *visible* parts.

    Args:
        images: item images (uint8 ``0..255`` or float ``0..1``).
        labels: item classes.
        num_canvases: ``N``.
        canvas_size: ``S`` (at least the largest scaled item).
        max_items: ``M``.
        scale_range: item scale range ``(lo, hi)``, ``0 < lo <= hi``.
        max_overlap: largest foreground overlap as a fraction of an item's area.
        num_classes: classes ``C`` (default ``labels.max() + 1``).
        seed: generator seed; equal seeds give equal canvases.

    Returns:
        The :class:`Canvases`.

    Shapes:
        - images: ``[P, H, W]``; labels: ``[P]``

    Raises:
        ValueError: mismatched or empty inputs, a canvas smaller than an item, a bad scale range.

    Example:
        >>> import torch
        >>> items = torch.zeros(4, 28, 28, dtype=torch.uint8)
        >>> items[:, 8:20, 8:20] = 255
        >>> c = make_canvases(items, torch.tensor([0, 1, 2, 3]), 2, canvas_size=64, seed=0)
        >>> c.image.shape, c.caption.shape
        (torch.Size([2, 1, 64, 64]), torch.Size([2, 5]))
    """
    if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(
            f"images must be [P, H, W] and labels [P] with P > 0, got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range!r}")
    item_size = max(images.shape[1:])
    if canvas_size < round(item_size * hi):
        raise ValueError(f"canvas_size must be >= the largest scaled item ({round(item_size * hi)}), got {canvas_size}")
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    answers = AnswerSpace(num_classes, max_items)
    pixels = images.float() / 255.0 if not images.is_floating_point() else images.float()
    rng = np.random.default_rng(seed)
    s = canvas_size
    out_image = np.zeros((num_canvases, s, s), np.float32)
    out_inst = np.zeros((num_canvases, s, s), np.int64)
    out_boxes = np.zeros((num_canvases, max_items, 4), np.float32)
    out_cls = np.full((num_canvases, max_items), -1, np.int64)
    out_n = np.zeros(num_canvases, np.int64)
    out_cap = np.zeros((num_canvases, max_items + 2), np.int64)
    out_q = np.zeros((num_canvases, 3), np.int64)
    for i in range(num_canvases):
        n = int(rng.integers(1, max_items + 1))
        picks = rng.integers(0, pixels.shape[0], size=n)
        canvas, inst = out_image[i], out_inst[i]
        occupied = np.zeros((s, s), bool)
        id_to_class: dict[int, int] = {}
        for j, p in enumerate(picks):
            side = max(4, round(item_size * float(rng.uniform(lo, hi))))
            item = F.interpolate(pixels[p][None, None], size=(side, side), mode="bilinear", align_corners=False)
            item_np = item[0, 0].clamp(0, 1).numpy()
            fg = item_np >= FOREGROUND
            spot = _place(rng, occupied, fg, s, max_overlap)
            if spot is None:
                continue
            y, x = spot
            region = (slice(y, y + side), slice(x, x + side))
            canvas[region][fg] = item_np[fg]
            inst[region][fg] = j + 1
            occupied[region] |= fg
            id_to_class[j + 1] = int(labels[p])
        # Items fully hidden by later ones disappear; the visible ones are renumbered 1..n in paste order.
        visible = [k for k in sorted(id_to_class) if (inst == k).any()]
        visible_classes, boxes, areas = [], [], []
        new_inst = np.zeros_like(inst)
        for kept, k in enumerate(visible):
            mask = inst == k
            ys, xs = np.nonzero(mask)
            new_inst[mask] = kept + 1
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            areas.append(mask.sum())
            visible_classes.append(id_to_class[k])
        kept = len(visible)
        out_inst[i] = new_inst
        n = kept
        box_arr = np.asarray(boxes, np.float32)
        out_boxes[i, :n] = box_arr
        out_cls[i, :n] = visible_classes
        out_n[i] = n
        cx, cy = (box_arr[:, 0] + box_arr[:, 2]) / 2, (box_arr[:, 1] + box_arr[:, 3]) / 2
        order = np.lexsort((cy, cx))
        out_cap[i, 0] = BOS
        out_cap[i, 1 : n + 1] = [3 + visible_classes[k] for k in order]
        out_cap[i, n + 1] = EOS
        out_q[i] = _question(rng, visible_classes, box_arr, np.asarray(areas, np.float64), s, answers)
    image = torch.from_numpy(out_image).unsqueeze(1)
    instance = torch.from_numpy(out_inst)
    box_class = torch.from_numpy(out_cls)
    semantic = torch.zeros_like(instance)
    for k in range(max_items):
        cls = box_class[:, k].view(-1, 1, 1)
        semantic = torch.where((instance == k + 1) & (cls >= 0), cls + 1, semantic)
    # scatter_add: padding slots (-1 -> column 0, value 0) must not overwrite a real class 0.
    presence = torch.zeros(num_canvases, num_classes)
    presence.scatter_add_(1, box_class.clamp_min(0), (box_class >= 0).float())
    presence = presence.clamp_max(1.0)
    q = torch.from_numpy(out_q)
    return Canvases(
        image=image,
        instance=instance,
        semantic=semantic,
        boxes=torch.from_numpy(out_boxes),
        box_class=box_class,
        num_items=torch.from_numpy(out_n),
        caption=torch.from_numpy(out_cap),
        context=q[:, 0].contiguous(),
        argument=q[:, 1].contiguous(),
        answer=q[:, 2].contiguous(),
        presence=presence,
    )
