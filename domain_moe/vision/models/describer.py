"""Describe a canvas from tokens: caption decoding and image <-> caption retrieval (Astrea's non-VQA tasks)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from domain_moe.core import losses
from domain_moe.vision.heads import CaptionDecoder

__all__ = ["CaptionEncoder", "DescribeLosses", "Describer"]


class CaptionEncoder(nn.Module):
    """Embed a caption of class tokens: a bag of token embeddings (``<pad>``, ``<bos>``, ``<eos>`` ignored), an MLP.

    Retrieval positives are canvases with the same class multiset, so the encoding is order-free on purpose.

    Args:
        vocab_size: caption vocabulary size.
        d_embed: output width.
        num_special: leading special tokens to ignore (pad, begin, end).

    Shapes:
        - caption: ``[B, T]`` (int)
        - output: ``[B, d_embed]``

    Example:
        >>> CaptionEncoder(13, 8)(torch.tensor([[1, 3, 4, 2], [1, 5, 2, 0]])).shape
        torch.Size([2, 8])
    """

    def __init__(self, vocab_size: int, d_embed: int = 64, num_special: int = 3) -> None:
        super().__init__()
        self.num_special = num_special
        self.embed = nn.Embedding(vocab_size, d_embed)
        self.mlp = nn.Sequential(nn.Linear(d_embed, d_embed), nn.GELU(), nn.Linear(d_embed, d_embed))

    def reset_parameters(self) -> None:
        """Reset the table and the MLP."""
        self.embed.reset_parameters()
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, caption: Tensor) -> Tensor:
        """Caption embeddings (sum of the class tokens' embeddings, then the MLP)."""
        if caption.dtype.is_floating_point or caption.dim() != 2:
            raise TypeError(f"caption must be an int tensor [B, T], got {caption.dtype} {tuple(caption.shape)}")
        words = (caption >= self.num_special).unsqueeze(-1).float()
        return self.mlp((self.embed(caption) * words).sum(1))


class DescribeLosses(NamedTuple):
    """Training losses of :class:`Describer`."""

    caption: Tensor
    retrieval: Tensor


class Describer(nn.Module):
    """Caption and retrieval heads over a token set: the non-VQA outputs Astrea is evaluated on.

    Captioning decodes the class tokens left to right with the captioning expert's decoder type
    (:class:`~domain_moe.vision.heads.CaptionDecoder`, teacher forcing in training, greedy in
    :meth:`generate`). Retrieval embeds the image (layer norm, mean over tokens, an MLP) and the caption
    (:class:`CaptionEncoder`) into one space, trained with the core's symmetric InfoNCE; canvases with the same
    class multiset are positives, so they are masked out of each other's denominators.

    Args:
        d_model: token width.
        vocab_size: caption vocabulary size.
        d_hidden: caption decoder width.
        d_embed: retrieval embedding width.
        temperature: InfoNCE temperature.

    Shapes:
        - tokens: ``[B, L, d_model]``; caption: ``[B, T]``; presence: ``[B, num_classes]`` (class counts)
        - image_embedding / caption_embedding: ``[B, d_embed]``

    Example:
        >>> describer = Describer(16, vocab_size=13, d_hidden=16, d_embed=8)
        >>> caption = torch.tensor([[1, 3, 2], [1, 4, 2]])
        >>> out = describer.losses(torch.randn(2, 4, 16), caption, torch.eye(2, 10))
        >>> out.caption.dim(), out.retrieval.dim()
        (0, 0)
    """

    def __init__(
        self, d_model: int, vocab_size: int, d_hidden: int = 64, d_embed: int = 64, temperature: float = 0.1
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.d_model = d_model
        self.temperature = temperature
        self.decoder = CaptionDecoder(d_model, vocab_size, d_hidden)
        self.norm = nn.LayerNorm(d_model)
        self.image = nn.Sequential(nn.Linear(d_model, d_embed), nn.GELU(), nn.Linear(d_embed, d_embed))
        self.text = CaptionEncoder(vocab_size, d_embed)

    def reset_parameters(self) -> None:
        """Reset every part."""
        self.decoder.reset_parameters()
        self.norm.reset_parameters()
        for m in self.image:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        self.text.reset_parameters()

    def _check(self, tokens: Tensor) -> None:
        if tokens.dim() != 3 or tokens.shape[-1] != self.d_model:
            raise ValueError(f"tokens must be [B, L, d_model={self.d_model}], got shape {tuple(tokens.shape)}")

    def image_embedding(self, tokens: Tensor) -> Tensor:
        """Image side of retrieval."""
        self._check(tokens)
        return self.image(self.norm(tokens).mean(1))

    def caption_embedding(self, caption: Tensor) -> Tensor:
        """Caption side of retrieval."""
        return self.text(caption)

    def losses(self, tokens: Tensor, caption: Tensor, presence: Tensor) -> DescribeLosses:
        """Teacher-forced caption cross-entropy (padding ignored) and symmetric InfoNCE image <-> caption."""
        self._check(tokens)
        logits = self.decoder(tokens, caption)
        cap = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), caption[:, 1:].reshape(-1), ignore_index=0)
        same = (presence.unsqueeze(1) == presence.unsqueeze(0)).all(-1)
        ret = losses.symmetric_info_nce(
            self.image_embedding(tokens), self.caption_embedding(caption), self.temperature, same=same
        )
        return DescribeLosses(cap, ret)

    @torch.no_grad()
    def generate(self, tokens: Tensor, length: int) -> Tensor:
        """Greedy captions of ``length`` tokens including ``<bos>``.

        Shapes:
            - output: ``[B, length]``
        """
        self._check(tokens)
        return self.decoder.generate(tokens, length)
