"""audio_write (audiocraft parity): normalisation levels, BS.1770-4 loudness reference values, formats, errors."""
import functools
import logging
import math

import pytest
import soundfile as sf
import torch

from musicgen_core.audio import (audio_write, i16_pcm, k_weighting, load_audio, loudness, normalize_audio,
                                 normalize_loudness)

SR = 32000


@functools.lru_cache
def music(channels: int = 2) -> torch.Tensor:
    """2 s of notes with harmonics, decaying envelopes and a little noise: a music-like test signal [C, T]."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(2 * SR) / SR
    wav = torch.zeros(channels, t.numel())
    for start in torch.arange(0, 2, 0.25):
        f0 = 110 * 2 ** (torch.randint(0, 24, (1,), generator=g).item() / 12)
        env = torch.exp(-6 * (t - start)) * (t >= start)
        note = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6)) * env
        wav += note * (0.3 + 0.7 * torch.rand(channels, 1, generator=g))
    return 0.2 * wav + 0.01 * torch.randn(wav.shape, generator=g)


def sine(freq: float, db: float, sr: int, seconds: float = 2.0, channels: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return (10 ** (db / 20) * torch.sin(2 * math.pi * freq * t)).expand(channels, -1)


def db(x: torch.Tensor) -> float:
    return 20 * math.log10(x.item())


# --- BS.1770-4 loudness against the standard's own numbers ---

def test_k_weighting_matches_the_standard_at_48k():
    (b1, a1), (b2, a2) = k_weighting(48000)  # ITU-R BS.1770-4 Annex 1, Tables 1 and 2
    assert b1 == pytest.approx([1.53512485958697, -2.69169618940638, 1.19839281085285], abs=1e-12)
    assert a1 == pytest.approx([1.0, -1.69065929318241, 0.73248077421585], abs=1e-12)
    assert b2 == [1.0, -2.0, 1.0]
    assert a2 == pytest.approx([1.0, -1.99004745483398, 0.99007225036621], abs=1e-12)


def test_loudness_reference_values():
    # BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS; levels scale dB for dB.
    assert loudness(sine(997, 0, 48000), 48000) == pytest.approx(-3.01, abs=0.01)
    assert loudness(sine(997, -23, 48000), 48000) == pytest.approx(-26.01, abs=0.01)
    # EBU Tech 3341 case 1: stereo 1 kHz at -23 dBFS per channel reads -23.0 LUFS.
    assert loudness(sine(1000, -23, 48000, channels=2), 48000) == pytest.approx(-23.0, abs=0.01)
    # Other rates (bilinear re-design of the same filters) stay within 0.02 LU.
    assert loudness(sine(997, 0, 32000), 32000) == pytest.approx(-3.01, abs=0.02)


def test_loudness_gating():
    # EBU Tech 3341 case 3: stereo 1 kHz at -36 / -23 / -36 dBFS for 10 / 60 / 10 s reads -23.0 +- 0.1 LUFS
    # (the relative gate drops the -36 dBFS parts); run at 8 kHz to stay fast.
    x = torch.cat([sine(1000, -36, 8000, 10, 2), sine(1000, -23, 8000, 60, 2), sine(1000, -36, 8000, 10, 2)], -1)
    assert loudness(x, 8000) == pytest.approx(-23.0, abs=0.1)
    # Blocks below -70 LUFS are ignored; pure silence is -inf.
    half_silent = torch.cat([sine(1000, -23, 8000, 10, 2), torch.zeros(2, 10 * 8000, dtype=torch.float64)], -1)
    assert loudness(half_silent, 8000) == pytest.approx(-23.0, abs=0.1)
    assert loudness(torch.zeros(2, SR), SR) == float("-inf")


# --- normalisation strategies, checked on the written file ---

def written(tmp_path, wav, **kw) -> torch.Tensor:
    return load_audio(audio_write(tmp_path / "out", wav, SR, **kw))[0]


@pytest.mark.parametrize("headroom", [1, 3])
def test_peak(tmp_path, headroom):
    out = written(tmp_path, music(), strategy="peak", peak_clip_headroom_db=headroom)
    assert db(out.abs().max()) == pytest.approx(-headroom, abs=0.01)


def test_peak_without_normalize_only_scales_down(tmp_path):
    quiet = 0.1 * music() / music().abs().max()  # peak at -20 dBFS: kept
    assert db(written(tmp_path, quiet, normalize=False).abs().max()) == pytest.approx(-20, abs=0.01)
    assert db(written(tmp_path, 30 * quiet, normalize=False).abs().max()) == pytest.approx(-1, abs=0.01)


def test_rms(tmp_path):
    out = written(tmp_path, music(), strategy="rms")  # audiocraft's default headroom: 18 dB
    assert db(out.mean(0).square().mean().sqrt()) == pytest.approx(-18, abs=0.01)
    out = written(tmp_path, music(), strategy="loudness")  # and 14 LU
    assert loudness(out, SR) == pytest.approx(-14, abs=0.05)
    full = torch.tensor([[-1.0, 1.0, 0.9, 0.0] * 100])  # +1 would overflow 2**15: audiocraft scales all by 2**15 - 1
    assert written(tmp_path, full, strategy="none")[0, :4].tolist() == [-32767 / 32768, 32767 / 32768, 29490 / 32768, 0]


@pytest.mark.parametrize("target", [14, 16])
def test_loudness(tmp_path, target):
    out = written(tmp_path, music(), strategy="loudness", loudness_headroom_db=target)
    assert loudness(out, SR) == pytest.approx(-target, abs=0.1)
    assert out.abs().max() < 1


def test_loudness_compressor_soft_clips():
    loud = normalize_audio(music(), strategy="loudness", loudness_headroom_db=2, sample_rate=SR)
    soft = normalize_audio(music(), strategy="loudness", loudness_headroom_db=2, loudness_compressor=True,
                           sample_rate=SR)
    assert (loud.abs() == 1).any() and soft.abs().max() < 1
    assert torch.allclose(soft, torch.tanh(normalize_loudness(music(), SR, loudness_headroom_db=2)))


def test_loudness_leaves_near_silence_alone():
    faint = 1e-4 * music()
    assert torch.equal(normalize_audio(faint, strategy="loudness", sample_rate=SR), faint)


def test_clip(tmp_path):
    out = written(tmp_path, 10 * music(), strategy="clip")
    assert db(out.abs().max()) == pytest.approx(-1, abs=0.01)
    at_clip_level = torch.isclose(out.abs(), torch.tensor(10 ** (-1 / 20)), atol=1e-4)
    assert at_clip_level.float().mean() > 0.01


def test_rms_clipping_is_logged(tmp_path, caplog):
    spiky = torch.zeros(1, SR)
    spiky[0, ::1000] = 1.0
    with caplog.at_level(logging.WARNING):
        out = written(tmp_path, spiky, strategy="rms")
    assert out.abs().max() <= 1 and caplog.messages[0].startswith(f"clipping {tmp_path / 'out'}: ")


def test_silence_stays_silent(tmp_path):
    assert torch.equal(written(tmp_path, torch.zeros(2, SR)), torch.zeros(2, SR))


def test_i16_pcm():
    assert i16_pcm(torch.tensor([0.5, -1.0, 0.0])).tolist() == [16384, -32768, 0]
    assert i16_pcm(torch.tensor([1.0, -1.0])).tolist() == [32767, -32767]  # full scale would overflow 2**15


# --- paths, shapes and formats ---

def test_suffix_parent_dir_and_returned_path(tmp_path):
    path = audio_write(tmp_path / "a" / "b" / "song", music(), SR)
    assert path == tmp_path / "a" / "b" / "song.wav" and path.is_file()
    raw = audio_write(tmp_path / "song.data", music(), SR, add_suffix=False)
    assert raw == tmp_path / "song.data" and sf.info(str(raw)).format == "WAV"
    assert audio_write(str(tmp_path / "x.y"), music(), SR, format="flac") == tmp_path / "x.y.flac"
    with pytest.raises(Exception):
        audio_write(tmp_path / "missing" / "song", music(), SR, make_parent_dir=False)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("mono_1d, channels", [(True, 1), (False, 1), (False, 2)])
def test_shapes(tmp_path, mono_1d, channels):
    wav = music(channels=channels)
    out = written(tmp_path, wav[0] if mono_1d else wav)
    assert out.shape == wav.shape


@pytest.mark.parametrize("fmt, subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"),
                                          ("mp3", "MPEG_LAYER_III")])
def test_formats(tmp_path, fmt, subtype):
    if fmt == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3 (the error is tested below)")
    wav = music()
    path = audio_write(tmp_path / "song", wav, SR, format=fmt)
    info = sf.info(str(path))
    assert path.suffix == "." + fmt and info.subtype == subtype and info.samplerate == SR and info.channels == 2
    out, _ = load_audio(path)
    ref = normalize_audio(wav)
    assert out.shape == ref.shape and torch.corrcoef(torch.stack([out[0], ref[0]]))[0, 1] > 0.99


def test_mp3_bitrate(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without MP3")
    sizes = {rate: audio_write(tmp_path / str(rate), music(), SR, format="mp3", mp3_rate=rate).stat().st_size
             for rate in (64, 320)}
    for rate, size in sizes.items():
        assert size * 8 / 2.0 / 1000 == pytest.approx(rate, rel=0.1)


def test_ogg_rate_changes_quality(tmp_path):
    small, big = (audio_write(tmp_path / str(r), music(), SR, format="ogg", ogg_rate=r).stat().st_size
                  for r in (64, 256))
    assert big > 1.5 * small


def test_missing_encoder_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(sf, "available_formats", lambda: {"WAV": "WAV (Microsoft)"})
    with pytest.raises(RuntimeError, match="cannot write mp3.*install soundfile"):
        audio_write(tmp_path / "song", music(), SR, format="mp3")
    assert not list(tmp_path.iterdir())


# --- bad inputs ---

@pytest.mark.parametrize("wav, kw, match", [
    (torch.zeros(1, 2, SR), {}, r"\[C, T\] or \[T\]"),
    (torch.zeros(2, SR, dtype=torch.int16), {}, "floating point"),
    (torch.full((2, SR), float("nan")), {}, "finite"),
    (torch.zeros(2, SR), {"strategy": "lufs"}, "unknown strategy 'lufs'"),
    (torch.zeros(2, SR), {"format": "aac"}, "unknown format 'aac'"),
    (torch.full((2, SR), 2.0), {"strategy": "none"}, r"within \[-1, 1\]"),
])
def test_bad_inputs(tmp_path, wav, kw, match):
    with pytest.raises(ValueError, match=match):
        audio_write(tmp_path / "song", wav, SR, **kw)
    assert not list(tmp_path.iterdir())


def test_loudness_needs_sample_rate_and_few_channels():
    with pytest.raises(ValueError, match="sample_rate"):
        normalize_audio(music(), strategy="loudness")
    with pytest.raises(ValueError, match="1 <= C <= 5"):
        loudness(torch.zeros(6, SR), SR)


# --- the helpers, one by one ---

def test_rms_db():
    import numpy as np

    from musicgen_core.audio import rms_db

    levels = rms_db(np.stack([np.full(100, 0.1, np.float32), np.zeros(100, np.float32), np.ones(100, np.float32)]))
    assert levels.shape == (3,) and levels[0] == pytest.approx(-20, abs=1e-6) and levels[1] == pytest.approx(-240)
    assert levels[2] == pytest.approx(0, abs=1e-9)
    assert rms_db(np.full((2, 3, 50), 0.1)).shape == (2, 3)  # over the last axis of any shape


def test_save_and_load_round_trip(tmp_path):
    from musicgen_core.audio import save_audio

    wav = torch.tensor([[0.5, 1.5, -2.0, 0.25], [0.0, -0.5, 0.5, 1.0]])
    save_audio(tmp_path / "x.wav", wav, 8000)
    assert sf.info(str(tmp_path / "x.wav")).subtype == "PCM_16"
    back, rate = load_audio(tmp_path / "x.wav")
    assert rate == 8000 and type(rate) is int and back.shape == (2, 4) and back.is_contiguous()
    assert back.dtype == torch.float32
    torch.testing.assert_close(back, wav.clamp(-1, 1), atol=1 / 32768, rtol=0)  # clamped, then 16-bit


def test_convert_audio_channels_and_rate():
    from musicgen_core.audio import convert_audio

    stereo = torch.stack([torch.ones(SR), -0.5 * torch.ones(SR)])
    assert torch.equal(convert_audio(stereo, SR, SR, 1), torch.full((1, SR), 0.25))
    mono = torch.linspace(-1, 1, SR)[None]
    assert torch.equal(convert_audio(mono, SR, SR, 2), mono.expand(2, SR))
    assert convert_audio(mono, SR, SR, 1) is mono
    assert convert_audio(mono[None], SR, 16000, 1).shape == (1, 1, 16000)
    with pytest.raises(ValueError, match=r"^cannot convert 3 channels to 2$"):
        convert_audio(torch.zeros(3, 10), SR, SR, 2)


def test_clipping_log_names_the_stem_fraction_and_peak(caplog):
    from musicgen_core.audio import clip_wav

    wav = torch.zeros(1, 1000)
    wav[0, :2] = 2.0
    with caplog.at_level(logging.WARNING):
        assert torch.equal(clip_wav(wav, log_clipping=False), wav.clamp(-1, 1)) and not caplog.text
        clip_wav(torch.ones(1, 10), log_clipping=True)  # at full scale, nothing clipped
        assert not caplog.text
        clip_wav(wav, log_clipping=True, stem_name="song")
    assert caplog.messages == ["clipping song: 0.2000% of samples, peak 2.000"]


def test_normalize_without_normalize_only_turns_down():
    quiet = 0.01 * music()
    assert torch.equal(normalize_audio(quiet, normalize=False, strategy="rms"), quiet)
    loud = 10 * music()
    rms = normalize_audio(loud, normalize=False, strategy="rms", rms_headroom_db=30)
    assert db(rms.mean(0).square().mean().sqrt()) == pytest.approx(-30, abs=0.2)
    assert normalize_audio(music(), strategy="none") is normalize_audio(music(), strategy="")
    assert torch.equal(normalize_audio(torch.zeros(1, 10), strategy="peak"), torch.zeros(1, 10))


def test_encoder_options_per_rate():
    from musicgen_core.audio import _encoder_options

    if "MP3" in sf.available_formats():
        levels = {(sr, kbps): _encoder_options("mp3", sr, kbps, None)["compression_level"]
                  for sr, kbps in [(32000, 320), (32000, 176), (32000, 999), (32000, 8), (16000, 84), (8000, 36)]}
        assert levels == {(32000, 320): 0.0, (32000, 176): 0.5, (32000, 999): 0.0, (32000, 8): 0.99,
                          (16000, 84): 0.5, (8000, 36): 0.5}
        assert _encoder_options("mp3", SR, 320, None)["bitrate_mode"] == "CONSTANT"
    assert _encoder_options("ogg", SR, 320, 128)["compression_level"] == pytest.approx(0.6)
    assert _encoder_options("ogg", SR, 320, None) == {"format": "OGG", "subtype": "VORBIS"}
    assert _encoder_options("flac", SR, 320, 128) == {"format": "FLAC", "subtype": "PCM_16"}


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def half_write(path, *args, **kwargs):
        open(path, "wb").write(b"RIFF")
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        audio_write(tmp_path / "song", music(), SR)
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(sf, "write", lambda *a, **k: (_ for _ in ()).throw(OSError("no space")))  # before any byte
    with pytest.raises(OSError, match="^no space$"):  # the encoder's error, not one from the cleanup
        audio_write(tmp_path / "song", music(), SR)


def test_loudness_short_surround_and_silent_signals():
    one = loudness(sine(997, -20, 48000, seconds=2.0), 48000)
    five = loudness(sine(997, -20, 48000, seconds=2.0, channels=5), 48000)
    assert five - one == pytest.approx(10 * math.log10(1 + 1 + 1 + 1.41 + 1.41), abs=0.01)  # BS.1770 G_i
    short = loudness(sine(997, -20, 48000, seconds=0.1), 48000)  # shorter than a 400 ms block: one block
    assert short == pytest.approx(one, abs=0.1)
    assert loudness(torch.zeros(1, 48000), 48000) == float("-inf")
    for bad in (torch.zeros(48000), torch.zeros(1, 0)):
        with pytest.raises(ValueError, match=r"^loudness expects wav \[C, T\] with 1 <= C <= 5 and T > 0"):
            loudness(bad, 48000)
    rumble = sine(5, -40, SR).float()  # above the energy floor, but the K-weighting's high-pass gates it all
    assert loudness(rumble, SR) == float("-inf") and normalize_loudness(rumble, SR) is rumble


def test_loudness_gates_at_their_thresholds():
    """Levels placed within 1 LU of each gate (a 1 kHz sine reads its peak level - 3.01 LUFS)."""
    def parts(*levels_and_seconds):
        return torch.cat([sine(1000, level, 8000, seconds) for level, seconds in levels_and_seconds], -1)

    assert loudness(parts((-66.2, 4)), 8000) == pytest.approx(-69.19, abs=0.02)  # 0.8 LU above -70: measured
    assert loudness(parts((-67.8, 4)), 8000) == float("-inf")  # 0.8 LU below: gated
    # the relative gate, 10 LU below the level of the blocks above -70: 0.27 LU above it counts, 0.68 below does not
    assert loudness(parts((-20, 10), (-32.5, 10)), 8000) == pytest.approx(-25.76, abs=0.02)
    assert loudness(parts((-20, 10), (-33.5, 10)), 8000) == pytest.approx(-23.05, abs=0.02)
    # a part under -70 stays out even when it is within 10 LU of the rest
    assert loudness(parts((-59, 10), (-68, 10)), 8000) == pytest.approx(-62.05, abs=0.02)


def test_defaults_and_messages():
    from musicgen_core.audio import clip_wav

    wav = music()
    assert db(normalize_audio(wav).abs().max()) == pytest.approx(-1, abs=1e-4)  # peak at -1 dBFS
    assert db(normalize_audio(wav, strategy="rms").mean(0).square().mean().sqrt()) == pytest.approx(-18, abs=0.05)
    assert loudness(normalize_audio(wav, strategy="loudness", sample_rate=SR), SR) == pytest.approx(-14, abs=0.05)
    assert loudness(normalize_loudness(wav, SR), SR) == pytest.approx(-14, abs=0.05)
    louder = 1.5 * normalize_audio(wav)  # a gain between 1 and 2 would turn it up: without normalize it stays
    at_06 = 0.6 * wav / wav.abs().max()  # a peak gain of 1.49 would turn it up: without normalize it stays
    assert torch.equal(normalize_audio(at_06, normalize=False), at_06)
    assert torch.equal(normalize_audio(louder / 1.9, normalize=False, strategy="rms", rms_headroom_db=12), louder / 1.9)
    assert torch.equal(normalize_audio(torch.zeros(1, 8), strategy="rms"), torch.zeros(1, 8))
    spiky = torch.tensor([[0.5, -3.0, 2.0, 1.0]])
    assert torch.equal(normalize_audio(spiky, strategy="clip", peak_clip_headroom_db=0), spiky.clamp(-1, 1))
    assert torch.equal(clip_wav(spiky), torch.tensor([[0.5, -1.0, 1.0, 1.0]]))
    unit = torch.tensor([[1.0, -1.0, 0.5]])
    assert normalize_audio(unit, strategy="none") is unit  # exactly full scale is within [-1, 1]
    with pytest.raises(ValueError, match=r"^strategy 'none' needs a signal within \[-1, 1\]$"):
        normalize_audio(1.01 * unit, strategy="none")
    with pytest.raises(ValueError, match=r"^loudness normalisation needs sample_rate$"):
        normalize_audio(wav, strategy="loudness")
    with pytest.raises(ValueError, match=r"^unknown format 'aac': use one of wav, flac, ogg, mp3$"):
        audio_write("song", wav, SR, format="aac")


@pytest.mark.parametrize("strategy", ["rms", "loudness"])
def test_clipping_is_logged_with_the_stem_only_when_asked(strategy, caplog):
    from musicgen_core.audio import clip_wav

    hot = torch.tensor([[0.0, 1.0, 2.0, -2.0] * 8000])  # a quarter exactly at full scale is not clipped
    with caplog.at_level(logging.WARNING):
        clip_wav(hot)
        normalize_audio(hot, strategy=strategy, rms_headroom_db=0, loudness_headroom_db=-20, sample_rate=SR,
                        stem_name="take")
        assert not caplog.text
        clip_wav(hot, log_clipping=True)
        normalize_audio(hot, strategy=strategy, rms_headroom_db=0, loudness_headroom_db=-20, sample_rate=SR,
                        log_clipping=True, stem_name="take")
    assert caplog.messages[0] == "clipping : 50.0000% of samples, peak 2.000"
    assert caplog.messages[1].startswith("clipping take: ")
