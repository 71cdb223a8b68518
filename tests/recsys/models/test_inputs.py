import pytest
import torch

from domain_moe.recsys.models.inputs import FeatureEmbedding


def test_lookup_uses_each_fields_own_rows():
    emb = FeatureEmbedding([3, 5], num_dense=2, embed_dim=4)
    sparse = torch.tensor([[2, 0], [0, 4]])
    dense = torch.randn(2, 2)
    out = emb(dense, sparse)
    assert out.shape == (2, 10) and emb.d_out == 10
    table = emb.table.weight
    torch.testing.assert_close(out[0, :4], table[2])
    torch.testing.assert_close(out[0, 4:8], table[3 + 0])  # field 1 starts after field 0's 3 rows
    torch.testing.assert_close(out[1, 4:8], table[3 + 4])
    torch.testing.assert_close(out[:, 8:], dense)


def test_dense_only_and_sparse_only():
    assert FeatureEmbedding(num_dense=5)(torch.randn(3, 5)).shape == (3, 5)
    assert FeatureEmbedding([4], embed_dim=2)(None, torch.tensor([[1], [3]])).shape == (2, 2)


@pytest.mark.parametrize(
    ("sparse", "error", "match"),
    [
        (torch.tensor([[0, 5]]), ValueError, r"id 5 of field 1 .* outside its embedding table \[0, 5\)"),
        (torch.tensor([[-1, 0]]), ValueError, r"id -1 of field 0"),
        (torch.tensor([[0.0, 1.0]]), TypeError, "integer ids"),
        (torch.tensor([[0, 1, 2]]), ValueError, r"shape \[B, F=2\]"),
    ],
)
def test_bad_ids_are_named(sparse, error, match):
    emb = FeatureEmbedding([3, 5], num_dense=1)
    with pytest.raises(error, match=match):
        emb(torch.randn(sparse.shape[0], 1), sparse)


def test_bad_dense_and_arguments():
    emb = FeatureEmbedding([3], num_dense=2)
    with pytest.raises(ValueError, match=r"num_dense=2"):
        emb(torch.randn(4, 3), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="sparse ids are required"):
        emb(torch.randn(4, 2))
    with pytest.raises(ValueError, match="cardinalities"):
        FeatureEmbedding([3, 0])
    with pytest.raises(ValueError, match="at least one"):
        FeatureEmbedding()
