"""Exact parity with transformers' MusicGen and MusicGen-Melody (greedy codes with CFG 3, decoded audio)."""
from __future__ import annotations

import pytest
import torch

from musicgen_core import MusicGen

PROMPTS = ["an upbeat folk song with fiddle", "dark ambient drone"]


def hf_greedy(model, tokenizer, prompts, frames, **extra):
    """transformers' generate(do_sample=False, guidance_scale=3) -> (codes [B, K, F], audio [B, C, T]); stereo
    models decode the left and the right codebooks in two calls, interleaved back here (L0, R0, L1, ...)."""
    seen = []
    decode = model.audio_encoder.decode

    def spy(codes, *a, **kw):
        seen.append(codes[0].clone())
        return decode(codes, *a, **kw)

    model.audio_encoder.decode = spy
    delays = model.decoder.config.num_codebooks // model.decoder.config.audio_channels
    try:
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, return_token_type_ids=False)
        with torch.no_grad():
            audio = model.generate(**inputs, **extra, do_sample=False, guidance_scale=3.0,
                                   max_new_tokens=frames + delays - 1)
    finally:
        model.audio_encoder.decode = decode
    return torch.stack(seen, dim=2).flatten(1, 2), audio  # [B, K, C, F] -> [B, K * C, F]


def ours_greedy(ours, prompts, duration, **kw):
    settings = dict(duration=duration, use_sampling=False, cfg_coef=3.0, return_tokens=True)
    if "melody" in kw:
        return ours.generate_with_chroma(prompts, kw["melody"], 32000, **settings)
    return ours.generate(prompts, **settings)


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS])
@pytest.mark.parametrize("duration", [0.2, 0.5])
def test_musicgen_greedy_matches_transformers(hf_musicgen_dir, bert_tokenizer, prompts, duration):
    hf, folder = hf_musicgen_dir
    ours = MusicGen.from_pretrained(folder, device="cpu")
    frames = int(duration * ours.frame_rate)
    hf_codes, hf_audio = hf_greedy(hf, bert_tokenizer, prompts, frames)
    wav, codes = ours_greedy(ours, prompts, duration)
    assert codes.shape == (len(prompts), 4, frames)
    assert torch.equal(codes, hf_codes)
    assert wav.shape == hf_audio.shape
    torch.testing.assert_close(wav, hf_audio, atol=1e-4, rtol=0)


@pytest.mark.parametrize("duration", [0.3, 0.6])
def test_melody_greedy_matches_transformers(hf_melody_dir, bert_tokenizer, duration):
    from transformers import MusicgenMelodyFeatureExtractor

    hf, folder = hf_melody_dir
    ours = MusicGen.from_pretrained(folder, device="cpu")
    t = torch.arange(3 * 32000) / 32000
    melody = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (261.6, 392.0)])[:, None]  # C4 and G4, 3 s
    features = MusicgenMelodyFeatureExtractor()(melody[:, 0].numpy(), sampling_rate=32000, return_tensors="pt")
    frames = int(duration * ours.frame_rate)
    hf_codes, hf_audio = hf_greedy(hf, bert_tokenizer, PROMPTS, frames, input_features=features["input_features"])
    wav, codes = ours_greedy(ours, PROMPTS, duration, melody=melody)
    assert torch.equal(codes, hf_codes)
    torch.testing.assert_close(wav, hf_audio, atol=1e-4, rtol=0)


def test_melody_model_without_melody_matches_transformers(hf_melody_dir, bert_tokenizer):
    hf, folder = hf_melody_dir
    ours = MusicGen.from_pretrained(folder, device="cpu")
    hf_codes, _ = hf_greedy(hf, bert_tokenizer, PROMPTS[:1], 12)
    _, codes = ours_greedy(ours, PROMPTS[:1], 12 / 50)
    assert torch.equal(codes, hf_codes)


def test_same_seed_same_sample(hf_musicgen_dir):
    _, folder = hf_musicgen_dir
    ours = MusicGen.from_pretrained(folder, device="cpu")
    a = ours.generate(PROMPTS, seed=1234, duration=0.3, top_k=50)
    b = ours.generate(PROMPTS, seed=1234, duration=0.3, top_k=50)
    c = ours.generate(PROMPTS, seed=4321, duration=0.3, top_k=50)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("duration", [0.2, 0.5])
def test_stereo_greedy_matches_transformers(hf_stereo_dir, bert_tokenizer, duration):
    hf, folder = hf_stereo_dir
    ours = MusicGen.from_pretrained(folder, device="cpu")
    assert ours.audio_channels == 2
    frames = int(duration * ours.frame_rate)
    hf_codes, hf_audio = hf_greedy(hf, bert_tokenizer, PROMPTS, frames)
    wav, codes = ours_greedy(ours, PROMPTS, duration)
    assert codes.shape == (2, 8, frames) and wav.shape == (2, 2, frames * 640)
    assert torch.equal(codes, hf_codes)
    torch.testing.assert_close(wav, hf_audio, atol=1e-4, rtol=0)
    left = ours.codec.decode(codes[:, 0::2])  # the left channel is the mono codec's decoding of codes[:, 0::2]
    torch.testing.assert_close(wav[:, :1], left, atol=1e-5, rtol=0)


def test_stereo_continuation_matches_transformers(hf_stereo_dir, bert_tokenizer):
    hf, folder = hf_stereo_dir
    ours = MusicGen.from_pretrained(folder, device="cpu")
    torch.manual_seed(0)
    prompt = torch.randn(2, 2, 6400) * 0.1  # 0.2 s of stereo -> 10 frames
    hf_codes, _ = hf_greedy(hf, bert_tokenizer, PROMPTS, 10, input_values=prompt)
    _, codes = ours.generate_continuation(prompt, 32000, PROMPTS, return_tokens=True, use_sampling=False,
                                          duration=hf_codes.shape[-1] / 50)
    assert torch.equal(codes[..., :10], ours.compression_model.encode(prompt))
    assert torch.equal(codes, hf_codes)


def test_stereo_melody_matches_transformers(hf_stereo_melody_dir, bert_tokenizer):
    from transformers import MusicgenMelodyFeatureExtractor

    hf, folder = hf_stereo_melody_dir
    ours = MusicGen.from_pretrained(folder, device="cpu")
    t = torch.arange(2 * 32000) / 32000
    melody = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (261.6, 392.0)])[:, None]
    features = MusicgenMelodyFeatureExtractor()(melody[:, 0].numpy(), sampling_rate=32000, return_tensors="pt")
    hf_codes, hf_audio = hf_greedy(hf, bert_tokenizer, PROMPTS, 12, input_features=features["input_features"])
    wav, codes = ours_greedy(ours, PROMPTS, 12 / 50, melody=melody)
    assert codes.shape == (2, 8, 12) and torch.equal(codes, hf_codes)
    torch.testing.assert_close(wav, hf_audio, atol=1e-4, rtol=0)
