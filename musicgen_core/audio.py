"""Audio I/O, format conversion and audiocraft-style normalised writing (`audio_write`).

Files go through soundfile/libsndfile, resampling and filtering through torchaudio.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

logger = logging.getLogger(__name__)


def rms_db(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS over the last axis."""
    return 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1)) + 1e-12)


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read an audio file -> (wav [C, T] float32 in [-1, 1], sample_rate)."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def save_audio(path: str | Path, wav: torch.Tensor, sample_rate: int) -> None:
    """Write wav [C, T] as 16-bit PCM WAV, peak-limited to [-1, 1]."""
    sf.write(str(path), wav.detach().float().clamp(-1, 1).T.cpu().numpy(), sample_rate, subtype="PCM_16")


def convert_audio(wav: torch.Tensor, from_rate: int, to_rate: int, to_channels: int) -> torch.Tensor:
    """Resample [..., C, T] and adapt channels: downmix by averaging, or repeat a mono signal."""
    if wav.shape[-2] != to_channels:
        if to_channels == 1:
            wav = wav.mean(dim=-2, keepdim=True)
        elif wav.shape[-2] == 1:
            wav = wav.expand(*wav.shape[:-2], to_channels, wav.shape[-1])
        else:
            raise ValueError(f"cannot convert {wav.shape[-2]} channels to {to_channels}")
    if from_rate != to_rate:
        wav = AF.resample(wav, from_rate, to_rate)
    return wav


# ITU-R BS.1770-4 K-weighting: a +4 dB high shelf then a ~38 Hz high-pass. These analogue prototype
# parameters (as in libebur128) reproduce the standard's 48 kHz biquads (Tables 1 and 2) through the
# bilinear transform, so the filter can be built at any sample rate. torchaudio.functional.loudness is not
# used: it approximates the shelf and clamps the filtered signal, reading a 0 dBFS 997 Hz sine at -3.28
# instead of the standard's -3.01 LKFS.
_SHELF_HZ, _SHELF_GAIN_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_SHELF_BAND_EXP = 0.4996667741545416  # band-gain exponent of the shelf
_HIGHPASS_HZ, _HIGHPASS_Q = 38.13547087602444, 0.5003270373238773
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770-4 G_i for L, R, C, Ls, Rs
_VORBIS_KBPS = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500)  # nominal rate of quality 0..10 (44.1 kHz stereo)
_WRITE_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
                  "mp3": ("MP3", "MPEG_LAYER_III")}


def k_weighting(sample_rate: int) -> list[tuple[list[float], list[float]]]:
    """BS.1770-4 K-weighting filter at `sample_rate` as two biquads [(b, a), (b, a)]."""
    k = math.tan(math.pi * _SHELF_HZ / sample_rate)
    vh = 10 ** (_SHELF_GAIN_DB / 20)
    vb = vh ** _SHELF_BAND_EXP
    a0 = 1 + k / _SHELF_Q + k * k
    shelf = ([(vh + vb * k / _SHELF_Q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / _SHELF_Q + k * k) / a0],
             [1.0, 2 * (k * k - 1) / a0, (1 - k / _SHELF_Q + k * k) / a0])
    k = math.tan(math.pi * _HIGHPASS_HZ / sample_rate)
    a0 = 1 + k / _HIGHPASS_Q + k * k
    highpass = ([1.0, -2.0, 1.0], [1.0, 2 * (k * k - 1) / a0, (1 - k / _HIGHPASS_Q + k * k) / a0])
    return [shelf, highpass]


