"""Metrics of the vision tasks, on torchmetrics: question accuracy per template, boxes, captions, retrieval.

Box mAP (:class:`DetectionScores`) uses ``torchmetrics.detection.MeanAveragePrecision``, whose COCO backend
(``pycocotools``, in the ``vision`` extra, or ``faster-coco-eval``) is imported only when such a metric is
built; :class:`BoxHitRate` (the share of ground-truth boxes matched by a same-class prediction at IoU >= 0.5)
needs no backend.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.text import BLEUScore

from domain_moe.utils.imports import module_available

__all__ = [
    "BoxHitRate",
    "CaptionScores",
    "DetectionScores",
    "QuestionAccuracy",
    "box_iou",
    "map_available",
    "retrieval_recall_at_k",
]


def map_available() -> bool:
    """Whether torchmetrics' box mAP can run (it needs ``pycocotools`` or ``faster-coco-eval``)."""
    return _map_backend() is not None


def _map_backend() -> str | None:
    """The COCO backend torchmetrics' mAP will use: ``pycocotools`` (its default) first, else ``faster_coco_eval``."""
    for name in ("pycocotools", "faster_coco_eval"):
        if module_available(name):
            return name
    return None


class QuestionAccuracy(Metric):
    """Answer accuracy per question template and their mean over templates.

    Args:
        num_contexts: templates.

    Shapes:
        - logits: ``[B, A]``; answer, context: ``[B]``

    Example:
        >>> m = QuestionAccuracy(2)
        >>> m.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), torch.tensor([0, 1]))
        >>> m.compute()["per_template"].tolist()
        [1.0, 0.0]
    """

    full_state_update = False

    def __init__(self, num_contexts: int) -> None:
        super().__init__()
        self.num_contexts = num_contexts
        self.add_state("correct", torch.zeros(num_contexts), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_contexts), dist_reduce_fx="sum")

    def update(self, logits: Tensor, answer: Tensor, context: Tensor) -> None:
        """Add a batch (``logits [B, A]``, ``answer [B]``, ``context [B]``)."""
        hit = (logits.argmax(-1) == answer).float()
        self.correct += torch.zeros_like(self.correct).scatter_add_(0, context, hit)
        self.total += torch.zeros_like(self.total).scatter_add_(0, context, torch.ones_like(hit))

    def compute(self) -> dict[str, Tensor]:
        """``{"mean": mean over templates seen, "per_template": [num_contexts]}`` (NaN for unseen templates)."""
        per = self.correct / self.total
        seen = self.total > 0
        mean = per[seen].mean() if bool(seen.any()) else per.new_tensor(float("nan"))
        return {"mean": mean, "per_template": per}


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of ``xyxy`` boxes ``a [n, 4]`` and ``b [m, 4]`` → ``[n, m]``."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-9)


class BoxHitRate(Metric):
    """Share of ground-truth boxes matched (greedily, by score) by a same-class prediction with IoU >= t.

    Each prediction matches at most one box. The IoU-threshold accuracy reported when no mAP backend is
    installed.

    Args:
        iou_threshold: IoU a match needs.

    Shapes:
        - boxes: ``[B, K, 4]``; scores, classes: ``[B, K]``; gt_boxes: ``[B, M, 4]``; gt_classes: ``[B, M]``

    Example:
        >>> m = BoxHitRate()
        >>> box = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
        >>> m.update(box, torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long), box, torch.zeros(1, 1))
        >>> m.compute().item()
        1.0
    """

    full_state_update = False

    def __init__(self, iou_threshold: float = 0.5) -> None:
        super().__init__()
        self.iou_threshold = iou_threshold
        self.add_state("hits", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, boxes: Tensor, scores: Tensor, classes: Tensor, gt_boxes: Tensor, gt_classes: Tensor) -> None:
        """Add a batch: predictions ``[B, K, 4]``/``[B, K]``/``[B, K]``, targets ``[B, M, 4]``/``[B, M]`` (-1 pad)."""
        for i in range(boxes.shape[0]):
            valid = gt_classes[i] >= 0
            gt_b, gt_c = gt_boxes[i][valid], gt_classes[i][valid]
            self.total += gt_c.numel()
            if gt_c.numel() == 0:
                continue
            order = scores[i].argsort(descending=True)
            iou = box_iou(boxes[i][order], gt_b)
            same = classes[i][order][:, None] == gt_c[None, :]
            taken = torch.zeros(gt_c.numel(), dtype=torch.bool)
            for p in range(iou.shape[0]):
                cand = (iou[p] >= self.iou_threshold) & same[p] & ~taken
                if bool(cand.any()):
                    j = int(torch.where(cand, iou[p], torch.full_like(iou[p], -1)).argmax())
                    taken[j] = True
            self.hits += taken.sum()

    def compute(self) -> Tensor:
        """Matched share of ground-truth boxes."""
        return self.hits / self.total.clamp_min(1)


