"""Validation of user requests: prompt, duration, seed, sampling parameters and input audio.

Pure functions for every boundary (the library's public methods, the web demo, the CLI): each returns the cleaned
value or raises `InputError` with a message that says what is wrong and how to fix it.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import librosa
import numpy as np
import torch

from .audio import load_audio


MAX_PROMPT_CHARS = 1000
MIN_DURATION, MAX_DURATION = 1.0, 120.0
MIN_AUDIO_SECONDS, MAX_AUDIO_SECONDS = 0.5, 180.0
SILENCE_RMS = 1e-3  # -60 dBFS
MAX_SEED = 2**31 - 1
MAX_FILE_MB = 20
# name -> (low, high, default) for the sampling parameters of `MusicGen.set_generation_params`
SAMPLING_RANGES = {"top_k": (0, 2048, 250), "top_p": (0.0, 1.0, 0.0), "temperature": (0.0, 5.0, 1.0),
                   "cfg_coef": (0.0, 20.0, 3.0)}
LABELS = {"top_k": "Top-k", "top_p": "Top-p", "temperature": "Temperature", "cfg_coef": "Classifier-free guidance"}


class InputError(ValueError):
    """A request the user has to change; the message says how."""


def _number(value, label: str) -> float:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{label} is empty: enter a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{label} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise InputError(f"{label} must be a finite number, got {number}.")
    return number


def check_prompt(prompt: str | None, required: bool = True) -> str | None:
    """The stripped prompt, or None when it is empty and not `required`."""
    text = (prompt or "").strip()
    if not text:
        if required:
            raise InputError("The prompt is empty: describe the music you want (e.g. 'calm piano with soft strings').")
        return None
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"The prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}. Shorten it.")
    return text


def check_duration(duration, low: float = MIN_DURATION, high: float = MAX_DURATION) -> float:
    seconds = _number(duration, "Duration")
    if not low <= seconds <= high:
        raise InputError(f"Duration must be between {low:g} and {high:g} seconds, got {seconds:g}.")
    return seconds


def check_seed(seed) -> int | None:
    """None (or an empty value) means a random seed; otherwise a whole number in [0, 2**31 - 1]."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        return None
    number = _number(seed, "Seed")
    if number != int(number) or not 0 <= number <= MAX_SEED:
        raise InputError(f"Seed must be a whole number between 0 and {MAX_SEED} (or empty for a random one), "
                         f"got {number:g}.")
    return int(number)


def check_sampling(top_k, top_p, temperature, cfg_coef) -> dict[str, float | int]:
    """Keyword arguments for `MusicGen.set_generation_params`: top_k (whole number), top_p, temperature, cfg_coef."""
    values = {}
    for name, value in zip(SAMPLING_RANGES, (top_k, top_p, temperature, cfg_coef)):
        low, high, default = SAMPLING_RANGES[name]
        number = _number(value, LABELS[name])
        if not low <= number <= high:
            raise InputError(f"{LABELS[name]} must be between {low:g} and {high:g} (default {default:g}), "
                             f"got {number:g}.")
        if name == "top_k":
            if number != int(number):
                raise InputError(f"Top-k must be a whole number, got {number:g}.")
            number = int(number)
        values[name] = number
    return values


def check_descriptions(descriptions) -> list[str | None]:
    """A generation call's descriptions as a list: a string is one description, None one without text."""
    items = [descriptions] if isinstance(descriptions, str) or descriptions is None else list(descriptions)
    if not items:
        raise InputError("descriptions is empty: pass a list with at least one description (None for no text).")
    for item in items:
        if item is not None and not isinstance(item, str):
            raise InputError(f"descriptions must be strings or None, got {type(item).__name__}.")
    return items


def check_params(params, max_duration: float):
    """A `GenerationParams` with every field in range (top_k made a whole number), else InputError."""
    duration = _number(params.duration, "Duration")
    if duration <= 0:
        raise InputError(f"Duration must be a positive number of seconds, got {duration:g}.")
    sampling = check_sampling(params.top_k, params.top_p, params.temperature, params.cfg_coef)
    if duration > max_duration and params.extend_stride is not None:
        stride = _number(params.extend_stride, "extend_stride")
        if not 0 < stride < max_duration:
            raise InputError(f"extend_stride must be between 0 and the model's max_duration ({max_duration:g} s) "
                             f"for durations above it, got {stride:g}.")
    return dataclasses.replace(params, duration=duration, **sampling)


