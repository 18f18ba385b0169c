"""Exact parity with transformers' MusicGen and MusicGen-Melody (greedy codes with CFG 3, decoded audio)."""
from __future__ import annotations

import pytest
import torch

from musicgen_core import MusicGen

PROMPTS = ["an upbeat folk song with fiddle", "dark ambient drone"]


def hf_greedy(model, tokenizer, prompts, frames, **extra):
    """transformers' generate(do_sample=False, guidance_scale=3) -> (codes [B, K, F], audio [B, 1, T])."""
    seen = {}
    decode = model.audio_encoder.decode

    def spy(codes, *a, **kw):
        seen["codes"] = codes[0].clone()
        return decode(codes, *a, **kw)

    model.audio_encoder.decode = spy
    try:
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, return_token_type_ids=False)
        with torch.no_grad():
            audio = model.generate(**inputs, **extra, do_sample=False, guidance_scale=3.0,
                                   max_new_tokens=frames + model.decoder.config.num_codebooks - 1)
    finally:
        model.audio_encoder.decode = decode
    return seen["codes"], audio


def ours_greedy(ours, prompts, duration, **kw):
    ours.set_generation_params(duration=duration, use_sampling=False, cfg_coef=3.0)
    if "melody" in kw:
        return ours.generate_with_chroma(prompts, kw["melody"], 32000, return_tokens=True)
    return ours.generate(prompts, return_tokens=True)


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
    ours.set_generation_params(duration=0.3, top_k=50)
    a = ours.generate(PROMPTS, seed=1234)
    b = ours.generate(PROMPTS, seed=1234)
    c = ours.generate(PROMPTS, seed=4321)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
