"""The validation layer shared by the demo, the CLI and the library's users: a bad-input matrix of real files and
property-based tests of the audio and parameter checks."""
from __future__ import annotations

import re
import shutil
import subprocess
import warnings

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
    ("ten_minutes", r"^The melody is too long \(600 s\); the limit is 180 s \(3 min\): trim it first\.$"),
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


# --- each check's boundaries and messages ---------------------------------------------------------------------
def test_prompt_limits():
    with pytest.raises(v.InputError, match=r"^The prompt is empty: describe the music you want \(e\.g\. 'calm piano"):
        v.check_prompt(" \n ")
    assert v.check_prompt(None, required=False) is None and v.check_prompt("  ", required=False) is None
    assert v.check_prompt(" jazz ") == "jazz"
    assert v.check_prompt("x" * v.MAX_PROMPT_CHARS) == "x" * v.MAX_PROMPT_CHARS
    with pytest.raises(v.InputError, match=r"^The prompt is 1001 characters long; the limit is 1000\. Shorten it\.$"):
        v.check_prompt("x" * (v.MAX_PROMPT_CHARS + 1), required=False)


@pytest.mark.parametrize("value, message", [
    (None, r"^Duration is empty: enter a number\.$"), ("", r"^Duration is empty"), (" ", r"^Duration is empty"),
    (True, r"^Duration is empty"), ("ten", r"^Duration must be a number, got 'ten'\.$"),
    ([1], r"^Duration must be a number, got \[1\]\.$"),
    (float("inf"), r"^Duration must be a finite number, got inf\.$"),
    ("nan", r"^Duration must be a finite number, got nan\.$"),
    (0.99, r"^Duration must be between 1 and 120 seconds, got 0\.99\.$"),
    (120.5, r"^Duration must be between 1 and 120"),
])
def test_duration_rejections(value, message):
    with pytest.raises(v.InputError, match=message):
        v.check_duration(value)


def test_duration_bounds_are_inclusive_and_settable():
    assert v.check_duration(1) == 1.0 and v.check_duration("120") == 120.0 and isinstance(v.check_duration(5), float)
    assert v.check_duration(0.5, low=0.5, high=2) == 0.5 and v.check_duration(2, low=0.5, high=2) == 2
    with pytest.raises(v.InputError, match=r"^Duration must be between 0\.5 and 2 seconds, got 3\.$"):
        v.check_duration(3, low=0.5, high=2)


def test_seed_values():
    assert v.check_seed(None) is None and v.check_seed("") is None and v.check_seed("  ") is None
    assert v.check_seed(0) == 0 and v.check_seed("7") == 7 and v.check_seed(7.0) == 7
    assert v.check_seed(v.MAX_SEED) == v.MAX_SEED and type(v.check_seed("7")) is int
    for bad, shown in [(-1, "-1"), (v.MAX_SEED + 1, "2.14748e+09"), (2.5, "2.5")]:
        with pytest.raises(v.InputError, match=rf"^Seed must be a whole number between 0 and 2147483647 \(or empty "
                                               rf"for a random one\), got {re.escape(shown)}\.$"):
            v.check_seed(bad)
    with pytest.raises(v.InputError, match=r"^Seed must be a number, got 'x'\.$"):
        v.check_seed("x")


def test_sampling_bounds_defaults_and_types():
    assert v.check_sampling(0, 0, 0, 0) == {"top_k": 0, "top_p": 0.0, "temperature": 0.0, "cfg_coef": 0.0}
    high = v.check_sampling(2048, 1, 5, 20)
    assert high == {"top_k": 2048, "top_p": 1.0, "temperature": 5.0, "cfg_coef": 20.0}
    assert type(high["top_k"]) is int and type(v.check_sampling("3.0", 0, 1, 3)["top_k"]) is int
    for args, message in [((2049, 0, 1, 3), r"^Top-k must be between 0 and 2048 \(default 250\), got 2049\.$"),
                          ((-1, 0, 1, 3), r"^Top-k must be between 0 and 2048"),
                          ((2.5, 0, 1, 3), r"^Top-k must be a whole number, got 2\.5\.$"),
                          ((250, 1.01, 1, 3), r"^Top-p must be between 0 and 1 \(default 0\), got 1\.01\.$"),
                          ((250, 0, 5.5, 3), r"^Temperature must be between 0 and 5 \(default 1\), got 5\.5\.$"),
                          ((250, 0, 1, -0.1), r"^Classifier-free guidance must be between 0 and 20 \(default 3\), "
                                              r"got -0\.1\.$"),
                          ((250, 0, None, 3), r"^Temperature is empty: enter a number\.$")]:
        with pytest.raises(v.InputError, match=message):
            v.check_sampling(*args)


