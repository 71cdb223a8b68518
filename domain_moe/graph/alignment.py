"""SVD feature alignment: graphs with different feature widths mapped to one width for a shared backbone.

GMoPE (Wang et al., "GMoPE: A Prompt-Expert Mixture Framework for Graph Foundation Models", arXiv 2511.03251)
unifies node features across datasets "optionally via SVD preprocessing"; the reconstruction here follows the
cross-domain pre-training recipe it builds on (GCOPE): a graph wider than the target width is projected on its
leading right singular vectors, a narrower one is zero-padded. Two choices are ours: the singular vectors get a
deterministic sign (the largest-magnitude loading of each is positive, as scikit-learn's ``svd_flip``), so the
same graph always gives the same features; and the result is rescaled to a unit root-mean-square entry, so graphs
whose raw features differ in scale by orders of magnitude (bag-of-words rows vs. embeddings) meet the shared
backbone at the same scale. Both keep the row Gram matrix ``Z Zᵀ`` proportional to ``X Xᵀ`` whenever the rank of
``X`` is at most the target width.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

__all__ = ["SVDFeatureAlignment", "svd_align"]

# Above this min(N, F) the exact SVD costs seconds to minutes on a CPU; the randomised one is used instead.
_EXACT_LIMIT = 1024


def svd_align(x: Tensor, out_channels: int, *, rescale: bool = True, method: str = "auto") -> Tensor:
    """Map node features ``x [N, F]`` to ``[N, out_channels]``: SVD projection if wider, zero-padding if not.

    Wider inputs become ``U_k S_k`` (= ``X V_k``), the rank-``k`` principal coordinates of the rows, with the sign
    of each singular vector fixed so that its largest-magnitude loading is positive. With ``rescale`` the output
    is divided by its root-mean-square entry (a zero matrix stays zero).

    Args:
        x: node features, floating point.
        out_channels: target width ``k``.
        rescale: divide by the root-mean-square entry of the result.
        method: ``"full"`` (exact economy SVD), ``"lowrank"`` (seeded randomised SVD, ``torch.svd_lowrank``) or
            ``"auto"`` (exact when ``min(N, F) <= 1024``).

    Returns:
        Aligned features (float32 unless ``x`` is float64).

    Shapes:
        x: ``[N, F]`` → ``[N, out_channels]``.

    Example:
        >>> z = svd_align(torch.randn(10, 30), 4)
        >>> z.shape, round(float(z.square().mean()), 4)
        (torch.Size([10, 4]), 1.0)
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"svd_align: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.size(0) == 0:
        raise ValueError(f"svd_align: x must be [N, F] with N >= 1, got shape {tuple(x.shape)}")
    if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
        raise ValueError(f"svd_align: out_channels must be an int >= 1, got {out_channels!r}")
    if method not in ("auto", "full", "lowrank"):
        raise ValueError(f"svd_align: method must be 'auto', 'full' or 'lowrank', got {method!r}")
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    if not torch.isfinite(x).all():
        raise ValueError("svd_align: x holds NaN or infinite values")
    num_features = x.size(1)
    if num_features > out_channels:
        k = min(out_channels, *x.shape)
        if method == "full" or (method == "auto" and min(x.shape) <= _EXACT_LIMIT):
            # Economy SVD: U is [N, min(N, F)], so a 10k-node graph never builds an N x N matrix.
            v = torch.linalg.svd(x, full_matrices=False)[2][:k].T
        else:
            # Randomised SVD (Halko et al.) with a fixed seed: the leading k directions of a 3k x 4k
            # bag-of-words matrix in a fraction of a second instead of tens of seconds, reproducibly.
            # Bag-of-words features are mostly zeros: the sparse products are many times cheaper.
            a = x.to_sparse() if float((x != 0).float().mean()) < 0.1 else x
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                v = torch.svd_lowrank(a, q=min(2 * k, *x.shape), niter=10)[2][:, :k]
        # Sign convention: an SVD is unique only up to the sign of each singular pair.
        pivot = v.abs().argmax(0)
        signs = torch.sign(v[pivot, torch.arange(k)])
        v = v * torch.where(signs == 0, torch.ones_like(signs), signs)
        z = x @ v
        if k < out_channels:  # fewer nodes than the target width: pad the missing components
            z = torch.cat([z, z.new_zeros(z.size(0), out_channels - k)], dim=1)
    else:
        z = torch.cat([x, x.new_zeros(x.size(0), out_channels - num_features)], dim=1)
    if rescale:
        rms = z.square().mean().sqrt()
        if rms > 0:
            z = z / rms
    return z


class SVDFeatureAlignment(BaseTransform):
    """A PyG transform applying :func:`svd_align` to ``data.x`` (GMoPE-style feature unification).

    Unlike ``torch_geometric.transforms.SVDFeatureReduction`` it also pads narrower graphs, fixes the sign of
    the singular vectors and rescales, so every graph leaves with exactly ``out_channels`` comparable features.

    Args:
        out_channels: target width.
        rescale: divide by the root-mean-square entry.

    Example:
        >>> from torch_geometric.data import Data
        >>> SVDFeatureAlignment(8)(Data(x=torch.randn(5, 3))).x.shape
        torch.Size([5, 8])
    """

    def __init__(self, out_channels: int, rescale: bool = True) -> None:
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"SVDFeatureAlignment: out_channels must be an int >= 1, got {out_channels!r}")
        self.out_channels = out_channels
        self.rescale = rescale

    def forward(self, data: Data) -> Data:
        """Replace ``data.x`` by its aligned features."""
        if getattr(data, "x", None) is None:
            raise ValueError("SVDFeatureAlignment: the graph has no node features (data.x is None)")
        data.x = svd_align(data.x, self.out_channels, rescale=self.rescale)
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.out_channels}, rescale={self.rescale})"
