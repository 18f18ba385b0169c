"""The pre-extracted melody database (musicgen_core/train/melodies.json.gz) and its windowing helpers."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from musicgen_core.train.melodies import (DEFAULT_PATH, Melody, chorale_window, load_melodies, melody_window,
                                          split_key, split_melodies)

CONSONANT = {0, 3, 4, 7, 8, 9}  # interval classes (perfect fourth excluded: dissonant against the bass)


@pytest.fixture(scope="module")
def melodies():
    return load_melodies()


def _sample(melodies, n, seed=0, chorales=False):
    pool = [m for m in melodies if (m.voices is not None) == chorales]
    return [pool[i] for i in np.random.default_rng(seed).choice(len(pool), n, replace=False)]


def test_loads_with_plausible_counts(melodies):
    fresh = load_melodies.__wrapped__(DEFAULT_PATH)
    assert len(fresh) == len(melodies) and load_melodies() is melodies  # cached
    counts = collections.Counter(m.source for m in melodies)
    assert counts["bach"] > 300 and sum(counts.values()) - counts["bach"] > 10_000
    assert {"essen", "oneills", "aird", "ryans", "miscfolk"} <= set(counts)
    assert all(m.voices is not None and len(m.voices) == 3 for m in melodies if m.source == "bach")
    modes = collections.Counter(m.mode for m in melodies)
    assert set(modes) == {"major", "minor"} and modes["minor"] > 0.1 * len(melodies)
    assert all(0 <= m.tonic < 12 and m.meter[1] in (1, 2, 4, 8, 16) and m.n_bars >= 4 for m in melodies)


def test_notes_monophonic_on_bar_grid(melodies):
    for m in _sample(melodies, 300) + _sample(melodies, 30, chorales=True):
        assert isinstance(m, Melody) and m.bar_length == m.meter[0] * 4 / m.meter[1]
        for part in (m.notes, *(m.voices or ())):
            on = np.array([n[1] for n in part])
            dur = np.array([n[2] for n in part])
            assert all(0 < p < 128 for p, _, _ in part) and (dur > 0).all()
            assert (on[1:] >= on[:-1] + dur[:-1] - 1e-6).all()  # monophonic, sorted
            assert on[0] >= -m.bar_length  # at most one pickup bar before the first downbeat


def test_split_deterministic_disjoint_grouped(melodies):
    train, held = split_melodies(melodies)
    assert (train, held) == split_melodies(melodies)
    assert len(train) + len(held) == len(melodies) and not set(map(id, train)) & set(map(id, held))
    assert 0.03 < len(held) / len(melodies) < 0.07
    assert any(m.source == "bach" for m in held) and any(m.source == "essen" for m in held)
    held_keys = {split_key(m.title) for m in held}
    assert not any(split_key(m.title) in held_keys for m in train)  # variants of one title stay together
    assert split_key("Aus meines Herzens Grunde, BWV 269") == "ausmeinesherzensgrunde"


def _expected_windows(m: Melody, n_bars: int):
    """Every bar-aligned window, computed independently (untransposed)."""
    bar = m.bar_length
    for k in range(max(m.n_bars - n_bars, 0) + 1):
        t0, t1 = k * bar, (k + n_bars) * bar
        yield [(p, max(on, t0) - t0, min(on + d, t1) - max(on, t0)) for p, on, d in m.notes
               if on < t1 - 1e-6 and on + d > t0 + 1e-6]


def _same(a, b):
    return len(a) == len(b) and all(x[0] == y[0] and abs(x[1] - y[1]) < 1e-6 and abs(x[2] - y[2]) < 1e-6
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("n_bars", [2, 4, 8])
def test_window_bar_aligned_and_transposed(melodies, n_bars):
    rng = np.random.default_rng(n_bars)
    for i, m in enumerate(_sample(melodies, 60, seed=n_bars)):
        plain = melody_window(m, n_bars, np.random.default_rng(i))
        assert any(_same(plain, w) for w in _expected_windows(m, n_bars))
        assert all(0 <= on and on + d <= n_bars * m.bar_length + 1e-6 for _, on, d in plain)
        target = int(rng.integers(12))
        moved = melody_window(m, n_bars, np.random.default_rng(i), transpose_to=target)
        shifts = {q[0] - p[0] for p, q in zip(plain, moved)}
        assert len(shifts) <= 1 and [n[1:] for n in plain] == [n[1:] for n in moved]
        if plain:
            assert (shifts.pop() - (target - m.tonic)) % 12 == 0
            lo, hi = min(n[0] for n in moved), max(n[0] for n in moved)
            assert abs((lo + hi) / 2 - 72) <= 6


def test_window_short_tune_and_mode_change(melodies):
    m = min(melodies, key=lambda m: m.n_bars)
    assert any(_same(melody_window(m, 64, np.random.default_rng(0)), w) for w in _expected_windows(m, 64))
    for m in [m for m in _sample(melodies, 200, seed=3) if m.mode == "major"][:30]:
        minor = melody_window(m, 8, np.random.default_rng(1), transpose_to=m.tonic, mode="minor")
        same = melody_window(m, 8, np.random.default_rng(1), transpose_to=m.tonic, mode="major")
        assert not {(p - m.tonic) % 12 for p, _, _ in minor} & {4, 9, 11}
        assert all(abs(a[0] - b[0]) <= 1 for a, b in zip(minor, same))
    with pytest.raises(ValueError):
        melody_window(m, 4, np.random.default_rng(0), mode="dorian")


def test_chorale_voices_aligned(melodies):
    rates = []
    for i, m in enumerate(_sample(melodies, 25, seed=5, chorales=True)):
        s, a, t, b = chorale_window(m, 4, np.random.default_rng(i), transpose_to=(m.tonic + 5) % 12)
        assert _same(s, melody_window(m, 4, np.random.default_rng(i), transpose_to=(m.tonic + 5) % 12))
        plain = chorale_window(m, 4, np.random.default_rng(i))
        assert len({q[0] - p[0] for v, w in zip(plain, (s, a, t, b)) for p, q in zip(v, w)}) == 1
        means = [np.mean([n[0] for n in v]) for v in (s, a, t, b)]
        assert means == sorted(means, reverse=True)  # S > A > T > B on average
        for p, on, _ in s:  # soprano against the bass sounding at each soprano onset
            bass = [q for q, bon, bd in b if bon <= on + 1e-6 < bon + bd]
            if bass:
                rates.append((p - bass[0]) % 12 in CONSONANT)
    assert np.mean(rates) > 0.8  # misaligned voices would give ~0.5
    with pytest.raises(ValueError):
        chorale_window(next(m for m in melodies if m.voices is None), 4, np.random.default_rng(0))