def _check_rate(sample_rate, what: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or not 1000 <= sample_rate <= 384000:
        raise InputError(f"{what} has an unsupported sample rate ({sample_rate} Hz): use 8-192 kHz audio.")
    return int(sample_rate)


def _check_finite(array, what: str) -> None:
    if not (np.isfinite(array).all() if isinstance(array, np.ndarray) else torch.isfinite(array).all()):
        raise InputError(f"{what} contains invalid samples (NaN or infinity): the file is corrupt, export it again.")


def check_waveform(wav, sample_rate: int, what: str = "The melody", batched: bool = False) -> torch.Tensor:
    """A waveform given to the library -> float32 tensor [C, T] ([B, C, T] when `batched`; [T] / [C, T] are
    promoted), with a usable sample rate, some samples and only finite ones."""
    _check_rate(sample_rate, what)
    if not isinstance(wav, torch.Tensor):
        wav = torch.as_tensor(np.asarray(wav))
    wav = wav.float()
    dims = 3 if batched else 2
    while wav.dim() < dims:
        wav = wav[None]
    if wav.dim() != dims or wav.shape[-2] == 0:
        raise InputError(f"{what} has an unexpected shape {tuple(wav.shape)}: expected "
                         f"{'[batch, channels, samples]' if batched else '[channels, samples]'}.")
    if wav.shape[-1] == 0:
        raise InputError(f"{what} is empty (0 samples).")
    _check_finite(wav, what)
    return wav


def check_audio(wav, sample_rate: int, what: str = "The melody") -> tuple[torch.Tensor, list[str]]:
    """Validate audio of any channel count and sample rate -> (float32 wav [C, T] with peak <= 1, notes).

    `wav` is [T] or [C, T] (numpy or torch; integer PCM is scaled to [-1, 1]). Raises InputError for empty, too
    short, too long, silent or non-finite audio and unusable sample rates; `notes` are warnings about audio that is
    usable but poor (clipped).
    """
    _check_rate(sample_rate, what)
    array = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        array = (array.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    elif array.dtype.kind != "f":
        raise InputError(f"{what} is not audio (data type {array.dtype}).")
    array = array.astype(np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(f"{what} has an unexpected shape {array.shape}: expected [samples] or [channels, samples].")
    seconds = array.shape[1] / sample_rate
    if seconds < MIN_AUDIO_SECONDS:
        raise InputError(f"{what} is too short ({seconds:.2f} s): record or upload at least "
                         f"{MIN_AUDIO_SECONDS:g} s.")
    if seconds > MAX_AUDIO_SECONDS:
        raise InputError(f"{what} is too long ({seconds:.0f} s); the limit is {MAX_AUDIO_SECONDS:.0f} s "
                         f"({MAX_AUDIO_SECONDS / 60:g} min): trim it first.")
    _check_finite(array, what)
    rms = float(np.sqrt(np.mean(np.square(array, dtype=np.float64))))
    if rms < SILENCE_RMS:
        level = f"{20 * math.log10(rms):.0f} dBFS" if rms > 0 else "all samples are zero"
        raise InputError(f"{what} is silent ({level}): record closer to the microphone or upload another file.")
    notes = []
    peak = float(np.abs(array).max())
    clipped = float(np.mean(np.abs(array) >= 0.999))
    if clipped > 0.001:
        notes.append(f"{what} is clipped ({clipped:.1%} of samples at full scale); it is used as is, but a cleaner "
                     "recording works better.")
    if peak > 1.0:
        array = array / peak
    return torch.from_numpy(array), notes


def check_continuation(prompt_seconds: float, duration: float, max_duration: float | None = None,
                       margin: float = 0.5) -> None:
    """Audio to continue must leave `margin` seconds to generate (the demo's half second; the library, like
    audiocraft, takes a prompt as long as the duration) and, with `max_duration`, fit in one model window (the demo's
    limit; the library keeps the last part of a longer prompt as the window's context)."""
    if max_duration is not None and prompt_seconds > max_duration - 0.5:
        raise InputError(f"The audio to continue is {prompt_seconds:.1f} s long; this model continues at most "
                         f"{max_duration - 0.5:g} s: trim it.")
    if prompt_seconds + margin > duration:
        raise InputError(f"The audio to continue is {prompt_seconds:.2f} s long: set the duration to at least "
                         f"{math.ceil(prompt_seconds + margin)} s, or trim the audio.")


def read_audio(path, what: str = "The melody") -> tuple[torch.Tensor, int, list[str]]:
    """Read and check a user's audio file -> (wav [C, T] float32, sample rate, notes) (see `check_audio`).

    Anything libsndfile reads (WAV of any bit depth, FLAC, OGG, MP3) or, through librosa, ffmpeg (e.g. a browser's
    WebM recording); a file over `MAX_FILE_MB`, an empty one or one that is not audio raises InputError.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {path.name} was not found.")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name} is empty (0 bytes): record or upload the audio again.")
    if size > MAX_FILE_MB * 2**20:
        raise InputError(f"{path.name} is {size / 2**20:.1f} MB; the limit is {MAX_FILE_MB} MB: trim or compress it.")
    try:
        wav, sr = load_audio(path)
    except Exception:  # not a format libsndfile reads: try ffmpeg via librosa
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, sr = librosa.load(path, sr=None, mono=False)
            wav = torch.from_numpy(np.atleast_2d(data))
        except Exception:
            raise InputError(f"Could not read {path.name} as audio: use a WAV, FLAC, OGG or MP3 file.") from None
    wav, notes = check_audio(wav, int(sr), what)
    return wav, int(sr), notes
