"""The sparse/dense input part shared by every multi-task model: embeddings of categorical ids plus dense features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["FeatureEmbedding"]


class FeatureEmbedding(nn.Module):
    """Embeds ``F`` categorical fields and concatenates them with the dense features: ``x = [e_1 ... e_F, dense]``.

    One table holds every field (TorchRec's fused-table layout without the dependency): field ``f`` owns
    rows ``offsets[f] .. offsets[f] + cardinalities[f] - 1``, so a batch is embedded with one lookup.
    Ids are checked against their field's cardinality, because an out-of-range id would otherwise read a
    *neighbouring field's* rows silently.

    Args:
        cardinalities: vocabulary size of each categorical field (may be empty).
        num_dense: number of dense (float) features.
        embed_dim: embedding width of every field.
        device: parameter device.
        dtype: parameter dtype.

    Shapes:
        - sparse: ``[B, F]`` integer ids (or ``None`` when ``F = 0``)
        - dense: ``[B, num_dense]`` (or ``None`` when ``num_dense = 0``)
        - output: ``[B, F * embed_dim + num_dense]``

    Example:
        >>> emb = FeatureEmbedding(cardinalities=[3, 5], num_dense=2, embed_dim=4)
        >>> emb(torch.randn(6, 2), torch.tensor([[0, 4]] * 6)).shape, emb.d_out
        (torch.Size([6, 10]), 10)
    """

    def __init__(
        self,
        cardinalities: Sequence[int] = (),
        num_dense: int = 0,
        embed_dim: int = 8,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        cards = [int(c) for c in cardinalities]
        bad = [(f, c) for f, c in enumerate(cardinalities) if isinstance(c, bool) or int(c) != c or c < 1]
        if bad:
            raise ValueError(f"cardinalities must be positive ints, got field {bad[0][0]} = {bad[0][1]!r}")
        if isinstance(num_dense, bool) or not isinstance(num_dense, int) or num_dense < 0:
            raise ValueError(f"num_dense must be an int >= 0, got {num_dense!r}")
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
        if not cards and num_dense == 0:
            raise ValueError("FeatureEmbedding needs at least one categorical field or one dense feature")
        self.cardinalities = cards
        self.num_dense = num_dense
        self.embed_dim = embed_dim
        offsets = torch.tensor([0, *cards], dtype=torch.long).cumsum(0)[:-1]
        self.register_buffer("offsets", offsets.to(device), persistent=False)
        self.register_buffer("sizes", torch.tensor(cards, dtype=torch.long, device=device), persistent=False)
        self.table = nn.Embedding(max(sum(cards), 1), embed_dim, device=device, dtype=dtype) if cards else None
        self.reset_parameters()

    @property
    def d_out(self) -> int:
        """Width of the concatenated output."""
        return len(self.cardinalities) * self.embed_dim + self.num_dense

    def reset_parameters(self) -> None:
        """Small normal embeddings (std 0.01 would vanish next to standardised dense features; 1/sqrt(dim) does not)."""
        if self.table is not None:
            nn.init.normal_(self.table.weight, std=self.embed_dim**-0.5)

    def forward(self, dense: Tensor | None = None, sparse: Tensor | None = None) -> Tensor:
        """Embed and concatenate; see the class docstring."""
        parts = []
        if self.table is not None:
            if sparse is None:
                raise ValueError(f"sparse ids are required: the model has {len(self.cardinalities)} categorical fields")
            if sparse.is_floating_point() or sparse.dtype == torch.bool:
                raise TypeError(f"sparse must hold integer ids, got dtype {sparse.dtype}")
            if sparse.dim() != 2 or sparse.shape[1] != len(self.cardinalities):
                raise ValueError(
                    f"sparse must have shape [B, F={len(self.cardinalities)}], got {tuple(sparse.shape)}"
                )
            bad = (sparse < 0) | (sparse >= self.sizes)
            if bool(bad.any()):
                row, field = (int(i) for i in bad.nonzero()[0])
                raise ValueError(
                    f"sparse id {int(sparse[row, field])} of field {field} (row {row}) is outside its embedding "
                    f"table [0, {self.cardinalities[field]})"
                )
            emb = self.table(sparse.long() + self.offsets)
            parts.append(emb.flatten(1))
        if self.num_dense:
            if dense is None:
                raise ValueError(f"dense features are required: the model has num_dense={self.num_dense}")
            if dense.dim() != 2 or dense.shape[1] != self.num_dense:
                raise ValueError(f"dense must have shape [B, num_dense={self.num_dense}], got {tuple(dense.shape)}")
            if parts and dense.shape[0] != parts[0].shape[0]:
                raise ValueError(f"dense has {dense.shape[0]} rows but sparse has {parts[0].shape[0]}")
            parts.append(dense.to(parts[0].dtype if parts else dense.dtype))
        return torch.cat(parts, 1) if len(parts) > 1 else parts[0]

    def extra_repr(self) -> str:
        """The constructor options, for ``repr``."""
        return f"cardinalities={self.cardinalities}, num_dense={self.num_dense}, embed_dim={self.embed_dim}"
