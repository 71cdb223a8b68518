"""Task heads on feature maps or tokens: classification, segmentation, detection, captioning, questions.

Each expert of the MoVA (Zong et al., NeurIPS 2024) and Astrea (Yang et al., arXiv 2503.09445) pools is
trained for its own task with one of these heads; the question head, conditioned on the context, is shared by
the probes, the single-expert baselines and the fused models so that their comparison is fair.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CaptionDecoder",
    "ClassificationHead",
    "ContextEmbedding",
    "DetectionHead",
    "QuestionHead",
    "SegmentationHead",
    "decode_detections",
]


class ClassificationHead(nn.Module):
    """Global average pool and a linear layer (single- or multi-label classification).

    Args:
        in_channels: map width ``C``.
        num_classes: outputs.

    Shapes:
        - x: ``[B, C, H, W]``
        - output: ``[B, num_classes]``

    Example:
        >>> ClassificationHead(8, 3)(torch.zeros(2, 8, 4, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def reset_parameters(self) -> None:
        """Reset the linear layer."""
        self.fc.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Class logits."""
        return self.fc(x.mean((-2, -1)))


class SegmentationHead(nn.Module):
    """Per-pixel classes: a 3x3 conv, a 1x1 conv, bilinear upsampling to the image size.

    Args:
        in_channels: map width ``C``.
        num_classes: semantic classes (background included).
        out_size: output side (the canvas side ``S``).
        d_hidden: hidden width.

    Shapes:
        - x: ``[B, C, h, w]``
        - output: ``[B, num_classes, S, S]``

    Example:
        >>> SegmentationHead(8, 11, out_size=32)(torch.zeros(2, 8, 8, 8)).shape
        torch.Size([2, 11, 32, 32])
    """

    def __init__(self, in_channels: int, num_classes: int, out_size: int, d_hidden: int = 32) -> None:
        super().__init__()
        self.out_size = out_size
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, d_hidden, 3, padding=1), nn.GELU(), nn.Conv2d(d_hidden, num_classes, 1)
        )

    def reset_parameters(self) -> None:
        """Reset the convolutions."""
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel logits."""
        return F.interpolate(self.body(x), size=(self.out_size, self.out_size), mode="bilinear", align_corners=False)


class DetectionHead(nn.Module):
    """CenterNet-style detection at the map's stride: class heatmap, box size and centre offset.

    Zhou et al., "Objects as Points" (2019): every object is a peak of its class heatmap at its box centre;
    the size (``w, h`` in units of the image side) and the sub-cell offset are regressed at that cell.

    Args:
        in_channels: map width ``C``.
        num_classes: object classes.
        d_hidden: hidden width.

    Shapes:
        - x: ``[B, C, h, w]``
        - output: ``heatmap [B, num_classes, h, w]`` (logits), ``size [B, 2, h, w]``, ``offset [B, 2, h, w]``

    Example:
        >>> heat, size, offset = DetectionHead(8, 10)(torch.zeros(2, 8, 8, 8))
        >>> heat.shape, size.shape
        (torch.Size([2, 10, 8, 8]), torch.Size([2, 2, 8, 8]))
    """

    def __init__(self, in_channels: int, num_classes: int, d_hidden: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Conv2d(in_channels, d_hidden, 3, padding=1), nn.GELU())
        self.heat = nn.Conv2d(d_hidden, num_classes, 1)
        self.box = nn.Conv2d(d_hidden, 4, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset the convolutions; the heatmap bias starts at a prior of 0.1 (CenterNet's focal-loss init)."""
        for m in (self.body[0], self.heat, self.box):
            m.reset_parameters()
        nn.init.constant_(self.heat.bias, -math.log((1 - 0.1) / 0.1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Heatmap logits, sizes and offsets."""
        h = self.body(x)
        box = self.box(h)
        return self.heat(h), box[:, :2].sigmoid(), box[:, 2:].sigmoid()


def decode_detections(
    heatmap: Tensor, size: Tensor, offset: Tensor, image_size: int, max_detections: int = 4
) -> tuple[Tensor, Tensor, Tensor]:
    """Boxes from CenterNet outputs: 3x3 max-pool peaks, the best ``max_detections`` per image.

    Args:
        heatmap: class logits.
        size: box sizes as fractions of the image side.
        offset: sub-cell centre offsets in ``[0, 1]``.
        image_size: image side in pixels.
        max_detections: boxes per image.

    Returns:
        ``(boxes [B, K, 4] xyxy pixels, scores [B, K], classes [B, K])``.

    Shapes:
        - heatmap: ``[B, C, h, w]``; size, offset: ``[B, 2, h, w]``
    """
    prob = heatmap.sigmoid()
    peaks = prob * (F.max_pool2d(prob, 3, stride=1, padding=1) == prob)
    _, c, h, w = peaks.shape
    k = min(max_detections, c * h * w)
    scores, flat = peaks.flatten(1).topk(k, dim=1)
    classes = flat // (h * w)
    cell = flat % (h * w)
    cy, cx = cell // w, cell % w
    off = offset.flatten(2).gather(2, cell.unsqueeze(1).expand(-1, 2, -1))
    wh = size.flatten(2).gather(2, cell.unsqueeze(1).expand(-1, 2, -1)) * image_size
    stride = image_size / w
    centre_x = (cx.float() + off[:, 0]) * stride
    centre_y = (cy.float() + off[:, 1]) * stride
    boxes = torch.stack(
        [centre_x - wh[:, 0] / 2, centre_y - wh[:, 1] / 2, centre_x + wh[:, 0] / 2, centre_y + wh[:, 1] / 2], -1
    )
    return boxes, scores, classes


class ContextEmbedding(nn.Module):
    """The context vector of a question: ``emb(template) + emb(argument class)`` (no language model).

    The non-LLM stand-in for MoVA's text token: a closed set of templates, each with an optional class
    argument (``-1`` = none).

    Args:
        num_contexts: question templates.
        num_classes: classes an argument can name.
        d_context: embedding width.

    Shapes:
        - context, argument: ``[B]`` (int)
        - output: ``[B, d_context]``

    Example:
        >>> ContextEmbedding(6, 10, 16)(torch.tensor([0, 5]), torch.tensor([3, -1])).shape
        torch.Size([2, 16])
    """

    def __init__(self, num_contexts: int, num_classes: int, d_context: int = 32) -> None:
        super().__init__()
        self.num_contexts = num_contexts
        self.num_classes = num_classes
        self.d_context = d_context
        self.template = nn.Embedding(num_contexts, d_context)
        self.argument = nn.Embedding(num_classes + 1, d_context)

    def reset_parameters(self) -> None:
        """Reset both tables."""
        self.template.reset_parameters()
        self.argument.reset_parameters()

    def forward(self, context: Tensor, argument: Tensor | None = None) -> Tensor:
        """Context vectors; raises on ids out of range."""
        if context.dtype.is_floating_point or context.dim() != 1:
            raise TypeError(f"context must be an int tensor [B], got {context.dtype} {tuple(context.shape)}")
        if context.numel() and (int(context.min()) < 0 or int(context.max()) >= self.num_contexts):
            raise ValueError(
                f"context ids must lie in [0, num_contexts={self.num_contexts}), got "
                f"min {int(context.min())}, max {int(context.max())}"
            )
        if argument is None:
            argument = torch.full_like(context, -1)
        if argument.shape != context.shape:
            raise ValueError(f"argument must have shape {tuple(context.shape)}, got {tuple(argument.shape)}")
        if argument.numel() and (int(argument.min()) < -1 or int(argument.max()) >= self.num_classes):
            raise ValueError(
                f"argument ids must lie in [-1, num_classes={self.num_classes}), got "
                f"min {int(argument.min())}, max {int(argument.max())}"
            )
        return self.template(context) + self.argument(argument + 1)


class QuestionHead(nn.Module):
    """Answer a context question from tokens: context-conditioned attention pooling, an MLP, masked answers.

    The query of the attention pool is a projection of the context vector, so each template reads different
    tokens; the logits of answers a template cannot have are masked out.

    Args:
        d_model: token width.
        num_contexts: question templates.
        num_classes: classes an argument can name.
        answer_mask: valid answers per template, bool ``[num_contexts, num_answers]``; ``None`` builds the
            canvas answer space's mask (:class:`~domain_moe.vision.canvas.AnswerSpace`) for ``max_items``.
        d_context: context embedding width.
        num_heads: attention heads of the pool.
        d_hidden: MLP hidden width.
        max_items: most items per canvas, when ``answer_mask`` is ``None``.

    Shapes:
        - tokens: ``[B, L, d_model]``; context, argument: ``[B]``
        - output: ``[B, num_answers]``

    Example:
        >>> mask = torch.ones(6, 19, dtype=torch.bool)
        >>> head = QuestionHead(16, 6, 10, mask, d_context=8, num_heads=2)
        >>> head(torch.zeros(3, 4, 16), torch.tensor([0, 1, 2]), torch.tensor([1, -1, 2])).shape
        torch.Size([3, 19])
    """

    def __init__(
        self,
        d_model: int,
        num_contexts: int,
        num_classes: int,
        answer_mask: Tensor | None = None,
        d_context: int = 32,
        num_heads: int = 4,
        d_hidden: int = 64,
        max_items: int = 3,
    ) -> None:
        super().__init__()
        if answer_mask is None:
            from domain_moe.vision.canvas import TEMPLATES, AnswerSpace

            if num_contexts != len(TEMPLATES):
                raise ValueError(f"answer_mask=None needs num_contexts={len(TEMPLATES)} (the canvas templates)")
            answer_mask = AnswerSpace(num_classes, max_items).mask()
        answer_mask = torch.as_tensor(answer_mask, dtype=torch.bool)
        if answer_mask.dim() != 2 or answer_mask.shape[0] != num_contexts:
            raise ValueError(
                f"answer_mask must be bool [num_contexts={num_contexts}, num_answers], got {tuple(answer_mask.shape)}"
            )
        self.d_model = d_model
        self.embed = ContextEmbedding(num_contexts, num_classes, d_context)
        self.query = nn.Linear(d_context, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pool = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.mlp = nn.Sequential(
            nn.Linear(d_model + d_context, d_hidden), nn.GELU(), nn.Linear(d_hidden, answer_mask.shape[1])
        )
        self.register_buffer("answer_mask", answer_mask, persistent=False)

    def reset_parameters(self) -> None:
        """Reset every layer."""
        self.embed.reset_parameters()
        self.query.reset_parameters()
        self.norm.reset_parameters()
        self.pool._reset_parameters()
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, tokens: Tensor, context: Tensor, argument: Tensor | None = None) -> Tensor:
        """Answer logits (invalid answers at ``-1e4``)."""
        if tokens.dim() != 3 or tokens.shape[-1] != self.d_model:
            raise ValueError(f"tokens must be [B, L, d_model={self.d_model}], got shape {tuple(tokens.shape)}")
        t = self.embed(context, argument)
        q = self.query(t).unsqueeze(1)
        kv = self.norm(tokens)
        pooled = self.pool(q, kv, kv, need_weights=False)[0].squeeze(1)
        logits = self.mlp(torch.cat([pooled, t], -1))
        return logits.masked_fill(~self.answer_mask[context], -1e4)


class CaptionDecoder(nn.Module):
    """A small non-LLM caption decoder: a GRU with dot-product attention over the visual tokens.

    Teacher forcing in :meth:`forward` (logits for tokens ``1..T-1`` given ``0..T-2``), greedy decoding in
    :meth:`generate`.

    Args:
        in_channels: visual token width ``C``.
        vocab_size: caption vocabulary size.
        d_hidden: GRU width.

    Shapes:
        - tokens: ``[B, L, C]`` (or a map ``[B, C, h, w]``); caption: ``[B, T]``
        - output: ``[B, T - 1, vocab_size]``

    Example:
        >>> dec = CaptionDecoder(8, vocab_size=13, d_hidden=16)
        >>> dec(torch.zeros(2, 8, 4, 4), torch.tensor([[1, 3, 2], [1, 4, 2]])).shape
        torch.Size([2, 2, 13])
    """

    def __init__(self, in_channels: int, vocab_size: int, d_hidden: int = 64) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.memory = nn.Linear(in_channels, d_hidden)
        self.init = nn.Linear(in_channels, d_hidden)
        self.embed = nn.Embedding(vocab_size, d_hidden)
        self.cell = nn.GRUCell(2 * d_hidden, d_hidden)
        self.out = nn.Linear(2 * d_hidden, vocab_size)

    def reset_parameters(self) -> None:
        """Reset every layer."""
        for m in (self.memory, self.init, self.embed, self.cell, self.out):
            m.reset_parameters()

    @staticmethod
    def _tokens(x: Tensor) -> Tensor:
        return x.flatten(2).transpose(1, 2) if x.dim() == 4 else x

    def _step(self, mem: Tensor, h: Tensor, tok: Tensor) -> tuple[Tensor, Tensor]:
        att = torch.softmax((mem @ h.unsqueeze(-1)).squeeze(-1) / math.sqrt(h.shape[-1]), -1)
        ctx = (att.unsqueeze(-1) * mem).sum(1)
        h = self.cell(torch.cat([self.embed(tok), ctx], -1), h)
        att = torch.softmax((mem @ h.unsqueeze(-1)).squeeze(-1) / math.sqrt(h.shape[-1]), -1)
        return h, self.out(torch.cat([h, (att.unsqueeze(-1) * mem).sum(1)], -1))

    def forward(self, x: Tensor, caption: Tensor) -> Tensor:
        """Teacher-forced logits."""
        tokens = self._tokens(x)
        mem = self.memory(tokens)
        h = torch.tanh(self.init(tokens.mean(1)))
        logits = []
        for t in range(caption.shape[1] - 1):
            h, logit = self._step(mem, h, caption[:, t])
            logits.append(logit)
        return torch.stack(logits, 1)

    @torch.no_grad()
    def generate(self, x: Tensor, length: int, bos: int = 1) -> Tensor:
        """Greedy captions of ``length`` tokens including ``<bos>``.

        Shapes:
            - output: ``[B, length]``
        """
        tokens = self._tokens(x)
        mem = self.memory(tokens)
        h = torch.tanh(self.init(tokens.mean(1)))
        tok = torch.full((tokens.shape[0],), bos, dtype=torch.long, device=tokens.device)
        out = [tok]
        for _ in range(length - 1):
            h, logit = self._step(mem, h, tok)
            tok = logit.argmax(-1)
            out.append(tok)
        return torch.stack(out, 1)
