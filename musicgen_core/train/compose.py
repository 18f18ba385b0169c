"""Procedural composition: a `Style` and a random generator -> a symbolic multi-track `Piece`.

Harmony comes from Roman-numeral progression families with voice-led voicings; drums, bass and comping from the
16th-note grid patterns of styles.py; the melody is procedural (rhythm motifs repeated in
phrases, chord tones on strong beats, stepwise motion between, a cadence at phrase ends) or a bar-aligned window of a
real tune harmonised bar by bar; Bach chorales bring their own alto, tenor and bass. Times are in quarter notes until
`Piece` converts them to seconds relative to the clip start (notes may start before 0: the renderer pre-rolls them).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .melodies import chorale_window, melody_window
from .styles import (BASS, BASS_LOW, BASS_LOW_HIGHER, BASS_OFFBEAT, CADENCE_ROOT_BONUS, CHORALE_GATE, CHORD_ORDER,
                     CHORD_OUTSIDE, COMP, COMP_RANGE, COUNTER_GATE, COUNTER_HALVES_PROB, COUNTER_HIGH, COUNTER_LOW,
                     COUNTER_START, CRASH_PATTERNS, CRASH_PROB, CRASH_Q, CRASH_VELOCITY, DEFAULT_LEAD_RANGE,
                     DENSITY_BPM, DOWNBEAT_START, DRUMS, FILL_PROB, FILL_TOMS, FILL_TOM_PROB, FILL_VELOCITY, GATE,
                     GUITARS, HIGH_BASSES, HIT_Q, LEAD_ACCENT, LEAD_GATE, LEAD_RANGES, LEAP, LEAP_PROB, MAX_START_BARS,
                     MAX_START_S, MIN_NOTE_S, ON_BEAT_WEIGHT, PAD_RANGE, PHRASE_BARS, POWER_LOW, PROGRESSIONS,
                     RANGE_MARGIN, REST_PROB, SECOND_PROB, STACCATO, STEP_Q, STEP_REACH, STRUM_S, SWING_DIVISOR,
                     TURN_PROB, VOICE_GATE, VOICE_LEADS, Part, Style, instrument_name)
from .styles import C as CRASH, S as SNARE

QUALITIES = {"": (0, 4, 7), "m": (0, 3, 7), "dim": (0, 3, 6), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
             "m7": (0, 3, 7, 10), "m7b5": (0, 3, 6, 10), "add9": (0, 4, 7, 14), "sus4": (0, 5, 7)}
_NUMERALS = {"I": 0, "II": 2, "III": 4, "IV": 5, "V": 7, "VI": 9, "VII": 11}
VELOCITY = {"X": 1.0, "x": 0.8, "o": 0.45}
ROLE_VELOCITY = {"drums": 105, "bass": 96, "comp": 74, "pad": 62, "counter": 72, "lead": 102}


@dataclass
class Track:
    """One instrument: GM program (a kit number in bank 128 when `is_drum`) and (pitch, start_s, end_s, vel)."""

    role: str
    program: int
    is_drum: bool = False
    notes: list[tuple[int, float, float, int]] = field(default_factory=list)


@dataclass
class Piece:
    """A clip's score. Times are seconds from the clip start; `melody` holds the exact lead notes in the clip."""

    style: str
    bpm: int
    meter: tuple[int, int]
    tonic: int
    mode: str
    tracks: list[Track]
    melody: list[tuple[int, float, float]]
    lead_program: int
    voice_lead: bool
    melody_source: str  # "procedural" | "folk" | "chorale"
    melody_title: str
    chords: list[str]
    duration: float
    start: float = 0.0  # seconds from the piece's first downbeat to the clip start (clips start anywhere in a bar)

    @property
    def instruments(self) -> list[str]:
        """Plain-word instrument names, lead first, without duplicates."""
        order = ("lead", "comp", "pad", "counter", "bass", "drums")
        names = [instrument_name(t.program, t.is_drum) for r in order for t in self.tracks if t.role == r]
        return list(dict.fromkeys(names))