def test_descriptions_become_a_list():
    assert v.check_descriptions("jazz") == ["jazz"] and v.check_descriptions(None) == [None]
    assert v.check_descriptions(("a", None)) == ["a", None]
    with pytest.raises(v.InputError, match=r"^descriptions is empty: pass a list with at least one description \(None "
                                           r"for no text\)\.$"):
        v.check_descriptions([])
    with pytest.raises(v.InputError, match=r"^descriptions must be strings or None, got int\.$"):
        v.check_descriptions(["a", 3])


def test_generation_params_are_checked_and_cleaned():
    from musicgen_core.sampling import GenerationParams

    out = v.check_params(GenerationParams(duration="8", top_k=3.0, extend_stride=99), max_duration=10)
    assert out.duration == 8.0 and type(out.top_k) is int and out.extend_stride == 99  # stride unused below the window
    assert v.check_params(GenerationParams(duration=20, extend_stride=9.5), 10).extend_stride == 9.5
    for params, message in [(GenerationParams(duration=0), r"^Duration must be a positive number of seconds, got 0\.$"),
                            (GenerationParams(duration=20, extend_stride=10),
                             r"^extend_stride must be between 0 and the model's max_duration \(10 s\) for durations "
                             r"above it, got 10\.$"),
                            (GenerationParams(duration=20, extend_stride=0), r"^extend_stride must be between 0"),
                            (GenerationParams(duration=20, extend_stride="x"), r"^extend_stride must be a number"),
                            (GenerationParams(top_p=2), r"^Top-p must be between 0 and 1")]:
        with pytest.raises(v.InputError, match=message):
            v.check_params(params, max_duration=10)
    assert v.check_params(GenerationParams(duration=20), 10).extend_stride is None  # the model's default stride
    assert v.check_params(GenerationParams(duration=0.5), 10).duration == 0.5  # any positive length
    assert v.check_params(GenerationParams(duration=10, extend_stride=10), 10).duration == 10  # one window: unused
    assert v.check_params(GenerationParams(duration=20, extend_stride=0.5), 10).extend_stride == 0.5
    with pytest.raises(v.InputError, match=r"^Duration must be a number, got 'x'\.$"):
        v.check_params(GenerationParams(duration="x"), max_duration=10)


@pytest.mark.parametrize("rate, ok", [(1000, True), (384000, True), (np.int64(16000), True), (999, False),
                                      (384001, False), (True, False), (32000.0, False), ("32000", False)])
def test_sample_rates(rate, ok):
    wav = np.full(max(int(rate), 1000), 0.1, np.float32) if ok else np.full(32000, 0.1, np.float32)
    if ok:
        assert v.check_audio(wav, rate)[0].shape == (1, wav.size) and v.check_waveform(wav, rate).shape == (1, wav.size)
    else:
        for check in (v.check_audio, v.check_waveform):
            message = rf"^The melody has an unsupported sample rate \({re.escape(str(rate))} Hz\): use 8-192 kHz"
            with pytest.raises(v.InputError, match=message):
                check(wav, rate)


def test_waveforms_are_promoted_and_checked():
    out = v.check_waveform(np.zeros(5, np.float64), SR)
    assert out.shape == (1, 5) and out.dtype == torch.float32
    assert v.check_waveform([0.0, 1.0], SR, batched=True).shape == (1, 1, 2)
    assert v.check_waveform(torch.zeros(2, 3, 4, dtype=torch.int16), SR, batched=True).dtype == torch.float32
    for wav, batched, message in [
            (torch.zeros(1, 0), False, r"^The clip is empty \(0 samples\)\.$"),
            (torch.zeros(0, 5), False,
             r"^The clip has an unexpected shape \(0, 5\): expected \[channels, samples\]\.$"),
            (torch.zeros(1, 1, 5), False, r"^The clip has an unexpected shape \(1, 1, 5\)"),
            (torch.zeros(1, 1, 1, 5), True, r"expected \[batch, channels, samples\]\.$"),
            (torch.zeros(1, 1, 0), True, r"^The clip is empty \(0 samples\)\.$"),
            (torch.tensor([0.0, float("inf")]), False, r"^The clip contains invalid samples \(NaN or infinity\)"),
            (torch.tensor([0.0, float("nan")], requires_grad=True), False, r"^The clip contains invalid samples")]:
        with pytest.raises(v.InputError, match=message):
            v.check_waveform(wav, SR, what="The clip", batched=batched)


