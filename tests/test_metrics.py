"""Metrics on cases with a known answer."""
from __future__ import annotations

import numpy as np
import pytest

from musicgen_core.eval import metrics

SR = 32000


def tone(freq, seconds=3.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chord(midis, seconds, sr=SR):
    return sum(tone(440 * 2 ** ((m - 69) / 12), seconds, sr) for m in midis) / len(midis)


def test_chroma_cosine_known_answers():
    a4 = tone(440.0)
    assert metrics.chroma_cosine(a4, a4) == pytest.approx(1.0)
    assert metrics.chroma_cosine(tone(880.0), a4) == pytest.approx(1.0)  # same pitch class, other octave
    assert metrics.chroma_cosine(tone(466.16), a4) == pytest.approx(0.0)  # Bb vs A
    noise = np.random.default_rng(0).standard_normal(len(a4)).astype(np.float32) * 0.3
    assert metrics.chroma_cosine(noise, a4) < 0.5
    a4_16k = tone(440.0, sr=16000)
    assert metrics.chroma_cosine(a4_16k, a4_16k, sample_rate=16000) == pytest.approx(1.0)


def test_tempo_of_a_click_track():
    clicks, rng = np.zeros(10 * SR, np.float32), np.random.default_rng(0)
    for beat in np.arange(0, 10, 60 / 120):  # decaying noise bursts, like a hi-hat, every half second
        i = int(beat * SR)
        clicks[i:i + 800] = rng.standard_normal(800) * np.exp(-np.arange(800) / 150)
    est = metrics.estimate_tempo(clicks, SR)
    assert metrics.tempo_matches(est, 120) and not metrics.tempo_matches(est, 100)
    assert not metrics.tempo_matches(est, 60) and metrics.tempo_matches(est, 60, metrical=True)
    assert metrics.tempo_matches(est, 40, metrical=True) and not metrics.tempo_matches(est, 90, metrical=True)


@pytest.mark.parametrize("progression, key", [
    ([[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]], (0, "major")),  # C: I IV V I
    ([[57, 60, 64], [62, 65, 69], [64, 68, 71], [57, 60, 64]], (9, "minor")),  # a: i iv V i
])
def test_key_of_a_chord_progression(progression, key):
    wav = np.concatenate([chord(c, 1.0) for c in progression * 2])
    assert metrics.estimate_key(wav, SR) == key


def test_reconstruction_metrics():
    x = tone(330.0, 1.0)
    noisy = x + 0.05 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    assert metrics.mel_distance(x, x) < 1e-4 < metrics.mel_distance(noisy, x)
    assert metrics.si_sdr(x, x) > 60 > metrics.si_sdr(noisy, x) > 5


def test_collapse_report():
    silent = metrics.collapse_report(np.zeros(3 * SR, np.float32), SR)
    assert silent["silent_seconds"] == 3
    loop = np.tile(chord([60, 64, 67], 1.0), 10)
    assert metrics.collapse_report(loop, SR)["repetitive_fraction"] > 0.8
    melody = np.concatenate([tone(440 * 2 ** (k / 12), 1.0) for k in (0, 3, 7, 2, 5, 9)])
    report = metrics.collapse_report(melody, SR)
    assert report["silent_seconds"] == 0 and report["repetitive_fraction"] < 0.3
