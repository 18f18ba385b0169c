"""SoundFont rendering of a `Piece` with tinysoundfont, plus the mix chain: jitter, EQ, reverb, loudness, soft clip.

The lead and the backing are rendered in two passes of the same synth (so the lead-only audio costs nothing extra)
and mixed at a random lead-to-backing ratio. Output: mono float32 at 32 kHz, exactly `round(duration * 32000)`
samples. Each SoundFont is loaded once per process (a DataLoader worker inherits or loads its own copy).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from pathlib import Path

import librosa
import numpy as np
from scipy.signal import fftconvolve, lfilter

from ..audio import rms_db
from .compose import Piece, Track
from .styles import STYLE_BY_NAME

SAMPLE_RATE = 32000
PREROLL = 1.0  # seconds rendered before the clip for notes already sounding at its start
# The lead's level over the backing's (RMS): the lead carries the tune, so a model trained on these mixes makes the
# melody it is given audible (at -5..+1 dB, v4's range, its output's dominant pitch class followed the accompaniment)
LEAD_OVER_BACKING_DB = (0.0, 6.0)
DEBIAN_SOUNDFONTS = ("/usr/share/sounds/sf3/FluidR3Mono_GM.sf3", "/usr/share/sounds/sf2/sf_GMbank.sf2",
                     "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "/usr/share/sounds/sf2/FluidR3_GM.sf2")
# Sampled acoustic drum kits (avldrums.lv2-soundfont, GM drum map): they play the standard / room / power kits
# (programs 0-16) of half the pieces whose font is a GM bank.
DRUM_KITS = ("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2", "/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2")
ACOUSTIC_KITS = (0, 8, 16)
PROBE_DB = -24.0  # presets louder than this on a probe note (RMS at velocity 0.8) are turned down to it
_LOADED: dict[str, object] = {}
_PLAYABLE: dict[tuple[str, int, int], bool] = {}
_CALIBRATION: dict[tuple[str, int, bool], tuple[float, float]] = {}


def soundfont_paths() -> list[str]:
    """GM SoundFonts to render with: TimGM6mb (inside the pretty_midi wheel, always), the Debian ones when installed,
    and any listed in $MUSICGEN_SOUNDFONTS (os.pathsep-separated)."""
    spec = importlib.util.find_spec("pretty_midi")  # located, not imported
    candidates = [str(Path(spec.submodule_search_locations[0]) / "TimGM6mb.sf2")] if spec else []
    candidates += [*DEBIAN_SOUNDFONTS, *os.environ.get("MUSICGEN_SOUNDFONTS", "").split(os.pathsep)]
    paths = [p for p in dict.fromkeys(candidates) if p and os.path.isfile(p)]
    if not paths:
        raise FileNotFoundError("no General-MIDI SoundFont found: pip install pretty_midi (ships TimGM6mb.sf2)")
    return paths


def load_soundfont(path: str):
    """The tinysoundfont synth for `path`, loaded once per process (sf3 files take ~1 s to decode)."""
    if path not in _LOADED:
        try:  # the compiled binding itself: mono output, no per-call Python wrapper
            from tinysoundfont import _tinysoundfont as tsf
        except ImportError as e:
            raise ImportError("synthetic data needs tinysoundfont: pip install --no-deps tinysoundfont "
                              "(its pyaudio dependency is only for live playback)") from e
        font = tsf.SoundFont(path)
        font.set_output(tsf.OutputMode.Mono, SAMPLE_RATE, 0.0)
        _LOADED[path] = font
    return _LOADED[path]


def drum_kit_paths() -> list[str]:
    """The sampled drum kits that are installed."""
    return [p for p in DRUM_KITS if os.path.isfile(p)]


def _probe(soundfont: str, program: int, is_drum: bool, keys: tuple[int, ...], n: int) -> np.ndarray:
    """`n` samples of `keys` struck together at velocity 0.8 on a fresh synth."""
    font, out = load_soundfont(soundfont), np.zeros(n, np.float32)
    font.reset()
    channel = 9 if is_drum else 0
    font.channel_set_preset_number(channel, program, is_drum)
    for key in keys:
        font.channel_note_on(channel, key, 0.8)
    font.render(memoryview(out).cast("B"), False)
    font.reset()
    return out


def calibration(soundfont: str, program: int, is_drum: bool = False) -> tuple[float, float]:
    """(tuning in semitones, channel volume) that put a preset in tune and no louder than PROBE_DB: banks differ in
    level per preset, and some presets' samples sound off-pitch (TimGM6mb's whistle a major sixth low). Tuning is
    measured on A4 (pYIN, to the nearest pitch class: octave errors do not matter to chroma) and corrected only when
    the probe is clearly pitched and off by more than 40 cents; drums (kick + snare) get a level only. Cached."""
    key = (soundfont, program, is_drum)
    if key not in _CALIBRATION:
        probe = _probe(soundfont, program, is_drum, (36, 38) if is_drum else (69,), SAMPLE_RATE // 2)
        level, tuning = float(rms_db(probe)), 0.0
        if not is_drum and level > -60:
            # A2-A6, two octaves either side of the probe: octave errors do not matter, and the narrow range
            # makes pYIN three times faster
            f0, voiced, _ = librosa.pyin(probe, fmin=110, fmax=1760, sr=SAMPLE_RATE, frame_length=2048)
            if voiced.mean() > 0.5:
                error = (np.median(librosa.hz_to_midi(f0[voiced])) - 69 + 6) % 12 - 6  # semitones, [-6, 6)
                tuning = -float(error) if abs(error) > 0.4 else 0.0
        _CALIBRATION[key] = tuning, float(min(1.0, 10 ** ((PROBE_DB - level) / 20)))
    return _CALIBRATION[key]


def playable(soundfont: str, program: int, pitch: int) -> bool:
    """Whether `pitch` on GM `program` sounds in this SoundFont (some have dead keys, e.g. TimGM6mb's whistle above
    MIDI 78); probed once per (font, program, pitch) by checking the level 128-256 ms after the note-on."""
    key = (soundfont, program, pitch)
    if key not in _PLAYABLE:
        font, probe = load_soundfont(soundfont), np.zeros(8192, np.float32)
        font.reset()
        font.channel_set_preset_number(0, program, False)
        font.channel_note_on(0, pitch, 0.8)
        font.render(memoryview(probe).cast("B"), False)
        font.reset()
        _PLAYABLE[key] = bool(np.abs(probe[4096:]).max() >= 0.003)
    return _PLAYABLE[key]


def _channels(tracks: list[Track]) -> list[int]:
    """MIDI channel per track: 9 for drums (GM convention; tinysoundfont needs only the drum flag), others in order."""
    free = iter(c for c in range(16) if c != 9)
    return [9 if t.is_drum else next(free) for t in tracks]


def _events(tracks: list[Track], rng: np.random.Generator, t0: float) -> list[tuple[int, int, int, int, float]]:
    """MIDI events (sample, on, channel, key, velocity) with human timing and velocity jitter; offs sort first."""
    events = []
    for track, channel in zip(tracks, _channels(tracks)):
        sigma = 0.004 if track.is_drum else 0.008
        for pitch, start, end, vel in track.notes:
            if start < t0:
                continue
            start = max(t0, start + float(np.clip(rng.normal(0, sigma), -2.5 * sigma, 2.5 * sigma)))
            end = max(end, start + 0.02)
            v = float(np.clip(vel * rng.normal(1.0, 0.07), 1, 127)) / 127
            s0, s1 = round((start - t0) * SAMPLE_RATE), round((end - t0) * SAMPLE_RATE)
            events += [(s0, 1, channel, pitch, v), (s1, 0, channel, pitch, 0.0)]
    events.sort()
    return events


def _render_pass(soundfont: str, tracks: list[Track], events, n: int) -> np.ndarray:
    """Render `n` samples of the given tracks' events from a clean synth state."""
    settings = [calibration(soundfont, t.program, t.is_drum) for t in tracks]  # probes first: they reset the synth
    font = load_soundfont(soundfont)
    font.reset()
    out = np.zeros(n + 512, np.float32)
    font.render(memoryview(out[n:]).cast("B"), False)  # let voices cut by reset() fade out, then discard
    out[n:] = 0
    for track, channel, (tuning, volume) in zip(tracks, _channels(tracks), settings):
        font.channel_set_preset_number(channel, track.program, track.is_drum)
        font.channel_set_tuning(channel, tuning)
        font.channel_set_volume(channel, volume)
    view, pos = memoryview(out).cast("B"), 0
    for s, on, ch, key, vel in events:
        s = min(s, n)
        if s > pos:
            font.render(view[4 * pos:4 * s], False)
            pos = s
        if on:
            font.channel_note_on(ch, key, vel)
        else:
            font.channel_note_off(ch, key)
    if pos < n:
        font.render(view[4 * pos:4 * n], False)
    return out[:n]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _one_pole_lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    a = 1.0 - math.exp(-2 * math.pi * cutoff / SAMPLE_RATE)
    return lfilter([a], [1.0, a - 1.0], x).astype(np.float32)