def loudness(wav: torch.Tensor, sample_rate: int) -> float:
    """Integrated loudness of wav [C, T] (C <= 5) in LUFS per ITU-R BS.1770-4.

    K-weighted mean square over 400 ms blocks with 75 % overlap, gated at -70 LUFS and then 10 LU below
    the absolute-gated level. A signal shorter than a block is one block; -inf when every block is gated.
    """
    if wav.dim() != 2 or not 1 <= wav.shape[0] <= len(_CHANNEL_WEIGHTS) or wav.shape[1] == 0:
        raise ValueError(f"loudness expects wav [C, T] with 1 <= C <= 5 and T > 0, got {tuple(wav.shape)}")
    x = wav.detach().to("cpu", torch.float64)
    for b, a in k_weighting(sample_rate):
        x = AF.lfilter(x, torch.tensor(a, dtype=x.dtype), torch.tensor(b, dtype=x.dtype), clamp=False)
    block = min(round(0.4 * sample_rate), x.shape[-1])
    mean_square = x.unfold(-1, block, round(0.1 * sample_rate)).square().mean(-1)  # [C, blocks]
    power = torch.tensor(_CHANNEL_WEIGHTS[: x.shape[0]], dtype=x.dtype) @ mean_square  # [blocks]
    block_lufs = -0.691 + 10 * torch.log10(power)
    gated = block_lufs > -70.0
    if not gated.any():
        return float("-inf")
    gated &= block_lufs > -0.691 + 10 * math.log10(power[gated].mean().item()) - 10.0
    return -0.691 + 10 * math.log10(power[gated].mean().item())


def normalize_loudness(wav: torch.Tensor, sample_rate: int, loudness_headroom_db: float = 14,
                       loudness_compressor: bool = False, energy_floor: float = 2e-3) -> torch.Tensor:
    """Scale wav [C, T] to -loudness_headroom_db LUFS (BS.1770-4), then tanh soft-clip if `loudness_compressor`.

    Signals with RMS below `energy_floor` (or fully gated) are returned unchanged.
    """
    if wav.square().mean().sqrt().item() < energy_floor:
        return wav
    level = loudness(wav, sample_rate)
    if not math.isfinite(level):
        return wav
    wav = wav * 10 ** ((-loudness_headroom_db - level) / 20)
    return torch.tanh(wav) if loudness_compressor else wav


def clip_wav(wav: torch.Tensor, log_clipping: bool = False, stem_name: str | None = None) -> torch.Tensor:
    """Clamp to [-1, 1], logging a warning with the clipped fraction when `log_clipping`."""
    peak = wav.abs().max().item()
    if log_clipping and peak > 1:
        fraction = (wav.abs() > 1).float().mean().item()
        logger.warning("clipping %s: %.4f%% of samples, peak %.3f", stem_name or "", 100 * fraction, peak)
    return wav.clamp(-1, 1)


def normalize_audio(wav: torch.Tensor, normalize: bool = True, strategy: str = "peak",
                    peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18, loudness_headroom_db: float = 14,
                    loudness_compressor: bool = False, log_clipping: bool = False,
                    sample_rate: int | None = None, stem_name: str | None = None) -> torch.Tensor:
    """Normalise wav [C, T] like audiocraft.

    Strategies: "clip" clamps to -peak_clip_headroom_db dBFS; "peak" scales the peak to -peak_clip_headroom_db
    dBFS; "rms" scales the RMS of the channel mean to -rms_headroom_db dBFS, then clips; "loudness" scales to
    -loudness_headroom_db LUFS (needs `sample_rate`), then clips; "none" (or "") leaves a signal within
    [-1, 1] unchanged. With `normalize=False`, "peak" and "rms" only ever scale down.
    """
    if strategy == "clip":
        scale = 10 ** (-peak_clip_headroom_db / 20)
        return wav.clamp(-scale, scale)
    if strategy == "peak":
        peak = wav.abs().max()
        gain = 10 ** (-peak_clip_headroom_db / 20) / peak
        return wav * gain if peak > 0 and (normalize or gain < 1) else wav
    if strategy == "rms":
        rms = wav.mean(dim=0).square().mean().sqrt()
        gain = 10 ** (-rms_headroom_db / 20) / rms
        wav = wav * gain if rms > 0 and (normalize or gain < 1) else wav
        return clip_wav(wav, log_clipping, stem_name)
    if strategy == "loudness":
        if sample_rate is None:
            raise ValueError("loudness normalisation needs sample_rate")
        wav = normalize_loudness(wav, sample_rate, loudness_headroom_db, loudness_compressor)
        return clip_wav(wav, log_clipping, stem_name)
    if strategy in ("none", ""):
        if wav.abs().max() > 1:
            raise ValueError("strategy 'none' needs a signal within [-1, 1]")
        return wav
    raise ValueError(f"unknown strategy {strategy!r}: use 'clip', 'peak', 'rms', 'loudness' or 'none'")


