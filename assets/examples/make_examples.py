"""Make the demo's example melodies (public-domain tunes, synthesised here): `python assets/examples/make_examples.py`.

- ode_to_joy_hum.wav: a hummed voice (harmonics shaped by nasal "mm" formants, vibrato, glides, breath);
- twinkle_whistle.wav: a whistle (near-pure tone with scoops into notes and breath noise);
- frere_jacques_piano.wav: a General-MIDI acoustic grand piano rendered with tinysoundfont (FluidR3 Mono when Debian's
  fluidr3mono-gm-soundfont is installed, else the TimGM6mb font inside the pretty_midi wheel).

Each is mono 32 kHz 16-bit WAV, under 8 s. The random generator is seeded, so the files are reproducible.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for musicgen_core
from musicgen_core.train.render import DEBIAN_SOUNDFONTS, finish, load_soundfont, soundfont_paths  # noqa: E402

SR = 32000
OUT = Path(__file__).resolve().parent
# (MIDI pitch, beats); public-domain tunes
ODE_TO_JOY = [(64, 1), (64, 1), (65, 1), (67, 1), (67, 1), (65, 1), (64, 1), (62, 1),
              (60, 1), (60, 1), (62, 1), (64, 1), (64, 1.5), (62, 0.5), (62, 2)]
TWINKLE = [(72, 1), (72, 1), (79, 1), (79, 1), (81, 1), (81, 1), (79, 2),
           (77, 1), (77, 1), (76, 1), (76, 1), (74, 1), (74, 1), (72, 2)]
FRERE_JACQUES = [(65, 1), (67, 1), (69, 1), (65, 1), (65, 1), (67, 1), (69, 1), (65, 1),
                 (69, 1), (70, 1), (72, 2), (69, 1), (70, 1), (72, 2)]


def timeline(notes, bpm: float, lead_in: float = 0.3) -> list[tuple[int, float, float]]:
    """(pitch, start_s, end_s) per note."""
    out, t = [], lead_in
    for pitch, beats in notes:
        out.append((pitch, t, t + beats * 60 / bpm))
        t += beats * 60 / bpm
    return out


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


def main() -> None:
    rng = np.random.default_rng(1785)
    clips = {
        "ode_to_joy_hum.wav": hum(timeline(ODE_TO_JOY, 132), rng, 7.9),
        "twinkle_whistle.wav": whistle(timeline(TWINKLE, 132), rng, 7.9),
        "frere_jacques_piano.wav": instrument(timeline(FRERE_JACQUES, 132), 0, 7.9),
    }
    for name, audio in clips.items():
        sf.write(OUT / name, finish(audio, -20.0), SR, subtype="PCM_16")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