def _eq(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random low and high shelves (±5 dB) from one-pole splits."""
    low_gain, high_gain = 10 ** (rng.uniform(-5, 5, size=2) / 20)
    low = _one_pole_lowpass(x, rng.uniform(150, 400))
    high = x - _one_pole_lowpass(x, rng.uniform(2500, 6000))
    return x + (low_gain - 1) * low + (high_gain - 1) * high


def _reverb(x: np.ndarray, rng: np.random.Generator, wet: float) -> np.ndarray:
    """Synthetic room: exponentially decaying, darkening noise (RT60 0.3-2 s) after a short pre-delay."""
    rt60 = rng.uniform(0.3, 2.0)
    n = int(rt60 / 2 * SAMPLE_RATE)  # IR down to -30 dB
    t = np.arange(n) / SAMPLE_RATE
    noise = rng.standard_normal(n).astype(np.float32)
    ir = np.concatenate([np.zeros(int(rng.uniform(0.005, 0.03) * SAMPLE_RATE), np.float32),
                         _one_pole_lowpass(noise, rng.uniform(3000, 9000)) * np.exp(-6.9 * t / rt60)])
    ir /= np.sqrt(np.sum(ir ** 2))
    tail = fftconvolve(x, ir)[: len(x)]
    return (x * (1 - wet) + tail.astype(np.float32) * wet).astype(np.float32)


def _vinyl(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lo-fi texture: a dull low-pass, faint hiss and sparse crackle."""
    y = _one_pole_lowpass(_one_pole_lowpass(x, rng.uniform(2500, 5000)), 6000)
    level = _rms(y)
    clicks = (rng.random(len(y)) < 3e-4) * rng.standard_normal(len(y)) * level * 1.5
    hiss = rng.standard_normal(len(y)) * level * 0.02
    return (y + clicks + hiss).astype(np.float32)


def finish(x: np.ndarray, rms_db: float) -> np.ndarray:
    """Loudness to `rms_db` dBFS, soft clip above 0.8 (limit 1.0), 10 ms fades at both ends."""
    x = x * (10 ** (rms_db / 20) / _rms(x) if _rms(x) > 1e-6 else 1.0)
    a = np.abs(x)
    x = np.where(a > 0.8, np.sign(x) * (0.8 + 0.2 * np.tanh((a - 0.8) / 0.2)), x)
    fade = np.linspace(0.0, 1.0, int(0.01 * SAMPLE_RATE), dtype=np.float32)
    x[: len(fade)] *= fade
    x[len(x) - len(fade):] *= fade[::-1]
    return x.astype(np.float32)


def render(piece: Piece, soundfont: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render `piece` through `soundfont` -> (mix, lead_only), each float32 [round(duration * 32000)].

    The mix gets a random lead/backing balance, EQ, reverb (wet range from the style), lo-fi texture where the style
    asks for it and a random loudness between -24 and -16 dBFS RMS; the lead-only render is dry at -20 dBFS.
    """
    n = round(piece.duration * SAMPLE_RATE)
    t0 = max(-PREROLL, min([0.0] + [note[1] for t in piece.tracks for note in t.notes]))
    pre = round(-t0 * SAMPLE_RATE)
    lead_tracks = [t for t in piece.tracks if t.role == "lead"]
    backing_tracks = [t for t in piece.tracks if t.role != "lead"]
    kits = drum_kit_paths()
    kit = kits[rng.integers(len(kits))] if kits and rng.random() < 0.5 else None
    sampled = [t for t in backing_tracks if kit and t.is_drum and t.program in ACOUSTIC_KITS]
    backing_tracks = [t for t in backing_tracks if t not in sampled]
    sampled = [dataclasses.replace(t, program=0) for t in sampled]  # a kit file holds one kit, preset 0
    lead = _render_pass(soundfont, lead_tracks, _events(lead_tracks, rng, t0), pre + n)[pre:]
    backing = _render_pass(soundfont, backing_tracks, _events(backing_tracks, rng, t0), pre + n)[pre:]
    if sampled:
        backing += _render_pass(kit, sampled, _events(sampled, rng, t0), pre + n)[pre:]
    balance = 10 ** (rng.uniform(*LEAD_OVER_BACKING_DB) / 20) * _rms(backing) / _rms(lead) if _rms(lead) > 1e-6 else 0.0
    style = STYLE_BY_NAME[piece.style]
    mix = _reverb(_eq(backing + balance * lead, rng), rng, rng.uniform(*style.reverb))
    if style.vinyl:
        mix = _vinyl(mix, rng)
    return finish(mix, rng.uniform(-24, -16)), finish(lead, -20.0)
