"""Training voices for melody conditioning: a clip's tune sung, hummed or whistled the way users record it.

A source-filter voice (Fant 1960): a glottal pulse train read from a wavetable at the instantaneous pitch, shaped by
a cascade of formant resonators for a vowel (or a nasal murmur for a hum), with the imperfections of untrained
singers: scoops into notes, overshoot, per-note intonation error, slow drift, delayed vibrato, consonant onsets,
breath; then a room, a microphone band and background noise. Whistles are a sine with breath. Tunes are moved by
whole octaves into the voice's register, so pitch classes (what the chroma conditioning sees) never change.

This model is independent of the evaluation voices (`eval/voices.py`), which stay held out: the LM never hears
them in training. Notes are `(MIDI pitch, start_s, end_s)`; output is float32 mono at 32 kHz at -20 dBFS RMS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

SR = 32000
# Formant centre frequencies (Hz) of an adult male voice, after Peterson & Barney (1952); bandwidths grow with F.
VOWELS = {"a": (730, 1090, 2440, 3400), "e": (530, 1840, 2480, 3500), "i": (270, 2290, 3010, 3700),
          "o": (570, 840, 2410, 3300), "u": (300, 870, 2240, 3300), "schwa": (500, 1500, 2500, 3500)}
HUM_FORMANTS = (250, 1000, 2200, 3300)  # closed mouth: a strong nasal murmur and weak upper resonances
REGISTERS = {  # median sung pitch (MIDI) range and formant scale (vocal-tract length)
    "low": ((41, 52), 1.0),  # bass / baritone, F2..E3
    "mid": ((50, 60), 1.08),  # tenor / alto, D3..C4
    "high": ((57, 72), 1.18),  # soprano / child, A3..C5
    "whistle": ((74, 90), 1.0),  # D5..F#6
}
KINDS = ("hum", "vowel", "syllables", "whistle")


@dataclass(frozen=True)
class Voice:
    kind: str  # one of KINDS
    register: str  # a key of REGISTERS
    vowel: str = "a"
    median_midi: float = 48.0  # where the tune's median pitch is moved (by whole octaves only)
    tilt: float = 1.0  # glottal source brightness: open quotient of the pulse (0.4 pressed .. 0.8 breathy)
    vibrato_hz: float = 5.5
    vibrato_cents: float = 30.0
    vibrato_delay: float = 0.3  # seconds into a note before vibrato sets in
    scoop_cents: float = 80.0  # starting this far below each note ...
    scoop_s: float = 0.06  # ... and gliding up over this long
    intonation_cents: float = 15.0  # s.d. of each note's pitch error
    drift_cents: float = 20.0  # slow wander over the clip
    breath_db: float = -30.0  # breath noise relative to the voice
    room_rt60: float = 0.3  # seconds; 0 = dry
    room_wet: float = 0.2
    band: tuple[float, float] = (100.0, 7000.0)  # microphone / phone band (Hz)
    snr_db: float = 30.0  # background noise


def random_voice(rng: np.random.Generator, register: str | None = None, kind: str | None = None) -> Voice:
    """A voice drawn over the ranges people record with (any register and kind unless given)."""
    kind = kind or str(rng.choice(KINDS, p=(0.35, 0.25, 0.25, 0.15)))
    if register is None:
        register = "whistle" if kind == "whistle" else str(rng.choice(("low", "mid", "high")))
    lo, hi = REGISTERS[register][0]
    return Voice(
        kind=kind, register=register, vowel=str(rng.choice(list(VOWELS))), median_midi=rng.uniform(lo, hi),
        tilt=rng.uniform(0.4, 0.8), vibrato_hz=rng.uniform(4.5, 7.0), vibrato_cents=rng.uniform(0, 60),
        vibrato_delay=rng.uniform(0.1, 0.5), scoop_cents=rng.uniform(0, 200), scoop_s=rng.uniform(0.02, 0.12),
        intonation_cents=rng.uniform(0, 30), drift_cents=rng.uniform(0, 25), breath_db=rng.uniform(-40, -15),
        room_rt60=rng.choice((0.0, rng.uniform(0.2, 1.2))), room_wet=rng.uniform(0.05, 0.4),
        band=(rng.uniform(60, 250), rng.uniform(3500, 12000)), snr_db=rng.uniform(10, 45))


def fit_register(notes, median_midi: float) -> list[tuple[int, float, float]]:
    """Notes moved by the whole octaves that bring their median pitch nearest `median_midi`."""
    shift = 12 * round((median_midi - float(np.median([p for p, _, _ in notes]))) / 12)
    return [(int(p) + shift, s, e) for p, s, e in notes]


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    k = np.hanning(max(3, int(seconds * SR)))
    return fftconvolve(x, k / k.sum(), mode="same")


def pitch_track(notes, n: int, voice: Voice, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample pitch (fractional MIDI) and amplitude gate [n] for the notes sung by `voice`."""
    midi, gate, t = np.full(n, float(notes[0][0])), np.zeros(n), np.arange(n) / SR
    cents = np.zeros(n)
    for i, (pitch, start, end) in enumerate(notes):
        a, b = int(start * SR), min(n, int(end * SR))
        if a >= n:
            break
        midi[a:] = pitch
        legato = i + 1 < len(notes) and notes[i + 1][1] - end < 0.02 and rng.random() < 0.5
        gate[a:max(a + 1, b - (0 if legato else int(rng.uniform(0.02, 0.08) * SR)))] = 1.0
        cents[a:b] += rng.normal(0, voice.intonation_cents)
        m = min(b - a, int(voice.scoop_s * SR))  # scoop up into the note, sometimes overshooting a little
        ramp = np.linspace(0, 1, m)
        cents[a:a + m] += -voice.scoop_cents * (1 - ramp) ** 2 + rng.uniform(0, 25) * np.sin(np.pi * ramp)
        onset = np.clip((t[a:b] - start - voice.vibrato_delay) / 0.2, 0, 1)  # vibrato fades in after a delay
        cents[a:b] += onset * voice.vibrato_cents * np.sin(2 * np.pi * voice.vibrato_hz * (t[a:b] - start))
    wander = _smooth(rng.standard_normal(n), 1.0)
    cents += wander / (np.std(wander) + 1e-12) * voice.drift_cents
    return _smooth(midi, 0.015) + cents / 100, _smooth(gate, 0.03)