class DetectionScores(Metric):
    """Box mAP@[.5:.95], mAP@0.5 (torchmetrics' ``MeanAveragePrecision``, COCO rules) and the box hit rate.

    Takes the padded tensors of :class:`BoxHitRate` (``-1`` classes are padding) and converts them to the
    per-image lists torchmetrics expects. Without a COCO backend the metric refuses to be built rather than
    reporting only the hit rate, so that a logged ``map`` always means the same thing.

    Args:
        iou_threshold: IoU a match needs for the hit rate (mAP uses COCO's thresholds).

    Shapes:
        - boxes: ``[B, K, 4]`` ``xyxy``; scores, classes: ``[B, K]``; gt_boxes: ``[B, M, 4]``; gt_classes: ``[B, M]``

    Raises:
        ModuleNotFoundError: neither ``pycocotools`` nor ``faster-coco-eval`` is installed; the message names
            ``pip install 'domain-moe[vision]'``.

    Example:
        >>> m = DetectionScores()
        >>> box = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
        >>> m.update(box, torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long), box, torch.zeros(1, 1))
        >>> {k: round(v.item(), 3) for k, v in m.compute().items()}
        {'map': 1.0, 'map_50': 1.0, 'hit_rate': 1.0}
    """

    full_state_update = False

    def __init__(self, iou_threshold: float = 0.5) -> None:
        super().__init__()
        backend = _map_backend()
        if backend is None:
            raise ModuleNotFoundError(
                "DetectionScores needs 'pycocotools' (or 'faster-coco-eval') for torchmetrics' box mAP. "
                "Install it with: pip install 'domain-moe[vision]'",
                name="pycocotools",
            )
        # Imported here so that importing the vision package never loads the detection stack.
        from torchmetrics.detection import MeanAveragePrecision

        self.mean_ap = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend=backend)
        self.hit_rate = BoxHitRate(iou_threshold)

    def update(self, boxes: Tensor, scores: Tensor, classes: Tensor, gt_boxes: Tensor, gt_classes: Tensor) -> None:
        """Add a batch: predictions ``[B, K, 4]``/``[B, K]``/``[B, K]``, targets ``[B, M, 4]``/``[B, M]`` (-1 pad)."""
        boxes, scores, classes = boxes.detach().float(), scores.detach().float(), classes.detach().long()
        gt_boxes, gt_classes = gt_boxes.detach().float(), gt_classes.detach().long()
        preds, targets = [], []
        for i in range(boxes.shape[0]):
            keep = classes[i] >= 0
            preds.append({"boxes": boxes[i][keep], "scores": scores[i][keep], "labels": classes[i][keep]})
            valid = gt_classes[i] >= 0
            targets.append({"boxes": gt_boxes[i][valid], "labels": gt_classes[i][valid]})
        self.mean_ap.update(preds, targets)
        self.hit_rate.update(boxes, scores, classes, gt_boxes, gt_classes)

    def compute(self) -> dict[str, Tensor]:
        """``{"map": mAP@[.5:.95], "map_50": mAP@0.5, "hit_rate"}`` (COCO gives ``-1`` when no box was seen)."""
        out = self.mean_ap.compute()
        return {"map": out["map"], "map_50": out["map_50"], "hit_rate": self.hit_rate.compute()}

    def reset(self) -> None:
        """Reset the mAP state and the hit counts."""
        super().reset()
        self.mean_ap.reset()
        self.hit_rate.reset()


