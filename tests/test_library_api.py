"""The library as audiocraft's users expect it: per-call settings, audiocraft's defaults and seeding, its README
example unchanged (two imports aside), and every public method's boundary with the demo's messages."""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
import soundfile as sf
import torch
from huggingface_hub import constants
from hypothesis import HealthCheck, given, settings, strategies as st

from hub_cache import build_hub_cache
from musicgen_core import GenerationParams, MusicGen, load_audio
from musicgen_core.cli import main as cli
from musicgen_core.validation import InputError
from test_generate import short_windows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(hf_musicgen_dir) -> MusicGen:
    return MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu")


def test_audiocraft_defaults_and_settings(hf_musicgen_dir):
    model = MusicGen.from_pretrained(hf_musicgen_dir[1], device="cpu")  # a model of its own: defaults change here
    assert (model.duration, model.max_duration, model.sample_rate, model.frame_rate, model.audio_channels) == \
        (15.0, 30.0, 32000, 50, 1)  # audiocraft's constructor sets 15 s
    model.set_generation_params(use_sampling=False, top_k=10, top_p=0.5, temperature=0.7, duration=0.2,
                                cfg_coef=2.0, cfg_coef_beta=None, two_step_cfg=True, extend_stride=18)
    assert model.params == GenerationParams(0.2, False, 10, 0.5, 0.7, 2.0, 18, True)
    model.set_generation_params(duration=0.1)  # the rest back to audiocraft's defaults
    assert model.params == GenerationParams(duration=0.1)
    with pytest.raises(ValueError, match=r"cfg_coef_beta \(MusicGen-Style's double classifier-free guidance\) is "
                                         r"not supported"):
        model.set_generation_params(cfg_coef_beta=5.0)
    two_step = model.generate(["x"], seed=0, return_tokens=True, two_step_cfg=True)[1]
    assert torch.equal(two_step, model.generate(["x"], seed=0, return_tokens=True)[1])


def test_torch_manual_seed_reproduces_a_call(model):
    torch.manual_seed(7)
    a = model.generate(["rock"], duration=0.2)
    seed_a = model.last_seed
    torch.manual_seed(7)
    assert torch.equal(a, model.generate(["rock"], duration=0.2)) and model.last_seed == seed_a
    assert torch.equal(a, model.generate(["rock"], duration=0.2, seed=seed_a))
    assert not torch.equal(a, model.generate(["rock"], duration=0.2))


def test_call_settings_do_not_change_the_model(model):
    before = model.params
    model.generate(["x"], duration=0.1, top_k=3, temperature=0.5)
    model.generate(["x"], params=GenerationParams(duration=0.1, use_sampling=False))
    assert model.params == before
    with pytest.raises(TypeError, match="unknown generation setting.*topk"):
        model.generate(["x"], topk=3)


def test_concurrent_calls_with_different_settings_get_their_own_results(model):
    jobs = {"greedy": dict(duration=0.3, use_sampling=False), "sampled": dict(duration=0.2, top_k=5, seed=3),
            "melodic": dict(duration=0.4, temperature=0.5, cfg_coef=1.0, seed=4)}
    alone = {name: model.generate(["jazz"], return_tokens=True, **kw)[1] for name, kw in jobs.items()}
    together, barrier = {}, threading.Barrier(len(jobs))

    def run(name):
        barrier.wait()
        together[name] = model.generate(["jazz"], return_tokens=True, **jobs[name])[1]

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in jobs:
        assert torch.equal(together[name], alone[name]), name


@pytest.mark.slow
def test_audiocraft_readme_example(hf_melody_dir, tmp_path, monkeypatch):
    """audiocraft's README example with its imports swapped (and the melody read without torchaudio's I/O)."""
    build_hub_cache(tmp_path / "hub", "facebook/musicgen-melody", {p.name: p for p in hf_melody_dir[1].iterdir()})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    from musicgen_core import MusicGen, audio_write  # noqa: F811 (the example's own imports)

    model = MusicGen.get_pretrained('facebook/musicgen-melody')
    model.set_generation_params(duration=8)  # generate 8 seconds.
    wav = model.generate_unconditional(4)    # generates 4 unconditional audio samples
    assert wav.shape == (4, 1, 8 * 32000)
    descriptions = ['happy rock', 'energetic EDM', 'sad jazz']
    wav = model.generate(descriptions)  # generates 3 samples.

    melody, sr = load_audio(ROOT / "assets/examples/twinkle_whistle.wav")
    # generates using the melody from the given audio and the provided descriptions.
    wav = model.generate_with_chroma(descriptions, melody[None].expand(3, -1, -1), sr)

    for idx, one_wav in enumerate(wav):
        # Will save under {idx}.wav, with loudness normalization at -14 db LUFS.
        audio_write(f'{idx}', one_wav.cpu(), model.sample_rate, strategy="loudness")
    for idx in range(3):
        data, rate = sf.read(tmp_path / f"{idx}.wav")
        assert rate == 32000 and data.shape == (8 * 32000,)