def i16_pcm(wav: torch.Tensor) -> torch.Tensor:
    """Float samples in [-1, 1] -> int16, scaling by 2**15 unless that overflows (then by 2**15 - 1)."""
    pcm = (wav * 2**15).round()
    if pcm.max() >= 2**15:
        pcm = (wav * (2**15 - 1)).round()
    return pcm.short()


def _encoder_options(format: str, sample_rate: int, mp3_rate: int, ogg_rate: int | None) -> dict:
    """soundfile.write keyword arguments for `format`, checking that libsndfile can encode it."""
    if format not in _WRITE_FORMATS:
        raise ValueError(f"unknown format {format!r}: use one of {', '.join(_WRITE_FORMATS)}")
    container, subtype = _WRITE_FORMATS[format]
    if container not in sf.available_formats() or subtype not in sf.available_subtypes(container):
        raise RuntimeError(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {format}; "
                           f"install soundfile>=0.12 (it bundles libsndfile>=1.1 with MP3/Vorbis encoders)")
    options = {"format": container, "subtype": subtype}
    if format == "mp3":  # libsndfile maps compression c to bitrate max - c * (max - min) for its MPEG version
        low, high = (32, 320) if sample_rate >= 32000 else (8, 160) if sample_rate >= 16000 else (8, 64)
        # soundfile sets the level before the mode, and the default VBR mode rejects c = 1: cap just below it.
        options.update(bitrate_mode="CONSTANT", compression_level=min(0.99, max(0.0, (high - mp3_rate) / (high - low))))
    elif format == "ogg" and ogg_rate is not None:  # Vorbis is VBR: pick the quality of that nominal rate
        options["compression_level"] = 1 - float(np.interp(ogg_rate, _VORBIS_KBPS, range(11))) / 10
    return options


def audio_write(stem_name: str | Path, wav: torch.Tensor, sample_rate: int, format: str = "wav",
                mp3_rate: int = 320, ogg_rate: int | None = None, normalize: bool = True, strategy: str = "peak",
                peak_clip_headroom_db: float = 1, rms_headroom_db: float = 18, loudness_headroom_db: float = 14,
                loudness_compressor: bool = False, log_clipping: bool = True, make_parent_dir: bool = True,
                add_suffix: bool = True) -> Path:
    """Normalise wav [C, T] or [T] (see `normalize_audio`) and write it; returns the path written.

    Same signature and behaviour as audiocraft.data.audio.audio_write, encoding with soundfile/libsndfile:
    "wav" and "flac" as 16-bit PCM, "ogg" as Vorbis (`ogg_rate` kbps approximated by a quality level,
    None keeps the encoder default), "mp3" at constant `mp3_rate` kbps. `stem_name` gets ".<format>"
    appended when `add_suffix`. A partially written file is removed on failure.
    """
    if wav.dim() not in (1, 2):
        raise ValueError(f"wav must be [C, T] or [T], got shape {tuple(wav.shape)}")
    if not wav.dtype.is_floating_point or not wav.isfinite().all():
        raise ValueError(f"wav must hold finite floating point samples, got {wav.dtype}")
    options = _encoder_options(format, sample_rate, mp3_rate, ogg_rate)
    wav = wav.detach().cpu().float().reshape(-1, wav.shape[-1])
    wav = normalize_audio(wav, normalize, strategy, peak_clip_headroom_db, rms_headroom_db, loudness_headroom_db,
                          loudness_compressor, log_clipping, sample_rate, str(stem_name))
    data = i16_pcm(wav) if options["subtype"] == "PCM_16" else wav
    path = Path(str(stem_name) + ("." + format if add_suffix else ""))
    if make_parent_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sf.write(str(path), data.T.contiguous().numpy(), sample_rate, **options)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return path