class CaptionScores(Metric):
    """Caption token accuracy (over non-padding target tokens), exact-sequence accuracy and BLEU.

    Canvas captions hold at most ``max_items`` class tokens, so BLEU-4 is degenerate (no 4-grams); the default
    is BLEU-2 (smoothed).

    Args:
        pad: padding token id.
        eos: end token id (generation stops there).
        n_gram: BLEU order.

    Shapes:
        - generated, target: ``[B, T]``

    Example:
        >>> m = CaptionScores()
        >>> cap = torch.tensor([[1, 3, 4, 2]])
        >>> m.update(cap, cap)
        >>> m.compute()["exact"].item()
        1.0
    """

    full_state_update = False

    def __init__(self, pad: int = 0, eos: int = 2, n_gram: int = 2) -> None:
        super().__init__()
        self.pad = pad
        self.eos = eos
        self.add_state("token_hits", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("tokens", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("exact", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("sequences", torch.zeros(()), dist_reduce_fx="sum")
        self.bleu = BLEUScore(n_gram=n_gram, smooth=True)

    def _words(self, seq: Tensor) -> str:
        out = []
        for t in seq.tolist()[1:]:
            if t in (self.eos, self.pad):
                break
            out.append(f"c{t}")
        return " ".join(out)

    def update(self, generated: Tensor, target: Tensor) -> None:
        """Add greedy captions ``[B, T]`` against targets ``[B, T]`` (both starting with ``<bos>``)."""
        mask = target[:, 1:] != self.pad
        hit = (generated[:, 1:] == target[:, 1:]) & mask
        self.token_hits += hit.sum()
        self.tokens += mask.sum()
        self.exact += (hit | ~mask).all(-1).sum()
        self.sequences += target.shape[0]
        preds = [self._words(g) for g in generated]
        refs = [[self._words(t)] for t in target]
        self.bleu.update(preds, refs)

    def compute(self) -> dict[str, Tensor]:
        """``{"token_acc", "exact", "bleu"}``."""
        return {
            "token_acc": self.token_hits / self.tokens.clamp_min(1),
            "exact": self.exact / self.sequences.clamp_min(1),
            "bleu": self.bleu.compute(),
        }

    def reset(self) -> None:
        """Reset the counts and the BLEU state."""
        super().reset()
        self.bleu.reset()


def retrieval_recall_at_k(query: Tensor, keys: Tensor, positives: Tensor, k: int = 1) -> Tensor:
    """Recall@k of retrieving, for each query, a positive key (cosine similarity; torchmetrics' recall).

    Args:
        query: query embeddings ``[Q, D]``.
        keys: key embeddings ``[K, D]``.
        positives: bool ``[Q, K]``, True where the key is a correct answer (e.g. the same class multiset).
        k: cut-off.

    Returns:
        Share of queries with at least one positive among their top ``k`` keys (torchmetrics' hit rate,
        averaged over queries).
    """
    from torchmetrics.functional.retrieval import retrieval_hit_rate

    q = torch.nn.functional.normalize(query.float(), dim=-1)
    kk = torch.nn.functional.normalize(keys.float(), dim=-1)
    sims = q @ kk.T
    return torch.stack([retrieval_hit_rate(sims[i], positives[i], top_k=k) for i in range(sims.shape[0])]).mean()
