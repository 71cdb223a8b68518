import pytest
import torch

from domain_moe.vision.canvas import caption_vocab_size
from domain_moe.vision.models import CaptionEncoder, Describer


def test_caption_encoder_is_order_free_and_ignores_special_tokens():
    enc = CaptionEncoder(13, 8)
    a = enc(torch.tensor([[1, 3, 7, 2, 0]]))
    b = enc(torch.tensor([[1, 7, 3, 2, 0]]))
    c = enc(torch.tensor([[1, 7, 3, 2, 2]]))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, enc(torch.tensor([[1, 3, 3, 2, 0]])))


def test_caption_encoder_rejects_float_captions():
    with pytest.raises(TypeError, match="caption must be an int tensor"):
        CaptionEncoder(13, 8)(torch.zeros(2, 4))


def test_describer_losses_match_hand_computation(tiny_batch):
    torch.manual_seed(0)
    describer = Describer(16, caption_vocab_size(10), d_hidden=16, d_embed=8, temperature=0.5)
    tokens = torch.randn(6, 16, 16)
    caption, presence = tiny_batch["caption"], tiny_batch["presence"]
    out = describer.losses(tokens, caption, presence)
    logits = describer.decoder(tokens, caption)
    target = caption[:, 1:]
    keep = target != 0
    manual_cap = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    torch.testing.assert_close(out.caption, manual_cap)
    img = torch.nn.functional.normalize(describer.image_embedding(tokens), dim=-1)
    txt = torch.nn.functional.normalize(describer.caption_embedding(caption), dim=-1)
    sims = img @ txt.T / 0.5
    same = (presence[:, None] == presence[None]).all(-1) & ~torch.eye(6, dtype=torch.bool)
    sims = sims.masked_fill(same, float("-inf"))
    i2t = -torch.log_softmax(sims, 1).diagonal().mean()
    t2i = -torch.log_softmax(sims, 0).diagonal().mean()
    torch.testing.assert_close(out.retrieval, (i2t + t2i) / 2)


def test_describer_learns_to_caption_from_informative_tokens():
    # Tokens that carry the caption's classes: a few steps must beat the untrained decoder by a wide margin.
    torch.manual_seed(0)
    vocab = caption_vocab_size(4)
    classes = torch.randint(0, 4, (256, 2))
    caption = torch.cat([torch.ones(256, 1, dtype=torch.long), classes + 3, torch.full((256, 1), 2)], 1)
    # [B, 2, 16]: token t names item t's class (first 8 dims) and its position t (dim 8 + t).
    tokens = torch.cat([torch.nn.functional.one_hot(classes, 8), torch.eye(2, 8).expand(256, 2, 8)], -1).float()
    presence = torch.zeros(256, 4).scatter_add_(1, classes, torch.ones(256, 2))
    describer = Describer(16, vocab, d_hidden=32, d_embed=16)
    opt = torch.optim.Adam(describer.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        out = describer.losses(tokens, caption, presence)
        loss = out.caption + out.retrieval
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    generated = describer.generate(tokens, caption.shape[1])
    assert (generated[:, 1:3] == caption[:, 1:3]).float().mean() > 0.9
    assert loss.item() < 0.5 * first


def test_describer_checks_token_width():
    describer = Describer(16, 13, d_hidden=8, d_embed=8)
    with pytest.raises(ValueError, match=r"tokens must be \[B, L, d_model=16\]"):
        describer.image_embedding(torch.zeros(2, 4, 12))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        Describer(16, 13, temperature=0.0)
