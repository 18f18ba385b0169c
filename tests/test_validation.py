"""The validation layer shared by the demo, the CLI and the library's users: a bad-input matrix of real files and
property-based tests of the audio and parameter checks."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from musicgen_core import validation as v
from musicgen_core.cli import main

SR = 32000


def tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)], 1).astype(np.float32)


def write(path, data, sr=SR, subtype=None):
    sf.write(str(path), data, sr, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    good = write(d / "good.wav", tone(2.0), subtype="PCM_16")
    (d / "empty.wav").write_bytes(b"")
    (d / "truncated.wav").write_bytes(good.read_bytes()[:30])
    (d / "text.wav").write_bytes(b"this is not audio, only text pretending to be a WAV file\n" * 50)
    (d / "random.mp3").write_bytes(np.random.default_rng(0).bytes(20000))
    (d / "huge.wav").write_bytes(b"\0" * (v.MAX_FILE_MB * 2**20 + 1))
    nan = tone(2.0)
    nan[100] = np.nan
    return {
        "good": good, "empty": d / "empty.wav", "truncated": d / "truncated.wav", "text": d / "text.wav",
        "random": d / "random.mp3", "huge": d / "huge.wav",
        "nan": write(d / "nan.wav", nan, subtype="FLOAT"),
        "silent": write(d / "silent.wav", np.zeros((SR, 1), np.float32)),
        "short": write(d / "short.wav", tone(0.2)),
        "ten_minutes": write(d / "ten_minutes.wav", tone(600, 8000), 8000, "PCM_16"),
        "8ch": write(d / "8ch.wav", tone(2.0, channels=8)),
        "8k": write(d / "8k.wav", tone(2.0, 8000), 8000),
        "192k": write(d / "192k.wav", tone(2.0, 192000), 192000),
        "24bit": write(d / "24bit.wav", tone(2.0), subtype="PCM_24"),
        "float32": write(d / "float32.wav", tone(2.0), subtype="FLOAT"),
        "flac": write(d / "flac.flac", tone(2.0)),
    }


@pytest.mark.parametrize("name, message", [
    ("empty", r"^empty.wav is empty \(0 bytes\)"),
    ("truncated", r"^Could not read truncated.wav as audio"),
    ("text", r"^Could not read text.wav as audio"),
    ("random", r"^Could not read random.mp3 as audio"),
    ("huge", r"^huge.wav is 20.0 MB; the limit is 20 MB"),
    ("nan", r"^The melody contains invalid samples \(NaN or infinity\)"),
    ("silent", r"^The melody is silent \(all samples are zero\)"),
    ("short", r"^The melody is too short \(0.20 s\)"),
    ("ten_minutes", r"^The melody is too long \(600 s\); the limit is 180 s"),
])
def test_bad_files_are_rejected_with_a_specific_message(files, name, message):
    with pytest.raises(v.InputError, match=message):
        v.read_audio(files[name])


@pytest.mark.parametrize("name, channels, sr", [("good", 1, SR), ("8ch", 8, SR), ("8k", 1, 8000),
                                                ("192k", 1, 192000), ("24bit", 1, SR), ("float32", 1, SR),
                                                ("flac", 1, SR)])
def test_unusual_but_valid_files_are_accepted(files, name, channels, sr):
    wav, rate, notes = v.read_audio(files[name])
    assert rate == sr and wav.shape == (channels, 2 * sr) and wav.dtype == torch.float32 and notes == []
    assert abs(float(wav[0].abs().max()) - 0.3) < 1e-3


def test_cli_reports_bad_inputs_before_loading_a_model(files, capsys):
    for argv, message in [(["--prompt", " "], "prompt is empty"),
                          (["--prompt", "jazz", "--duration", "-1"], "Duration must be between 0.1 and inf"),
                          (["--prompt", "jazz", "--cfg-coef", "1000"], "guidance must be between 0 and 20"),
                          (["--prompt", "jazz", "--temperature", "nan"], "Temperature must be a finite number"),
                          (["--prompt", "jazz", "--melody", str(files["empty"])], "empty.wav is empty"),
                          (["--prompt", "jazz", "--continue-from", str(files["silent"])],
                           "The audio to continue is silent")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", "--model", "no/such/folder", *argv])
        assert message in str(exit_info.value)


# --- property-based ---------------------------------------------------------------------------------------------
audio_shapes = st.tuples(st.integers(1, 8), st.sampled_from([8000, 16000, 22050, 44100, 48000, 96000, 192000]),
                         st.floats(0.5, 3.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(audio_shapes, st.floats(0.01, 20.0), st.integers(0, 2**32 - 1))
def test_valid_audio_comes_back_finite_and_within_full_scale(shape, gain, seed):
    channels, sr, seconds = shape
    wav = np.random.default_rng(seed).standard_normal((channels, int(seconds * sr))).astype(np.float32) * gain
    out, notes = v.check_audio(wav, sr)
    assert out.shape == wav.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert float(out.abs().max()) <= 1.0 + 1e-6
    assert bool(notes) == (np.mean(np.abs(wav) >= 0.999) > 0.001)  # clipping is reported, never silently


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([np.int16, np.int32, np.uint8]), st.integers(0, 2**32 - 1))
def test_integer_pcm_is_scaled_to_unit_range(dtype, seed):
    info = np.iinfo(dtype)
    pcm = np.random.default_rng(seed).integers(info.min, info.max, 16000, endpoint=True).astype(dtype)
    out, _ = v.check_audio(pcm, 16000)
    assert -1.0 <= float(out.min()) and float(out.max()) <= 1.0


@settings(max_examples=60, deadline=None)
# no subnormal floats: the trainers' tests turn on flush-to-zero (torch.set_flush_denormal) for the whole process
@given(st.lists(st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.integers(-10**6, 10**6),
                          st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)),
                 min_size=4, max_size=4))
def test_sampling_parameters_are_cleaned_or_rejected_never_crash(values):
    try:
        out = v.check_sampling(*values)
    except v.InputError as e:
        assert str(e).endswith(".") and len(str(e)) < 200
        return
    for name, (low, high, _) in v.SAMPLING_RANGES.items():
        assert low <= out[name] <= high
    assert isinstance(out["top_k"], int)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=v.MAX_PROMPT_CHARS))
def test_any_prompt_within_the_limit_is_kept(text):
    if not text.strip():
        with pytest.raises(v.InputError, match="prompt is empty"):
            v.check_prompt(text)
    else:
        assert v.check_prompt(text) == text.strip()
