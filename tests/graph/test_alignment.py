"""SVD feature alignment: widths, Gram preservation, deterministic signs, padding, errors."""

import pytest
import torch
from torch_geometric.data import Data

from domain_moe.graph.alignment import SVDFeatureAlignment, svd_align


def _low_rank(n=40, f=30, rank=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, rank, generator=gen, dtype=dtype) @ torch.randn(rank, f, generator=gen, dtype=dtype)


@pytest.mark.parametrize("width", [3, 8, 30, 100])
def test_output_width_is_independent_of_the_input_width(width):
    x = torch.randn(20, width)
    z = svd_align(x, 8)
    assert z.shape == (20, 8) and z.dtype == torch.float32
    torch.testing.assert_close(z.square().mean(), torch.tensor(1.0))


@pytest.mark.parametrize("method", ["full", "lowrank"])
def test_gram_is_preserved_up_to_scale_when_rank_fits(method):
    x = _low_rank(rank=5)
    z = svd_align(x, 8, method=method)
    gram_x, gram_z = x @ x.T, z @ z.T
    scale = gram_z.trace() / gram_x.trace()
    torch.testing.assert_close(gram_z, scale * gram_x, atol=1e-8, rtol=1e-6)
    # Without rescaling the projection is an isometry on the row space.
    torch.testing.assert_close(
        svd_align(x, 8, rescale=False, method=method) @ svd_align(x, 8, rescale=False).T, gram_x, atol=1e-8, rtol=1e-6
    )


def test_matches_principal_coordinates_oracle_with_sign_convention():
    x = torch.randn(25, 12, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    want = u[:, :4] * s[:4]
    v = vh[:4].T
    flip = torch.sign(v[v.abs().argmax(0), torch.arange(4)])
    want = want * flip
    torch.testing.assert_close(svd_align(x, 4, rescale=False), want)


def test_sign_is_deterministic_under_column_permutation_and_negation():
    x = torch.randn(30, 20, dtype=torch.float64)
    z = svd_align(x, 6)
    perm = torch.randperm(20)
    # X P has right singular vectors P^T V: the same largest loading, so the same sign and the same output.
    torch.testing.assert_close(svd_align(x[:, perm], 6), z)
    # -X flips every singular vector; the sign convention flips them back, so the output is -z exactly.
    torch.testing.assert_close(svd_align(-x, 6), -z)
    torch.testing.assert_close(svd_align(x, 6), z, rtol=0, atol=0)


def test_lowrank_matches_exact_subspace():
    x = torch.randn(60, 1500)
    a = svd_align(x, 16, method="lowrank")
    b = svd_align(x, 16, method="full")
    torch.testing.assert_close(a.abs().sum(0), b.abs().sum(0), rtol=0.05, atol=0.0)


def test_narrow_input_is_zero_padded():
    x = torch.randn(7, 3)
    z = svd_align(x, 5, rescale=False)
    torch.testing.assert_close(z[:, :3], x)
    assert z[:, 3:].eq(0).all()
    assert svd_align(torch.zeros(4, 2), 3).eq(0).all()


def test_fewer_nodes_than_width_pads_components():
    z = svd_align(torch.randn(3, 10), 6)
    assert z.shape == (3, 6) and z[:, 3:].eq(0).all()


def test_transform_replaces_x():
    data = Data(x=torch.randn(9, 11), edge_index=torch.tensor([[0], [1]]))
    out = SVDFeatureAlignment(4)(data)
    assert out.x.shape == (9, 4)
    assert "SVDFeatureAlignment(4" in repr(SVDFeatureAlignment(4))


@pytest.mark.parametrize(
    ("x", "kwargs", "err", "match"),
    [
        (torch.randn(5), {}, ValueError, r"x must be \[N, F\]"),
        (torch.randn(0, 3), {}, ValueError, "N >= 1"),
        (torch.full((3, 3), float("nan")), {}, ValueError, "NaN"),
        (torch.randn(3, 3), {"out_channels": 0}, ValueError, "out_channels"),
        (torch.randn(3, 3), {"method": "qr"}, ValueError, "method"),
        ([[1.0]], {}, TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(x, kwargs, err, match):
    with pytest.raises(err, match=match):
        svd_align(x, **{"out_channels": 2, **kwargs})


def test_transform_bad_inputs():
    with pytest.raises(ValueError, match="out_channels"):
        SVDFeatureAlignment(-1)
    with pytest.raises(ValueError, match="no node features"):
        SVDFeatureAlignment(2)(Data(edge_index=torch.tensor([[0], [1]])))