def test_audio_levels_lengths_and_formats():
    out, _ = v.check_audio(np.array([0, 128, 255] * 6000, np.uint8), 16000)
    assert out[0, :3].tolist() == [-1.0, 0.0, 127 / 128]  # unsigned PCM is centred on its mid-scale value
    out, _ = v.check_audio(np.array([-32768, 0, 16384] * 6000, np.int16), 16000)
    assert out[0, :3].tolist() == [-1.0, 0.0, 0.5]
    out, _ = v.check_audio(np.array([0, 16384, -8192] * 6000, np.int16), 16000)  # below full scale: not rescaled
    assert out[0, :3].tolist() == [0.0, 0.5, -0.25]
    out, _ = v.check_audio(np.array([128, 192, 96] * 6000, np.uint8), 16000)
    assert out[0, :3].tolist() == [0.0, 0.5, -0.25]
    grad = torch.full((2, 16000), 0.1, requires_grad=True)  # a tensor that autograd tracks is read as is
    assert torch.equal(v.check_audio(grad, 16000)[0], torch.full((2, 16000), 0.1))
    assert v.check_audio(tone(0.5)[:, 0], SR)[0].shape == (1, 16000)  # exactly the shortest
    assert v.check_audio(tone(180, 1000)[:, 0], 1000)[0].shape == (1, 180000)  # exactly the longest
    with pytest.raises(v.InputError, match=r"^The melody is not audio \(data type bool\)\.$"):
        v.check_audio(np.ones(SR, bool), SR)
    with pytest.raises(v.InputError, match=r"^The melody has an unexpected shape \(1, 1, 32000\): expected \[sam"):
        v.check_audio(np.ones((1, 1, SR), np.float32), SR)
    with pytest.raises(v.InputError, match=r"^The melody has an unexpected shape \(0, 32000\)"):
        v.check_audio(np.ones((0, SR), np.float32), SR)
    with pytest.raises(v.InputError, match=r"^The hum is silent \(-66 dBFS\): record closer to the microphone"):
        v.check_audio(np.full(SR, 5e-4, np.float32), SR, what="The hum")
    assert v.check_audio(np.full(SR, 1.1e-3, np.float32), SR)[0].shape == (1, SR)  # just above -60 dBFS


def test_clipping_is_noted_and_overs_are_scaled_back():
    wav = np.full(10000, 0.5, np.float32)
    wav[:10] = 1.0  # exactly 0.1 % at full scale: not noted
    out, notes = v.check_audio(wav, 8000)
    assert notes == [] and float(out.max()) == 1.0
    wav[:11] = 2.0
    out, notes = v.check_audio(wav, 8000)
    assert notes == ["The melody is clipped (0.1% of samples at full scale); it is used as is, but a cleaner recording "
                     "works better."]
    assert float(out.max()) == 1.0 and float(out[0, 20]) == 0.25  # peak 2 scaled back to full scale


def test_continuation_lengths():
    v.check_continuation(9.5, 10)  # the library takes a prompt as long as the duration less the margin
    v.check_continuation(9.5, 10, max_duration=10)
    with pytest.raises(v.InputError, match=r"^The audio to continue is 9\.6 s long; this model continues at most "
                                           r"9\.5 s: trim it\.$"):
        v.check_continuation(9.6, 30, max_duration=10)
    with pytest.raises(v.InputError, match=r"^The audio to continue is 9\.60 s long: set the duration to at least "
                                           r"11 s, or trim the audio\.$"):
        v.check_continuation(9.6, 10)
    v.check_continuation(10, 10, margin=0)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(v.InputError, match=r"^The hum file gone\.wav was not found\.$"):
        v.read_audio(tmp_path / "gone.wav", what="The hum")


def test_a_file_exactly_at_the_size_limit_is_read(tmp_path):
    path = tmp_path / "limit.wav"
    path.write_bytes(b"\0" * (v.MAX_FILE_MB * 2**20))
    with pytest.raises(v.InputError, match=r"^Could not read limit\.wav as audio"):  # not refused for its size
        v.read_audio(path)


def test_files_libsndfile_reads_do_not_need_ffmpeg(files, monkeypatch):
    monkeypatch.setattr(v.librosa, "load", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no ffmpeg")))
    wav, rate, _ = v.read_audio(files["24bit"])
    assert rate == SR and wav.shape == (1, 2 * SR)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_browser_recording_is_read_through_ffmpeg(files, tmp_path):
    """A stereo WebM/Opus file, as browsers record: libsndfile cannot read it; ffmpeg (through librosa) can."""
    stereo = write(tmp_path / "stereo.wav", tone(2.0, 48000, channels=2), 48000)
    webm = tmp_path / "take.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(stereo), "-c:a", "libopus", str(webm)], check=True)
    with pytest.raises(Exception):
        sf.read(str(webm))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # librosa's own warnings are silenced, none reaches the user
        wav, rate, notes = v.read_audio(webm)
    assert rate == 48000 and wav.shape[0] == 2 and abs(wav.shape[1] - 2 * 48000) < 2000 and notes == []
    assert abs(float(wav[1].abs().max()) - 0.3) < 0.03  # the second channel kept (880 Hz in this test's tone)
