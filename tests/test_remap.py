"""Carrying an LM over to a new codec's tokens (train/remap.py)."""
from __future__ import annotations

import pytest
import torch

from musicgen_core.codec import Codec
from musicgen_core.configs import CodecConfig
from musicgen_core.train.remap import cooccurrence, remap_model, remap_tokens

K, CARD, D = 2, 6, 3


def test_a_relabelled_codebook_moves_each_row_to_its_new_code():
    emb, heads = torch.randn(K, CARD + 1, D), torch.randn(K, CARD, D)
    perm = torch.stack([torch.randperm(CARD) for _ in range(K)])  # old code i is new code perm[k, i]
    counts = torch.zeros(K, CARD, CARD)
    for k in range(K):
        counts[k, perm[k], torch.arange(CARD)] = 7.0
    new_emb, new_heads = remap_tokens(emb, heads, counts)
    for k in range(K):
        assert torch.equal(new_emb[k, perm[k]], emb[k, :CARD]) and torch.equal(new_heads[k, perm[k]], heads[k])
    assert torch.equal(new_emb[:, CARD], emb[:, CARD])  # the special token


def test_rows_average_by_how_often_codes_share_a_frame_and_unseen_codes_keep_theirs():
    emb, heads = torch.randn(K, CARD + 1, D), torch.randn(K, CARD, D)
    counts = torch.zeros(K, CARD, CARD)
    counts[:, 0, 1], counts[:, 0, 2] = 3.0, 1.0  # new code 0 falls on old 1 three times, on old 2 once
    new_emb, new_heads = remap_tokens(emb, heads, counts)
    assert torch.allclose(new_heads[:, 0], 0.75 * heads[:, 1] + 0.25 * heads[:, 2])
    assert torch.allclose(new_emb[:, 0], 0.75 * emb[:, 1] + 0.25 * emb[:, 2])
    assert torch.equal(new_heads[:, 1:], heads[:, 1:]) and torch.equal(new_emb[:, 1:], emb[:, 1:])


def test_a_codec_agrees_with_itself_on_every_frame():
    torch.manual_seed(0)
    codec = Codec(CodecConfig(n_filters=4, dimension=16, lstm_layers=1, n_q=2, card=CARD)).eval()
    audio = (torch.randn(3, 3200) * 3000).to(torch.int16)
    with torch.no_grad():
        codes = codec.encode(audio.float()[:, None] / 32767)  # [3, 2, 5]
    counts = cooccurrence(codec, audio, codes, CARD, batch=2)
    assert counts.shape == (2, CARD, CARD) and counts.sum() == codes.numel()
    assert torch.equal(counts, torch.diag_embed(counts.diagonal(dim1=1, dim2=2)))


def test_token_shards_without_their_audio_are_refused(tmp_path):
    torch.save({"codes": torch.zeros(1, 4, 5, dtype=torch.int16)}, tmp_path / "shard_00000.pt")
    with pytest.raises(FileNotFoundError, match="has no token shard with its audio shard beside it"):
        remap_model(tmp_path, tmp_path, n=4)