def parse_chord(symbol: str, tonic: int) -> tuple[int, tuple[int, ...]]:
    """Roman numeral relative to the major scale of `tonic` (e.g. "bVII7", "iiø7", "ii°") -> (root pc, intervals)."""
    acc, numeral, suffix = re.fullmatch(r"([b#]?)([ivIV]+)(.*)", symbol).groups()
    quality = {"ø7": "m7b5", "°": "dim"}.get(suffix, suffix)
    if numeral.islower() and quality in ("", "7"):
        quality = "m" + quality
    return (tonic + _NUMERALS[numeral.upper()] + {"b": -1, "#": 1, "": 0}[acc]) % 12, QUALITIES[quality]


def _voicing(root: int, ivs: tuple[int, ...], prev: list[int], lo: int, hi: int) -> list[int]:
    """Close-position voicing of the chord inside [lo, hi] that moves least from `prev`."""
    pcs = [(root + i) % 12 for i in ivs[:4]]
    center = prev or [(lo + hi) // 2]
    best, best_cost = [], math.inf
    for inv in range(len(pcs)):
        order = pcs[inv:] + pcs[:inv]
        for octave in (0, 12):
            chord = [lo + (order[0] - lo) % 12 + octave]
            for pc in order[1:]:
                chord.append(chord[-1] + (pc - chord[-1]) % 12 or 12)
            if chord[-1] > hi:
                continue
            cost = sum(min(abs(c - p) for p in center) for c in chord)
            if cost < best_cost:
                best, best_cost = chord, cost
    return best or sorted(lo + (pc - lo) % 12 for pc in pcs)


def _altered_scale(base: list[int], chord_pcs: set[int], tonic: int) -> list[int]:
    """The scale under a chord: each chord tone outside it replaces the neighbouring scale tone it alters (F# for F
    over D7, Bb for B over C7, G# for G over E in A minor), keeping steps even and tonic and dominant where possible."""
    scale = set(base)
    for c in sorted(chord_pcs - scale):
        def cost(s):
            new = sorted(scale - {s} | {c})
            gaps = [(b - a) % 12 for a, b in zip(new, new[1:] + new[:1])]
            return max(gaps), s in ((tonic, (tonic + 7) % 12)), s in chord_pcs
        options = [s for s in ((c - 1) % 12, (c + 1) % 12) if s in scale]
        if options:
            scale = scale - {min(options, key=cost)} | {c}
    return sorted(scale)


def _grid(table: dict, name: str, bar_q: float, compound: bool, rng: np.random.Generator):
    """The pattern's grid (string or dict of strings) for this meter; 4/4 grids are cut or tiled to other meters."""
    steps = round(bar_q * 4)
    key = {(4, False): "4", (3, False): "3", (3, True): "68", (2, False): "2"}.get((bar_q, compound), "")
    variants = table[name]
    grid = variants.get(key) or (variants.get("68") if compound else None) or variants["4"]
    if isinstance(grid, tuple):
        grid = grid[rng.integers(len(grid))]
    fit = lambda s: (s * math.ceil(steps / len(s)))[:steps]  # noqa: E731
    return {k: fit(v) for k, v in grid.items()} if isinstance(grid, dict) else fit(grid)


def _hits(grid: str):
    """Yield (step, char, length in steps) for every onset in a grid string."""
    for i, ch in enumerate(grid):
        if ch not in "-.":
            n = 1
            while i + n < len(grid) and grid[i + n] == "-":
                n += 1
            yield i, ch, n


class _Composer:
    """Builds one piece; every random draw goes through `rng`, in a fixed order."""

    def __init__(self, rng: np.random.Generator, style: Style, duration: float, folk=(), chorales=(), playable=None):
        self.rng, self.style, self.duration = rng, style, duration
        self.playable = playable or (lambda program, pitch: True)
        self.mode = str(rng.choice(style.modes))
        self.tonic = int(rng.integers(12))
        self.tune, self.source = None, "procedural"
        pick = rng.random()
        if chorales and pick < style.chorale:
            self.tune, self.source = chorales[rng.integers(len(chorales))], "chorale"
        elif folk and pick < style.chorale + style.corpus:
            self.tune, self.source = folk[rng.integers(len(folk))], "folk"
        if self.source == "chorale":
            self.mode = self.tune.mode  # folk tunes are mapped to the drawn mode, chorales keep their harmony
        self.meter = tuple(self.tune.meter) if self.tune else style.meters[rng.integers(len(style.meters))]
        num, den = self.meter
        self.compound = den == 8 and num % 3 == 0
        self.beat_q = 1.5 if self.compound else 1.0
        self.bar_q = num * 4 / den
        self.bpm = int(rng.integers(style.tempo[0], style.tempo[1] + 1))
        self.sec_q = 60.0 / (self.bpm * self.beat_q)
        self.swing = 0.0 if self.compound else float(rng.uniform(*style.swing))
        bar_s = self.bar_q * self.sec_q
        late = rng.random() >= DOWNBEAT_START
        self.start = float(rng.uniform(0, min(MAX_START_BARS * bar_s, MAX_START_S))) if late else 0.0
        self.n_bars = math.ceil((self.start + duration) / bar_s) + 1

    def time(self, q: float) -> float:
        """Quarter-note position -> clip seconds, with swung off-beat eighths."""
        if self.swing and abs(q % 1 - 0.5) < 1e-6:
            q += self.swing / SWING_DIVISOR
        return q * self.sec_q - self.start

    def program(self, part: Part) -> int:
        return int(part.programs[self.rng.integers(len(part.programs))])

    def pattern(self, part: Part) -> str:
        return str(part.patterns[self.rng.integers(len(part.patterns))])

    def harmony(self, melody_q=None) -> list[tuple[int, tuple[int, ...]]]:
        """One chord per bar: a cycled progression, or the best diatonic triad under each bar of a real tune."""
        if melody_q is None:
            prog = PROGRESSIONS[self.style.progressions][self.mode]
            self.symbols = prog[self.rng.integers(len(prog))].split()
            self.symbols = [self.symbols[b % len(self.symbols)] for b in range(self.n_bars)]
        else:
            cands = (("I", "IV", "V", "vi", "ii", "iii") if self.mode == "major" else
                     ("i", "iv", "V", "bVI", "bIII", "bVII"))
            self.symbols = []
            for b in range(self.n_bars):
                w = np.zeros(12)
                for p, on, d in melody_q:
                    if b * self.bar_q <= on < (b + 1) * self.bar_q:
                        w[p % 12] += d * (ON_BEAT_WEIGHT if on % self.beat_q == 0 else 1.0)
                inside = [sum(w[(r + i) % 12] for i in ivs) for r, ivs in (parse_chord(c, self.tonic) for c in cands)]
                score = [fit - CHORD_OUTSIDE * (w.sum() - fit) - CHORD_ORDER * k for k, fit in enumerate(inside)]
                self.symbols.append(cands[int(np.argmax(score))])
        return [parse_chord(c, self.tonic) for c in self.symbols]

    def drums(self, part: Part) -> Track:
        track, name = Track("drums", self.program(part), True), self.pattern(part)
        grid = _grid(DRUMS, name, self.bar_q, self.compound, self.rng)
        fills = SNARE in grid
        for b in range(self.n_bars):
            q0 = b * self.bar_q
            last = b % PHRASE_BARS == PHRASE_BARS - 1
            fill_from = self.bar_q - self.beat_q if fills and last and self.rng.random() < FILL_PROB else self.bar_q
            for note, g in grid.items():
                for i, ch, _ in _hits(g):
                    if i * STEP_Q < fill_from:
                        self.add(track, note, q0 + i * STEP_Q, HIT_Q, ROLE_VELOCITY["drums"] * VELOCITY[ch])
            for j, tom in enumerate(FILL_TOMS[: int((self.bar_q - fill_from) / STEP_Q)]):
                self.add(track, tom if self.rng.random() < FILL_TOM_PROB else SNARE, q0 + fill_from + STEP_Q * j,
                         STEP_Q, FILL_VELOCITY)
            if name in CRASH_PATTERNS and b % PHRASE_BARS == 0 and self.rng.random() < CRASH_PROB:
                self.add(track, CRASH, q0, CRASH_Q, CRASH_VELOCITY)
        return track

    def chordal(self, role: str, part: Part, chords, lo: int, hi: int) -> Track:
        """Bass, comp or pad track from a grid pattern over the chord of each bar."""
        track, name = Track(role, self.program(part)), self.pattern(part) or "block"
        gate = GATE["staccato" if name in STACCATO else "legato"]
        guitar = track.program in GUITARS
        prev: list[int] = []
        for b, (root, ivs) in enumerate(chords):
            grid = _grid(BASS if role == "bass" else COMP, name, self.bar_q, self.compound, self.rng)
            q0 = b * self.bar_q
            if role == "bass":
                low = BASS_LOW_HIGHER if track.program in HIGH_BASSES else BASS_LOW
                r = low + (root - low) % 12
                nxt = low + (chords[(b + 1) % len(chords)][0] - low) % 12
                degree = {"R": 0, "3": ivs[1], "5": ivs[2], "7": ivs[3] if len(ivs) > 3 else 12, "8": 12, "6": 9}
                for i, ch, n in _hits(grid):
                    if ch == "w":
                        ch = "358"[self.rng.integers(3)]
                    p = nxt + (1 if self.rng.random() < 0.5 else -1) if ch == "a" else r + degree[ch]
                    self.add(track, p, q0 + i * STEP_Q, n * STEP_Q * gate,
                             ROLE_VELOCITY["bass"] * (1.0 if i == 0 else BASS_OFFBEAT))
                continue
            if name.startswith("power"):
                r = POWER_LOW + (root - POWER_LOW) % 12
                voiced = [r, r + 7, r + 12]
            elif name == "jazz_comp":
                voiced = prev = _voicing(root, ivs[1:] if len(ivs) > 3 else ivs, prev, lo, hi)
            else:
                voiced = prev = _voicing(root, ivs, prev, lo, hi)
            arp = 0
            for i, ch, n in _hits(grid):
                vel, dur = ROLE_VELOCITY[role] * VELOCITY.get(ch, VELOCITY["x"]), n * STEP_Q * gate
                if ch in "Xx":
                    for k, p in enumerate(voiced):
                        self.add(track, p, q0 + i * STEP_Q, dur, vel, dt=STRUM_S * k * guitar)
                else:
                    if ch == "n":
                        p, arp = (voiced + [voiced[0] + 12])[arp % (len(voiced) + 1)], arp + 1
                    else:
                        p = {"l": voiced[0], "m": voiced[len(voiced) // 2], "u": voiced[-1]}[ch]
                    self.add(track, p, q0 + i * STEP_Q, dur, vel)
        return track

    def rhythm(self, cadence: bool) -> list[float]:
        """Durations (quarters) filling one bar: cells per beat, denser with `style.density`, long at cadences."""
        rng, bq, bar = self.rng, self.beat_q, self.bar_q
        if cadence:
            return [bar] if rng.random() < 0.5 or bar <= bq else [bar - bq, bq]
        d = self.style.density * (DENSITY_BPM / self.bpm) ** 0.5
        cells = ([(1.5,), (1.0, 0.5), (0.5, 0.5, 0.5), (0.75, 0.25, 0.5), (3.0,)] if self.compound else
                 [(1.0,), (0.5, 0.5), (0.75, 0.25), (0.5, 0.25, 0.25), (0.25,) * 4, (2.0,), (1.5, 0.5)])
        weights = np.array([1 / d if sum(c) > bq or len(c) == 1 else d ** (len(c) - 1) for c in cells])
        out, t = [], 0.0
        while t < bar - 1e-6:
            ok = [k for k, c in enumerate(cells) if t + sum(c) <= bar + 1e-6]
            c = cells[ok[rng.choice(len(ok), p=weights[ok] / weights[ok].sum())]]
            out += c
            t += sum(c)
        return out

    def melody(self, chords, lo: int, hi: int) -> list[tuple[int, float, float]]:
        """Procedural melody in 4-bar phrases: rhythms A B A cadence, chord tones on strong beats, steps between."""
        rng, notes = self.rng, []
        steps = (0, 2, 4, 5, 7, 9, 11) if self.mode == "major" else (0, 2, 3, 5, 7, 8, 10)
        base = [(self.tonic + i) % 12 for i in steps]
        p, direction, motif = (lo + hi) // 2, 1, None
        for b, (root, ivs) in enumerate(chords):
            ctones = {(root + i) % 12 for i in ivs}
            scale = _altered_scale(base, ctones, self.tonic)
            pitches = [q for q in range(lo, hi + 1) if q % 12 in scale]
            chord_p = [q for q in pitches if q % 12 in ctones] or pitches
            pos = b % PHRASE_BARS
            if pos == 0 or motif is None:
                motif = self.rhythm(False)
            durs = self.rhythm(True) if pos == PHRASE_BARS - 1 else (self.rhythm(False) if pos == 1 else motif)
            t = b * self.bar_q
            for k, d in enumerate(durs):
                strong = (t - b * self.bar_q) % (2 * self.beat_q) == 0 or d >= self.beat_q
                if pos == PHRASE_BARS - 1 and k == 0:
                    p = min(chord_p, key=lambda q: (abs(q - p) + (0 if q % 12 == root else CADENCE_ROOT_BONUS)))
                elif strong:
                    near = [q for q in chord_p if abs(q - p) <= (LEAP if rng.random() < LEAP_PROB else STEP_REACH)]
                    near = near or chord_p
                    p = int(near[rng.integers(len(near))])
                else:
                    if rng.random() < TURN_PROB or not lo + RANGE_MARGIN <= p <= hi - RANGE_MARGIN:
                        direction = 1 if p < (lo + hi) // 2 else -1
                    i = min(range(len(pitches)), key=lambda j: abs(pitches[j] - p))
                    i += direction * (1 if rng.random() < SECOND_PROB else 2)
                    p = pitches[min(max(i, 0), len(pitches) - 1)]
                if not (pos != PHRASE_BARS - 1 and k > 0 and rng.random() < REST_PROB):
                    notes.append((p, t, d))
                t += d
        return notes

    def counter(self, part: Part, chords) -> Track:
        """Slow counter-melody: half or whole notes on guide tones (3rd, 7th) moving to the nearest one."""
        track = Track("counter", self.program(part))
        p = COUNTER_START
        for b, (root, ivs) in enumerate(chords):
            halves = 2 if self.rng.random() < COUNTER_HALVES_PROB and self.bar_q >= 2 else 1
            for h in range(halves):
                guide = [ivs[1] % 12, ivs[3] % 12 if len(ivs) > 3 else ivs[2]]
                cands = [q for q in range(COUNTER_LOW, COUNTER_HIGH) if (q - root) % 12 in guide]
                p = min(cands, key=lambda q: abs(q - p) + self.rng.random())
                dur = self.bar_q / halves
                self.add(track, p, b * self.bar_q + h * dur, dur * COUNTER_GATE, ROLE_VELOCITY["counter"])
        return track

    def add(self, track: Track, pitch: int, q: float, dur_q: float, vel: float, dt: float = 0.0) -> None:
        t0, t1 = self.time(q) + dt, self.time(q + dur_q)
        if not track.is_drum and not self.playable(track.program, pitch):  # a dead key in this font: other octave
            pitch = next((p for p in (pitch - 12, pitch + 12, pitch - 24) if self.playable(track.program, p)), pitch)
        if t0 < self.duration:
            track.notes.append((int(pitch), t0, max(t1, t0 + MIN_NOTE_S), int(min(127, max(1, vel)))))

    def compose(self) -> Piece:
        st, rng = self.style, self.rng
        lead_program = self.program(st.lead)
        voice = rng.random() < st.voice_lead
        if voice:
            lead_program = int(VOICE_LEADS[rng.integers(len(VOICE_LEADS))])
        lo, hi = LEAD_RANGES.get(lead_program, DEFAULT_LEAD_RANGE)
        mel_q, voices = (self.tune_window(lo, hi) if self.tune is not None else (None, {}))
        if not mel_q:  # no tune, or an empty window
            mel_q, self.tune, self.source = None, None, "procedural"
        chords = self.harmony(mel_q)
        if mel_q is None:
            mel_q = self.melody(chords, lo, hi)
        tracks = []
        lead = Track("lead", lead_program)
        for p, q, d in mel_q:
            accent = LEAD_ACCENT if q % self.beat_q == 0 else 0
            self.add(lead, p, q, d * (VOICE_GATE if voice else LEAD_GATE), ROLE_VELOCITY["lead"] + accent)
        tracks.append(lead)
        if voices:  # chorale: alto on the comp instrument, tenor on the pad/counter one, bass on the bass one
            for role, part, notes in (("comp", st.comp, voices["alto"]), ("pad", st.pad or st.counter or st.comp,
                                       voices["tenor"]), ("bass", st.bass or st.comp, voices["bass"])):
                track = Track(role, self.program(part or st.lead))
                for p, q, d in notes:
                    self.add(track, p, q, d * CHORALE_GATE, ROLE_VELOCITY["comp"])
                tracks.append(track)
        else:
            for role, part, lo_hi in (("comp", st.comp, COMP_RANGE), ("pad", st.pad, PAD_RANGE),
                                      ("bass", st.bass, None)):
                if part is not None and rng.random() < part.prob:
                    tracks.append(self.chordal(role, part, chords, *(lo_hi or (0, 0))))
            if st.counter is not None and rng.random() < st.counter.prob:
                tracks.append(self.counter(st.counter, chords))
        if st.drums is not None and rng.random() < st.drums.prob:
            tracks.append(self.drums(st.drums))
        melody = [(p, max(t0, 0.0), min(t1, self.duration)) for p, t0, t1, _ in lead.notes if t1 > 0]
        return Piece(st.name, self.bpm, tuple(self.meter), self.tonic, self.mode, tracks, melody, lead_program, voice,
                     self.source, self.tune.title if self.tune else "",
                     [] if voices else list(dict.fromkeys(self.symbols)), self.duration, self.start)

    def tune_window(self, lo: int, hi: int) -> tuple[list[tuple[int, float, float]], dict]:
        """A bar-aligned window of the real tune in this key (repeated if the tune is shorter than the clip), moved
        by octaves into the lead range -> (lead notes, {"alto"/"tenor"/"bass": notes} for chorales, else {})."""
        if self.tune.voices:
            parts = chorale_window(self.tune, self.n_bars, self.rng, transpose_to=self.tonic)
        else:
            parts = [melody_window(self.tune, self.n_bars, self.rng, transpose_to=self.tonic, mode=self.mode)]
        if not parts[0]:
            return [], {}
        length = max(1, math.ceil(max(on + d for part in parts for _, on, d in part) / self.bar_q - 1e-6))
        parts = [part[:-1] + [(part[-1][0], part[-1][1], length * self.bar_q - part[-1][1])] if part else part
                 for part in parts]  # hold the last note to the bar line: no gap where the pickup was
        parts = [[(p, on + k * length * self.bar_q, d) for k in range(math.ceil(self.n_bars / length))
                  for p, on, d in part] for part in parts]
        shift = 12 * round(((lo + hi) / 2 - np.mean([n[0] for n in parts[0]])) / 12)
        parts = [[(p + shift, q, d) for p, q, d in part] for part in parts]
        return parts[0], dict(zip(("alto", "tenor", "bass"), parts[1:]))


def compose(rng: np.random.Generator, style: Style, duration: float, folk=(), chorales=(), playable=None) -> Piece:
    """Compose one clip of `duration` seconds in `style`.

    `folk` and `chorales` are real tunes (`melodies.Melody`) the melody may come from, with probabilities
    `style.corpus` and `style.chorale`; folk tunes should already be in one of the style's meters.
    `playable(program, pitch) -> bool` (render.playable for the chosen SoundFont) moves dead keys by an octave.
    """
    return _Composer(rng, style, duration, folk, chorales, playable).compose()
