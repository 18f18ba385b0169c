"""LM equivalences: cached step-by-step decode == full forward; CFG at coefficient 1 == conditional logits."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from musicgen_core import fast_linear
from musicgen_core.conditioning.tempo import BEAT_RATES, N_FEATURES, N_FREQS, parse_bpm, tempo_features
from musicgen_core.configs import LMConfig
from musicgen_core.fast_linear import BLOCK, Linear, block_wide_inputs, linear
from musicgen_core.lm.model import MusicLM
from musicgen_core.lm.transformer import sinusoidal_embedding


def tiny_lm(**kw) -> MusicLM:
    torch.manual_seed(0)
    cfg = LMConfig(dim=64, num_heads=4, num_layers=2, ffn_dim=128, card=32, cond_dim=24, **kw)
    lm = MusicLM(cfg).eval()
    if cfg.tempo:  # as after training: the zero init would make the tempo invisible
        torch.nn.init.normal_(lm.tempo_proj.weight)
    return lm


def conditioning(lm: MusicLM, B: int = 2, L: int = 5):
    text = torch.randn(B, L, lm.cfg.cond_dim)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 3:] = 0  # a shorter second prompt
    chroma = torch.nn.functional.one_hot(torch.randint(0, 12, (B, 9)), 12).float() if lm.cfg.chroma else None
    return lm.condition(text, mask, chroma, torch.tensor([96.0, math.nan])[:B], torch.tensor([0.7, 0.0])[:B], 50)


MELODY = {"cross_attention": False, "chroma": True, "chroma_length": 20}


@pytest.mark.parametrize("kind", ["cross", "cross_unmasked", "melody", "melody_tempo"])
def test_cached_decode_equals_full_forward(kind):
    kw = {"cross": {}, "cross_unmasked": {"mask_text_padding": False}, "melody": MELODY,
          "melody_tempo": {**MELODY, "tempo": True}}[kind]
    lm = tiny_lm(**kw)
    ctx = conditioning(lm)
    seq = torch.randint(0, lm.cfg.card + 1, (2, lm.cfg.n_q, 12))
    with torch.no_grad():
        full = lm(seq, ctx)  # [B, K, S, card]
        cache = lm.new_cache(2, ctx.prefix_len + 12)
        steps = [lm(seq[..., :3], ctx, cache, start=0)]  # a 3-step prefill, then single steps
        steps += [lm(seq[..., s:s + 1], ctx, cache, start=s) for s in range(3, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["cross", "melody", "melody_tempo"])
def test_static_step_equals_full_forward(kind):
    """The graph-capturable step (whole oversized cache + mask, position as a tensor) after a prefill."""
    kw = {"cross": {}, "melody": MELODY, "melody_tempo": {**MELODY, "tempo": True}}[kind]
    lm = tiny_lm(**kw)
    ctx = conditioning(lm)
    seq = torch.randint(0, lm.cfg.card + 1, (2, lm.cfg.n_q, 12))
    with torch.no_grad():
        full = lm(seq, ctx)
        cache = [(k.normal_(), v.normal_()) for k, v in lm.new_cache(2, ctx.prefix_len + 40)]  # stale entries
        steps = [lm(seq[..., :3], ctx, cache, start=0)]
        pos = torch.tensor([ctx.prefix_len + 3])
        for s in range(3, 12):
            steps.append(lm.step(seq[..., s:s + 1], ctx, cache, pos)[:, :, None])
            pos += 1
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=0)


def test_multi_step_chunk_after_cache():
    lm = tiny_lm()
    ctx = conditioning(lm)
    seq = torch.randint(0, lm.cfg.card + 1, (2, lm.cfg.n_q, 10))
    with torch.no_grad():
        full = lm(seq, ctx)
        cache = lm.new_cache(2, 10)
        out = torch.cat([lm(seq[..., :4], ctx, cache, 0), lm(seq[..., 4:10], ctx, cache, 4)], dim=2)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=0)


def test_cache_is_preallocated_and_written_in_place():
    lm = tiny_lm()
    ctx = conditioning(lm)
    cache = lm.new_cache(2, 8)
    pointers = [(k.data_ptr(), v.data_ptr()) for k, v in cache]
    with torch.no_grad():
        for s in range(8):
            lm(torch.randint(0, lm.cfg.card, (2, lm.cfg.n_q, 1)), ctx, cache, start=s)
    assert [(k.data_ptr(), v.data_ptr()) for k, v in cache] == pointers
    assert all(k.shape[2] == 8 and k[:, :, 7].abs().sum() > 0 for k, _ in cache)


@pytest.mark.parametrize("melody", [False, True])
def test_cfg_coef_one_equals_conditional(melody):
    """The batch-2 CFG forward keeps rows independent: coef 1 gives the conditional logits."""
    kw = MELODY if melody else {}
    lm = tiny_lm(**kw)
    B, L = 2, 5
    text, mask = torch.randn(B, L, lm.cfg.cond_dim), torch.ones(B, L, dtype=torch.long)
    chroma = torch.nn.functional.one_hot(torch.randint(0, 12, (B, 9)), 12).float() if melody else None
    seq = torch.randint(0, lm.cfg.card + 1, (B, lm.cfg.n_q, 6))
    with torch.no_grad():
        cond = lm(seq, lm.condition(text, mask, chroma))
        both_ctx = lm.condition(torch.cat([text, torch.zeros_like(text)]), torch.cat([mask, 0 * mask]),
                                None if chroma is None else torch.cat([chroma, chroma]))
        c, u = lm(torch.cat([seq, seq]), both_ctx).chunk(2)
    torch.testing.assert_close(u + (c - u) * 1.0, cond, atol=1e-5, rtol=0)
    assert not torch.allclose(u, c)


def test_tempo_conditioning():
    """A stated BPM changes the logits; an unknown one (NaN) equals no tempo at all and equals the same weights
    without a tempo projection, and so does a fresh (zero) projection, so warm starts begin unchanged."""
    lm = tiny_lm(**MELODY, tempo=True)
    plain = MusicLM(dataclasses.replace(lm.cfg, tempo=False)).eval()
    plain.load_state_dict({k: v for k, v in lm.state_dict().items() if k != "tempo_proj.weight"})
    B, L = 3, 5
    text, mask = torch.randn(B, L, lm.cfg.cond_dim), torch.ones(B, L, dtype=torch.long)
    chroma = torch.nn.functional.one_hot(torch.randint(0, 12, (B, 9)), 12).float()
    seq = torch.randint(0, lm.cfg.card + 1, (B, lm.cfg.n_q, 6))
    with torch.no_grad():
        def logits(model, bpm=None):
            return model(seq, model.condition(text, mask, chroma, bpm, frame_rate=50))

        base = logits(plain)
        torch.testing.assert_close(logits(lm, torch.full((B,), math.nan)), base, atol=0, rtol=0)
        torch.testing.assert_close(logits(lm), base, atol=0, rtol=0)
        stated = logits(lm, torch.tensor([96.0, 100.0, math.nan]))
        assert not torch.allclose(stated[0], base[0]) and not torch.allclose(stated[0], stated[1])
        torch.testing.assert_close(stated[2], base[2], atol=1e-6, rtol=0)
        lm.reset_parameters()
        plain.load_state_dict({k: v for k, v in lm.state_dict().items() if k != "tempo_proj.weight"})
        torch.testing.assert_close(logits(lm, torch.tensor([96.0, 100.0, 60.0])), logits(plain), atol=0, rtol=0)


@pytest.mark.parametrize("text, bpm", [("folk at 96 BPM.", 96.0), ("Tempo: 72 bpm", 72.0), ("120bpm techno", 120.0),
                                       ("a 96.5 BPM groove", 96.5), ("3 bpm", None), ("1200 BPM", None),
                                       ("a slow ballad", None), (None, None), ("a 2x120 bpms", None)])
def test_parse_bpm(text, bpm):
    assert parse_bpm(text) == bpm


def test_tempo_features():
    """Zero for an unknown tempo; the rate part is constant over steps; the grid repeats every beat (every 4 beats for
    the slowest rates): at 120 BPM and 50 frames/s, every 25 steps; t0 shifts it like steps do."""
    steps, bpm = torch.arange(0, 200), torch.tensor([120.0, math.nan, 60.0])
    f = tempo_features(bpm, torch.zeros(3), steps, 50)
    assert f.shape == (3, 200, N_FEATURES) and f[1].abs().max() == 0
    rate, grid = f[..., :2 * N_FREQS], f[..., 2 * N_FREQS:].unflatten(-1, (2, len(BEAT_RATES)))  # [B, S, cos|sin, R]
    assert torch.equal(rate[0], rate[0, :1].expand(200, -1)) and not torch.allclose(rate[0], rate[2])
    per_beat = torch.tensor(BEAT_RATES) >= 1  # rates with whole cycles in a beat
    torch.testing.assert_close(grid[0, 100:200], grid[0, :100], atol=1e-4, rtol=0)  # 120 BPM: 4 beats = 100 steps
    torch.testing.assert_close(grid[0, 25:125, :, per_beat], grid[0, :100, :, per_beat], atol=1e-4, rtol=0)
    assert not torch.allclose(grid[0, 25:125, :, ~per_beat], grid[0, :100, :, ~per_beat], atol=1e-2)
    torch.testing.assert_close(grid[2, 50:150, :, per_beat], grid[2, :100, :, per_beat], atol=1e-4, rtol=0)  # 60
    shifted = tempo_features(bpm, torch.full((3,), 0.3), steps[:100], 50)  # 0.3 s later = 15 steps
    torch.testing.assert_close(shifted, f[:, 15:115], atol=1e-4, rtol=0)
    assert grid[0, 0, 0].allclose(torch.ones(len(BEAT_RATES)))  # cos = 1 on the downbeat


def test_null_text_gives_zero_cross_attention():
    lm = tiny_lm()
    ctx = lm.condition(torch.randn(1, 4, lm.cfg.cond_dim), torch.zeros(1, 4, dtype=torch.long))
    assert all(k.abs().max() == 0 and v.abs().max() == 0 for k, v in ctx.cross_kv)


@pytest.mark.parametrize("matvec", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9, 16])
@pytest.mark.parametrize("k", [64, 3000])
def test_decode_linear_equals_f_linear(rows, k, matvec, monkeypatch):
    """Every path of `linear` (matrix-vector kernels for few rows where they pay, F.linear otherwise), with
    non-contiguous inputs and gradients."""
    monkeypatch.setattr(fast_linear, "_MATVEC", matvec)
    torch.manual_seed(rows)
    w = torch.randn(48, k, requires_grad=True)
    x = torch.randn(k, rows).t().reshape(rows, 1, k)  # rows that are not contiguous
    x.requires_grad_(True)
    y = linear(x, w)
    assert y.shape == (rows, 1, 48) and y.is_contiguous()
    torch.testing.assert_close(y, torch.nn.functional.linear(x, w), rtol=1e-5, atol=1e-4)
    g = torch.randn(rows, 1, 48)
    gx, gw = torch.autograd.grad((y * g).sum(), (x, w))
    rx, rw = torch.autograd.grad((torch.nn.functional.linear(x, w) * g).sum(), (x, w))
    torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 3, 8, 9])
def test_blocked_linear_equals_f_linear_and_keeps_its_state_dict_layout(rows):
    torch.manual_seed(rows)
    layer = Linear(3 * BLOCK, 40)
    ref = torch.nn.Linear(3 * BLOCK, 40)
    ref.load_state_dict(layer.state_dict())
    block_wide_inputs(layer)
    assert layer.weight.shape == (3, 40, BLOCK) and layer.weight.is_contiguous()
    x = torch.randn(rows, 1, 3 * BLOCK, requires_grad=True)
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-4)
    g = torch.randn(rows, 1, 40)
    torch.testing.assert_close(torch.autograd.grad((layer(x) * g).sum(), x)[0],
                               torch.autograd.grad((ref(x) * g).sum(), x)[0], rtol=1e-5, atol=1e-4)
    sd = layer.state_dict()
    assert torch.equal(sd["weight"], ref.weight.detach())  # [N, K] as saved by and loaded into nn.Linear
    fresh = Linear(3 * BLOCK, 40)
    block_wide_inputs(fresh)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.weight, layer.weight)


def test_the_faster_layout_is_measured_once(monkeypatch):
    monkeypatch.setattr(fast_linear, "_MATVEC", None)
    choice = fast_linear.matvec_pays()
    assert isinstance(choice, bool) and fast_linear._MATVEC is choice
    monkeypatch.setattr(fast_linear, "_MATVEC", not choice)
    assert fast_linear.matvec_pays() is (not choice)  # not measured again


def test_block_wide_inputs_only_touches_wide_linears():
    torch.manual_seed(0)
    lm = MusicLM(LMConfig(dim=64, num_heads=4, num_layers=2, ffn_dim=3 * BLOCK, card=32, cond_dim=24)).eval()
    seq = torch.randint(0, 32, (2, 4, 6))
    ctx = conditioning(lm)
    before, sd = lm(seq, ctx), lm.state_dict()
    block_wide_inputs(lm)
    assert [n for n, p in lm.named_parameters() if p.dim() == 3 and n.startswith("layers.")] == [
        f"layers.{i}.linear2.weight" for i in range(2)]
    torch.testing.assert_close(lm(seq, ctx), before, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(v, sd[k]) for k, v in lm.state_dict().items())


def test_sinusoidal_matches_transformers():
    from transformers.models.musicgen.modeling_musicgen import MusicgenSinusoidalPositionalEmbedding

    ref = MusicgenSinusoidalPositionalEmbedding(300, 64).weights
    torch.testing.assert_close(sinusoidal_embedding(torch.arange(300), 64), ref, atol=0, rtol=0)


@pytest.mark.parametrize("name, millions", [("small", 420.4), ("medium", 1839.0), ("large", 3257.0),
                                            ("melody", 1386.0), ("melody-large", 2451.0)])
def test_official_sizes_have_the_reference_parameter_counts(name, millions):
    from musicgen_core.configs import get_config

    with torch.device("meta"):
        lm = MusicLM(get_config(name).lm)
    assert sum(p.numel() for p in lm.parameters()) / 1e6 == pytest.approx(millions, abs=1.0)


def test_official_codec_parameter_count():
    from musicgen_core.codec import Codec
    from musicgen_core.configs import CodecConfig

    with torch.device("meta"):
        codec = Codec(CodecConfig())
    assert sum(p.numel() for p in codec.parameters()) / 1e6 == pytest.approx(56.88, abs=0.01)
