import pytest
import torch
import torch.nn.functional as F

from domain_moe.vision.experts import (
    ExpertPool,
    FeatureAligner,
    TimmExpert,
    align_to_grid,
    cached_expert_tokens,
    load_expert,
    save_expert,
)


@pytest.mark.parametrize(
    ("name", "index", "channels", "stride"),
    [("test_resnet", 3, 192, 16), ("test_efficientnet", 2, 32, 8), ("test_convnext", 0, 24, 4)],
)
def test_alignment_shapes_for_different_strides_and_widths(name, index, channels, stride):
    expert = TimmExpert(name, index, img_size=64)
    assert (expert.channels, expert.reduction) == (channels, stride)
    fmap = expert(torch.randn(2, 1, 64, 64))
    assert fmap.shape == (2, channels, 64 // stride, 64 // stride)
    assert align_to_grid(fmap, 8).shape == (2, 64, channels)


def test_align_to_grid_matches_bilinear_oracle_and_order():
    fmap = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    tokens = align_to_grid(fmap, 8)
    oracle = F.interpolate(fmap, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(tokens, oracle.flatten(2).transpose(1, 2))
    # Same size: a pure reshape, row-major token order.
    same = align_to_grid(fmap, 4)
    assert torch.equal(same[1, 5], fmap[1, :, 1, 1])
    # A constant map stays constant.
    assert torch.allclose(align_to_grid(torch.full((1, 2, 2, 2), 3.0), 8), torch.tensor(3.0))


def test_feature_aligner_projects_to_common_width():
    aligner = FeatureAligner([192, 32, 24], grid=8, d_model=16)
    out = aligner([torch.randn(2, 192, 4, 4), torch.randn(2, 32, 8, 8), torch.randn(2, 24, 16, 16)])
    assert [t.shape for t in out] == [torch.Size([2, 64, 16])] * 3
    with pytest.raises(ValueError, match="channels"):
        aligner.align(0, torch.randn(2, 32, 4, 4))


def test_unknown_timm_model_is_a_clear_error():
    with pytest.raises(ValueError, match=r"timm model name.*test_resnet"):
        TimmExpert("test_resnt")


def test_image_size_the_expert_cannot_take():
    with pytest.raises(ValueError, match="img_size=28 is an image size test_convnext cannot take"):
        TimmExpert("test_convnext", img_size=28)


def test_bad_out_index_and_input():
    with pytest.raises(ValueError, match="out_index"):
        TimmExpert("test_resnet", out_index=9)
    with pytest.raises(ValueError, match="in_chans=1"):
        TimmExpert("test_resnet", img_size=32)(torch.zeros(1, 3, 32, 32))


def test_save_and_load_frozen_round_trip(tmp_path):
    torch.manual_seed(0)
    expert = TimmExpert("test_efficientnet", 2, img_size=64)
    path = tmp_path / "det.pt"
    save_expert(expert, path)
    loaded = load_expert(path)
    assert all(not p.requires_grad for p in loaded.parameters())
    loaded.train()
    assert not loaded.training  # frozen experts stay in eval mode
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(loaded(x), expert.eval()(x))
    rebuilt = TimmExpert("test_efficientnet", 2, img_size=64, checkpoint=str(path))
    assert torch.equal(rebuilt.eval()(x), loaded(x))
    with pytest.raises(FileNotFoundError, match="expert checkpoint not found"):
        load_expert(tmp_path / "missing.pt")


def test_pool_is_frozen_and_resizes():
    pool = ExpertPool([TimmExpert("test_resnet", 3, img_size=64), TimmExpert("test_convnext", 0, img_size=32)], grid=4)
    assert pool.channels == [192, 24]
    out = pool(torch.randn(3, 1, 64, 64), 1)
    assert out.shape == (3, 16, 24) and not out.requires_grad
    with pytest.raises(ValueError, match="index"):
        pool(torch.randn(1, 1, 64, 64), 2)
    with pytest.raises(TypeError, match="TimmExpert"):
        ExpertPool([torch.nn.Linear(2, 2)])


def test_cached_expert_tokens_keys():
    a, b = torch.zeros(2, 4, 3), torch.ones(2, 4, 5)
    assert cached_expert_tokens({"expert_tokens_0": a, "expert_tokens_1": b}, 2)[1] is b
    assert cached_expert_tokens({"expert_tokens_0": a}, 2) is None
