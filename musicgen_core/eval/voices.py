"""Melody queries as users give them: a hummed voice, a whistle, or notes played on an instrument.

The evaluation renders held-out tunes this way to test melody conditioning on the kinds of audio people record, and
the demo's example melodies are made with the same functions (assets/examples/make_examples.py). Notes are
`(MIDI pitch, start_s, end_s)`; every function returns float32 mono audio at 32 kHz, unnormalised (pass it through
`train.render.finish` for a loudness).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from ..train.render import DEBIAN_SOUNDFONTS, load_soundfont, soundfont_paths

SR = 32000


def smooth(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return fftconvolve(x, kernel / kernel.sum(), mode="same")


def contour(notes, n: int, glide: float, rng: np.random.Generator):
    """Per-sample f0 (Hz, gliding between notes) and a gate (1 inside a note, soft breaks between repeated ones)."""
    midi, gate = np.full(n, float(notes[0][0])), np.zeros(n)
    for pitch, start, end in notes:
        a, b = int(start * SR), min(n, int(end * SR))
        midi[a:] = pitch
        gate[a:b - int(0.06 * SR)] = 1.0
    midi = smooth(midi, np.hanning(int(glide * SR)) + 1e-9)
    drift = smooth(rng.standard_normal(n), np.ones(SR // 4)) * 9  # slow pitch wander, ~10 cents
    return midi + drift, smooth(gate, np.hanning(int(0.08 * SR)))


def vibrato(n: int, rate: float, depth: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    return depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) * (1 + 0.2 * np.sin(2 * np.pi * 0.3 * t))


def hum(notes, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Hummed voice: harmonics with a 1/k^1.5 slope under nasal-murmur formants (250 Hz strong, 2.2 kHz weak)."""
    n = int(seconds * SR)
    midi, gate = contour(notes, n, glide=0.05, rng=rng)
    f0 = 440 * 2 ** ((midi - 69 - 12 + vibrato(n, 5.3, 0.25, rng)) / 12)  # an octave down: a low hum
    phase = 2 * np.pi * np.cumsum(f0) / SR
    out = np.zeros(n)
    for k in range(1, 24):
        fk = k * f0
        formants = 1.0 + 3.0 * np.exp(-0.5 * ((fk - 250) / 120) ** 2) + 0.3 * np.exp(-0.5 * ((fk - 2200) / 300) ** 2)
        out += np.where(fk < 5000, formants * k ** -1.5, 0.0) * np.sin(k * phase)
    breath = smooth(rng.standard_normal(n), np.ones(8)) * 0.02
    return (out * gate + breath * gate).astype(np.float32)


def whistle(notes, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Whistle: a sine (plus a faint octave) scooping up a quarter tone into each note, with band-limited breath."""
    n = int(seconds * SR)
    midi, gate = contour(notes, n, glide=0.03, rng=rng)
    scoop = np.zeros(n)
    for _, start, _ in notes:
        a = int(start * SR)
        m = min(int(0.04 * SR), n - a)
        scoop[a:a + m] = -0.5 * np.linspace(1, 0, m)
    f0 = 440 * 2 ** ((midi - 69 + scoop + vibrato(n, 6.0, 0.12, rng)) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    tone = np.sin(phase) + 0.04 * np.sin(2 * phase)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    band = np.exp(-0.5 * ((freqs - np.median(f0)) / 400) ** 2) + 0.05  # breath, strongest near the tone
    breath = np.fft.irfft(spectrum * band, n)
    breath *= 0.12 / np.std(breath)
    return ((tone + breath) * gate).astype(np.float32)


def instrument(notes, program: int, seconds: float) -> np.ndarray:
    """Render `notes` on a General-MIDI `program` (channel 0) with tinysoundfont."""
    paths = soundfont_paths()
    font = load_soundfont(next((p for p in paths if p == DEBIAN_SOUNDFONTS[0]), paths[0]))
    font.reset()
    font.channel_set_preset_number(0, program, False)
    n = int(seconds * SR)
    out = np.zeros(n, np.float32)
    view, pos = memoryview(out).cast("B"), 0
    events = sorted([(int(s * SR), 1, p) for p, s, _ in notes] + [(int((e - 0.03) * SR), 0, p) for p, _, e in notes])
    for sample, on, pitch in events:
        sample = min(sample, n)
        font.render(view[4 * pos:4 * sample], False)
        pos = sample
        if on:
            font.channel_note_on(0, pitch, 0.8)
        else:
            font.channel_note_off(0, pitch)
    font.render(view[4 * pos:], False)
    return out


VOICES = {"hum": hum, "whistle": whistle, "piano": lambda notes, rng, seconds: instrument(notes, 0, seconds)}