# --- the public boundary: what a user can pass wrong, and what they are told ----------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda m: m.generate([]), r"descriptions is empty: pass a list with at least one description \(None for no "
                               r"text\)\."),
    (lambda m: m.generate([3]), r"descriptions must be strings or None, got int\."),
    (lambda m: m.generate(["x"], duration=0), r"Duration must be a positive number of seconds, got 0\."),
    (lambda m: m.generate(["x"], duration=-1), r"Duration must be a positive number of seconds, got -1\."),
    (lambda m: m.generate(["x"], duration=float("nan")), r"Duration must be a finite number, got nan\."),
    (lambda m: m.generate(["x"], temperature=-1), r"Temperature must be between 0 and 5 \(default 1\), got -1\."),
    (lambda m: m.generate(["x"], top_k=-1), r"Top-k must be between 0 and 2048 \(default 250\), got -1\."),
    (lambda m: m.generate(["x"], top_k=2.5), r"Top-k must be a whole number, got 2\.5\."),
    (lambda m: m.generate(["x"], top_p=1.5), r"Top-p must be between 0 and 1 \(default 0\), got 1\.5\."),
    (lambda m: m.generate(["x"], cfg_coef=float("nan")), r"Classifier-free guidance must be a finite number, got "
                                                         r"nan\."),
    (lambda m: m.generate(["x"], duration=40, extend_stride=40), r"extend_stride must be between 0 and the model's "
                                                                 r"max_duration \(30 s\) for durations above it, got "
                                                                 r"40\."),
    (lambda m: m.generate_unconditional(0), r"num_samples must be a whole number >= 1, got 0"),
    (lambda m: m.generate_continuation(torch.full((1, 1, 3200), float("nan")), 32000),
     r"The audio to continue contains invalid samples \(NaN or infinity\)"),
    (lambda m: m.generate_continuation(torch.zeros(1, 1, 3200), 7), r"The audio to continue has an unsupported "
                                                                    r"sample rate \(7 Hz\)"),
    (lambda m: m.generate_continuation(torch.zeros(1, 1, 0), 32000), r"The audio to continue is empty"),
    (lambda m: m.generate_continuation(torch.zeros(1, 1, 32000 * 3), 32000, duration=2),
     r"The audio to continue is 3\.00 s long: set the duration to at least 3 s, or trim the audio\."),
])
def test_bad_calls_say_what_is_wrong(model, call, message):
    with pytest.raises(InputError, match=message):
        call(model)


def test_nan_melody_is_refused(hf_melody_dir):
    melody_model = MusicGen.from_pretrained(hf_melody_dir[1], device="cpu")
    bad = torch.ones(1, 32000)
    bad[0, 5] = float("nan")
    with pytest.raises(InputError, match=r"The melody contains invalid samples \(NaN or infinity\)"):
        melody_model.generate_with_chroma(["x"], [bad], 32000, duration=0.1)


def test_a_5000_word_prompt_is_truncated_with_a_warning(model):
    with pytest.warns(UserWarning, match="longer than the text encoder's 512 tokens: only its first 512 tokens"):
        wav = model.generate([" ".join(["music"] * 5000), "short"], duration=0.1, seed=0)
    assert wav.shape == (2, 1, 5 * 640)


def test_continuation_longer_than_the_window(model):
    """An 11 s recording continued to 12 s by a model with a 10 s window (audiocraft's windows: keep what fits)."""
    short = short_windows(model, max_duration=1.0)  # the same, scaled down: 1.1 s prompt, 1.2 s, 1 s window
    prompt = torch.randn(1, 1, int(1.1 * 32000)) * 0.1
    wav, codes = short.generate_continuation(prompt, 32000, ["folk"], return_tokens=True, duration=1.2, seed=0)
    assert codes.shape == (1, 4, 60) and wav.shape == (1, 1, 60 * 640)
    assert torch.equal(codes[..., :55], short.compression_model.encode(prompt))


@pytest.mark.slow
def test_cli_continues_a_long_mp3_with_the_default_model(tmp_path, capsys):
    t = torch.arange(int(10.05 * 32000)) / 32000
    sf.write(tmp_path / "long.mp3", (0.3 * torch.sin(2 * torch.pi * 220 * t)).numpy(), 32000)
    cli(["generate", "--continue-from", str(tmp_path / "long.mp3"), "--prompt", "calm piano", "--duration", "12",
         "--seed", "0", "--out", str(tmp_path / "out.wav")])
    data, rate = sf.read(tmp_path / "out.wav")
    assert rate == 32000 and abs(len(data) / rate - 12) < 0.05
    assert "seed=0" in capsys.readouterr().out


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(window=st.sampled_from([0.2, 0.3, 0.5]), prompt_frames=st.integers(0, 30), extra=st.integers(0, 25),
       batch=st.integers(1, 2), stride=st.sampled_from([None, 0.1]), stream=st.booleans())
def test_generation_over_prompts_durations_windows_and_batches(model, window, prompt_frames, extra, batch, stride,
                                                              stream):
    short = short_windows(model, max_duration=window)
    frames = max(1, prompt_frames + extra)
    p = GenerationParams(duration=frames / 50, use_sampling=False, extend_stride=stride)
    if stride is not None and stride >= window:
        p = dataclasses.replace(p, extend_stride=None)
    prompt = torch.randn(batch, 1, prompt_frames * 640) * 0.1 if prompt_frames else None
    if stream:
        pairs = list(short.stream(["a", "b"][:batch], prompt=prompt, prompt_sample_rate=32000, return_tokens=True,
                                  chunk_duration=0.1, params=p))
        wav, codes = torch.cat([w for w, _ in pairs], -1), torch.cat([c for _, c in pairs], -1)
    elif prompt is None:
        wav, codes = short.generate(["a", "b"][:batch], return_tokens=True, params=p)
    else:
        wav, codes = short.generate_continuation(prompt, 32000, ["a", "b"][:batch], return_tokens=True, params=p)
    frames = max(prompt_frames, 1, int(p.duration * 50))  # int(duration * frame_rate), as audiocraft
    assert codes.shape == (batch, 4, frames) and wav.shape == (batch, 1, frames * 640)
    assert ((codes >= 0) & (codes < 2048)).all() and torch.isfinite(wav).all()
    if prompt is not None:
        assert torch.equal(codes[..., :prompt_frames], short.compression_model.encode(prompt))
