"""Real tunes for the procedural training data: folk melodies and Bach chorales from music21's corpus.

`melodies.json.gz` (next to this file) is made once by scripts/extract_melodies.py; see there for the format and how
keys, meters and pickups were derived. Runtime needs only numpy and the standard library.

Time base: quarter notes. Onsets are relative to the first downbeat, so bar lines fall at multiples of `bar_length`
and pickup (anacrusis) notes have negative onsets. Melodies are monophonic; rests are simply gaps between notes.
"""
from __future__ import annotations

import functools
import gzip
import json
import math
import re
import zlib
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import numpy as np

Note = tuple[int, float, float]  # (MIDI pitch, onset, duration) in quarter notes
DEFAULT_PATH = Path(__file__).with_name("melodies.json.gz")
HELD_OUT_PERCENT = 5
CENTER_PITCH = 72  # transposed windows are centred here, i.e. roughly within MIDI 60-84
# parallel-mode maps on semitones above the tonic: major -> natural minor lowers degrees 3, 6, 7; minor -> major raises
_MODE_MAPS = {("major", "minor"): {4: 3, 9: 8, 11: 10}, ("minor", "major"): {3: 4, 8: 9, 10: 11}}
_EPS = 1e-6


@dataclass(frozen=True)
class Melody:
    """One tune. `voices` is (alto, tenor, bass) for Bach chorales (same time base as `notes`), else None."""

    notes: tuple[Note, ...]
    tonic: int  # pitch class 0-11
    mode: str  # "major" or "minor"
    meter: tuple[int, int]  # time signature (numerator, denominator)
    source: str  # essen, oneills, aird, ryans, miscfolk, nottingham or bach
    title: str
    voices: tuple[tuple[Note, ...], ...] | None = None

    @property
    def bar_length(self) -> float:
        """Quarter notes per bar."""
        return self.meter[0] * 4 / self.meter[1]

    @property
    def end(self) -> float:
        """End of the last note of any voice (quarter notes after the first downbeat)."""
        return max(part[-1][1] + part[-1][2] for part in (self.notes, *(self.voices or ())))

    @property
    def n_bars(self) -> int:
        """Bars from the first downbeat to the end (a final partial bar counts)."""
        return max(1, math.ceil(self.end / self.bar_length - _EPS))


def _decode(pitches: list[int], durations: list[int], start: int, unit: int) -> tuple[Note, ...]:
    """Contiguous (pitch, duration) events from `start` (units of 1/unit quarter note, pitch 0 = rest) -> notes."""
    return tuple((p, t / unit, d / unit) for p, t, d in zip(pitches, accumulate(durations, initial=start), durations)
                 if p)


@functools.lru_cache(maxsize=4)
def load_melodies(path: str | Path | None = None) -> tuple[Melody, ...]:
    """All melodies of the committed database (or of `path`), cached per path."""
    data = json.loads(gzip.decompress(Path(path or DEFAULT_PATH).read_bytes()))
    unit = data["unit"]
    out = []
    for it in data["items"]:
        start = -it["a"]
        voices = tuple(_decode(p, d, start, unit) for p, d in it["v"]) if "v" in it else None
        out.append(Melody(_decode(it["p"], it["d"], start, unit), it["k"], ("major", "minor")[it["m"]],
                          tuple(it["ts"]), it["s"], it["t"], voices))
    return tuple(out)


def split_key(title: str) -> str:
    """Normalised title (lower-case letters and digits before any '(' or ','): variants of one tune share it."""
    head = re.sub(r"[\W_]", "", re.split(r"[(,]", title.lower())[0])
    return head or re.sub(r"[\W_]", "", title.lower())


def is_held_out(melody: Melody) -> bool:
    """Stable (crc32, not Python's salted hash) ~5 % selection by normalised title."""
    return zlib.crc32(split_key(melody.title).encode()) % 100 < HELD_OUT_PERCENT


def split_melodies(melodies) -> tuple[tuple[Melody, ...], tuple[Melody, ...]]:
    """(train, held_out): held-out tunes are for evaluating melody conditioning and never used in training."""
    held = [is_held_out(m) for m in melodies]
    return (tuple(m for m, h in zip(melodies, held) if not h), tuple(m for m, h in zip(melodies, held) if h))


def _window(melody: Melody, parts, n_bars: int, rng: np.random.Generator, transpose_to: int | None,
            mode: str | None) -> list[list[Note]]:
    """Cut the same random n_bars window from every part (see melody_window)."""
    if mode not in (None, "major", "minor"):
        raise ValueError(f"mode must be 'major', 'minor' or None, not {mode!r}")
    bar = melody.bar_length
    first = int(rng.integers(0, max(melody.n_bars - n_bars, 0) + 1))
    t0, t1 = first * bar, (first + n_bars) * bar
    cut = [[(p, max(on, t0) - t0, min(on + d, t1) - max(on, t0)) for p, on, d in part
            if on < t1 - _EPS and on + d > t0 + _EPS] for part in parts]
    mapping = _MODE_MAPS.get((melody.mode, mode), {})
    shift = 0
    if transpose_to is not None:
        lead = [p for p, _, _ in cut[0]] or [p for p, _, _ in melody.notes]
        mid = (min(lead) + max(lead)) / 2
        shift = min(((transpose_to - melody.tonic) % 12 + 12 * k for k in range(-6, 6)),
                    key=lambda s: abs(mid + s - CENTER_PITCH))

    def move(p: int) -> int:
        degree = (p - melody.tonic) % 12
        return p + mapping.get(degree, degree) - degree + shift

    return [[(move(p), on, d) for p, on, d in part] for part in cut]


def melody_window(melody: Melody, n_bars: int, rng: np.random.Generator, transpose_to: int | None = None,
                  mode: str | None = None) -> list[Note]:
    """A random bar-aligned window of n_bars bars: onsets re-based to 0 at its first bar line.

    Notes are clipped to the window (a note held over its start begins at 0, one running past its end is cut);
    pickup notes are never included. A tune shorter than n_bars gives all its bars. transpose_to: tonic pitch class
    to move to, at the octave that centres the window near MIDI 72 (about 60-84). mode: "major"/"minor" maps a tune
    of the other mode to the parallel mode (major -> natural minor lowers scale degrees 3, 6, 7; minor -> major
    raises them). Consumes one rng draw, like chorale_window, which returns the same window for the same rng state.
    """
    return _window(melody, (melody.notes,), n_bars, rng, transpose_to, mode)[0]


def chorale_window(melody: Melody, n_bars: int, rng: np.random.Generator, transpose_to: int | None = None,
                   mode: str | None = None) -> tuple[list[Note], list[Note], list[Note], list[Note]]:
    """melody_window for a chorale's (soprano, alto, tenor, bass), all shifted by the soprano's transposition."""
    if melody.voices is None:
        raise ValueError(f"{melody.title!r} has no accompanying voices")
    return tuple(_window(melody, (melody.notes, *melody.voices), n_bars, rng, transpose_to, mode))