def glottal_table(open_quotient: float, size: int = 2048) -> np.ndarray:
    """One period of the glottal flow derivative (Rosenberg 1971 pulse, differentiated), zero mean, unit peak."""
    phase = np.arange(size) / size
    rise, fall = 0.6 * open_quotient, 0.4 * open_quotient
    flow = np.where(phase < rise, 0.5 * (1 - np.cos(np.pi * phase / rise)),
                    np.where(phase < rise + fall, np.cos(0.5 * np.pi * (phase - rise) / fall), 0.0))
    d = np.diff(flow, append=flow[0])
    d -= d.mean()
    return d / np.abs(d).max()


def resonators(x: np.ndarray, formants, scale: float) -> np.ndarray:
    """Cascade of two-pole resonators (one per formant, bandwidth 60 Hz + 6 % of its frequency), unit gain at DC."""
    for f in formants:
        f = min(f * scale, 0.45 * SR)
        r = np.exp(-np.pi * (60 + 0.06 * f) / SR)
        a = (1, -2 * r * np.cos(2 * np.pi * f / SR), r * r)
        x = lfilter((sum(a),), a, x)
    return x


def room(x: np.ndarray, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise as an impulse response (a small room to a hall), mixed `wet` with the dry voice."""
    if rt60 <= 0:
        return x
    t = np.arange(int(rt60 * SR)) / SR
    ir = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60)
    tail = fftconvolve(x, ir)[:len(x)]
    return (1 - wet) * x + wet * tail * np.std(x) / (np.std(tail) + 1e-12)


def sing(notes, seconds: float, rng: np.random.Generator, voice: Voice | None = None) -> np.ndarray:
    """The tune `notes` performed by `voice` (random if None) over `seconds`: float32 [round(seconds * SR)]."""
    voice = voice or random_voice(rng)
    n = round(seconds * SR)
    if not notes:
        return np.zeros(n, np.float32)
    midi, gate = pitch_track(fit_register(notes, voice.median_midi), n, voice, rng)
    phase = np.cumsum(440 * 2 ** ((midi - 69) / 12) / SR) % 1.0
    breath = rng.standard_normal(n)
    if voice.kind == "whistle":
        tone = np.sin(2 * np.pi * phase) + 0.03 * np.sin(4 * np.pi * phase)
        breath = resonators(breath, (float(np.median(440 * 2 ** ((midi - 69) / 12))),), 1.0)
    else:
        table = glottal_table(voice.tilt)
        source = table[(phase * len(table)).astype(int)] * (1 + 0.05 * _smooth(rng.standard_normal(n), 0.01))
        formants = HUM_FORMANTS if voice.kind == "hum" else VOWELS[voice.vowel]
        tone = resonators(source, formants, REGISTERS[voice.register][1])
        if voice.kind == "hum":
            tone = lfilter((0.15,), (1, -0.85), tone)  # the closed mouth damps the highs
        breath = resonators(breath, formants, REGISTERS[voice.register][1])
    tone *= 1 / (np.std(tone) + 1e-12)
    breath *= 10 ** (voice.breath_db / 20) / (np.std(breath) + 1e-12)
    out = (tone + breath) * gate
    if voice.kind == "syllables":  # "da da", "la la": a short noise burst and a dip at each note's onset
        for _, start, _ in notes:
            a = int(start * SR)
            m = min(n - a, int(0.025 * SR))
            if m > 0:
                out[a:a + m] = out[a:a + m] * np.linspace(0.2, 1, m) + 0.3 * rng.standard_normal(m) * np.hanning(m)
    out = room(out, voice.room_rt60, voice.room_wet, rng)
    lo, hi = voice.band
    out = sosfilt(butter(2, (lo, min(hi, 0.45 * SR)), "bandpass", fs=SR, output="sos"), out)
    rms = np.sqrt(np.mean(out ** 2)) + 1e-12
    noise = _smooth(rng.standard_normal(n), 0.0002)  # slightly coloured background
    out = out / rms + noise / (np.std(noise) + 1e-12) * 10 ** (-voice.snr_db / 20)
    return (out * 0.1 / np.sqrt(np.mean(out ** 2))).astype(np.float32)
