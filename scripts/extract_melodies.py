"""One-off: extract folk melodies and Bach chorales from music21's bundled corpus into a compact gzipped JSON.

Run once with music21 installed (it is not a runtime dependency):
    python scripts/extract_melodies.py [--workers 2] [--out musicgen_core/train/melodies.json.gz]

Output (read by musicgen_core/train/melodies.py): {"version": 1, "unit": 24, "items": [item, ...]}, where each item is
    t: title, s: source tag, k: tonic pitch class, m: 0 major / 1 minor, ts: [num, den],
    a: pickup length in units (1/24 quarter note), p: MIDI pitches (0 = rest), d: durations in units,
    v (chorales only): [[p, d] for alto, tenor, bass].
Each voice is a contiguous note/rest sequence starting at time -a, so the first downbeat is at 0 and every bar line
lies at a multiple of the bar length.

Notes on the extraction:
- ABC files are parsed as ABC 2.1 ("%abc-2.1" is prepended): music21 otherwise assumes ABC 1.3 and does not carry
  accidentals through the bar, which wrongly naturalises e.g. the second B in "_B2B2".
- Measures are laid out on a regular bar grid: a short measure followed by a full one is a pickup (it ends on the next
  bar line), other short measures start where the previous one ended (split bars around repeat signs add up).
- Chords keep their top note, grace notes are dropped, ties are merged. Where the meter changes (Essen's irregular
  bars, or a time signature music21 made up when splitting an overfull ABC bar) only the longest stretch of measures
  with one bar length is kept. Items with overlapping notes, several voices in one part, no meter ("M: none") or fewer
  than 4 bars are skipped, and so are exact duplicates.
- Key: duration-weighted pitch-class histogram correlated with the Aarden-Essen profiles (24 keys); the key whose tonic
  is the final (bass) note wins when its correlation is within TOL of the best one. Mode: the more prominent third
  above the tonic (dorian -> minor, mixolydian -> major), else the correlation.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import multiprocessing as mp
import re
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

UNIT = 24  # time units per quarter note
MIN_BARS = 4
TOL = 0.15  # correlation slack granted to the key whose tonic is the final note
FOLK_DIRS = {"essenFolksong": "essen", "oneills1850": "oneills", "airdsAirs": "aird", "ryansMammoth": "ryans",
             "miscFolk": "miscfolk", "nottingham-dataset": "nottingham"}


class Skip(Exception):
    """Item rejected; the message is the reason (counted)."""


INEXACT = collections.Counter()  # per process: times that are not multiples of 1/UNIT (e.g. quintuplets), rounded


def _units(x) -> int:
    u = Fraction(x).limit_denominator(10_000) * UNIT
    INEXACT["inexact times, rounded"] += u.denominator != 1
    return int(round(u))


def _layout(durations: list[int], bar: int) -> list[int]:
    """Start (units) of each measure on a bar grid whose first downbeat is 0 (a leading pickup starts below 0)."""
    starts, pos = [], 0
    for i, d in enumerate(durations):
        if d > bar:
            raise Skip("overfull measure")
        nxt = durations[i + 1] if i + 1 < len(durations) else None
        if d == bar:
            start = -(-pos // bar) * bar  # next bar line at or after pos
        elif nxt == bar:  # pickup: ends on the next bar line after its content
            start = -(-(pos + d) // bar) * bar - d
        else:  # split bar (adds up with the next one) or final short bar
            start = pos
        starts.append(start)
        pos = start + d
    if durations[0] < bar and durations[1:2] == [bar]:
        starts = [s - bar for s in starts]
    return starts


def _events(measures, starts: list[int]) -> list[tuple[int, int, int]]:
    """(midi, onset, duration) in units, ties merged, rests dropped, monophonic."""
    from music21 import chord, harmony, note

    out: list[list[int]] = []
    for m, st in zip(measures, starts):
        if m.voices:
            raise Skip("voices")
        for el in m.notesAndRests:
            if isinstance(el, (harmony.Harmony, note.Rest)) or el.duration.isGrace or el.quarterLength == 0:
                continue
            if isinstance(el, chord.Chord):
                if not el.pitches:
                    continue
                midi = max(p.midi for p in el.pitches)
            else:
                midi = el.pitch.midi
            on, dur = st + _units(el.offset), _units(el.quarterLength)
            if dur <= 0:
                continue
            if out and el.tie is not None and el.tie.type in ("stop", "continue") and out[-1][0] == midi \
                    and out[-1][1] + out[-1][2] == on:
                out[-1][2] += dur
                continue
            if out and on < out[-1][1] + out[-1][2]:
                raise Skip("overlapping notes")
            out.append([midi, on, dur])
    return [tuple(e) for e in out]


def _encode(events, start: int) -> tuple[list[int], list[int]]:
    """Contiguous (pitches, durations) from time `start`; gaps become rests (pitch 0)."""
    p, d, t = [], [], start
    for midi, on, dur in events:
        if on > t:
            p.append(0)
            d.append(on - t)
        p.append(midi)
        d.append(dur)
        t = on + dur
    return p, d


def _profiles() -> np.ndarray:
    from music21.analysis.discrete import AardenEssen

    ae = AardenEssen()
    base = [np.array(ae.getWeights(m), float) for m in ("major", "minor")]
    return np.array([[np.roll(b, k) for k in range(12)] for b in base])  # (2 modes, 12 tonics, 12 pcs)


PROFILES = None


def _key(events_list, final_pc: int) -> tuple[int, int, bool]:
    """(tonic pc, mode 0 major / 1 minor, whether the final note overrode the best-correlated tonic).

    Tonic: best of the 24 Aarden-Essen correlations, unless the key on the final note is within TOL of it. Mode: the
    more prominent third above that tonic (so dorian counts as minor, mixolydian as major); the correlation decides
    when neither third occurs.
    """
    global PROFILES
    if PROFILES is None:
        PROFILES = _profiles()
    h = np.zeros(12)
    for events in events_list:
        for midi, _, dur in events:
            h[midi % 12] += dur
    r = np.nan_to_num([[np.corrcoef(h, PROFILES[m, k])[0, 1] for k in range(12)] for m in range(2)], nan=-1.0)
    best_mode, best = np.unravel_index(np.argmax(r), r.shape)
    tonic = final_pc if r[:, final_pc].max() >= r[best_mode, best] - TOL else int(best)
    major, minor = h[(tonic + 4) % 12], h[(tonic + 3) % 12]
    mode = int(np.argmax(r[:, tonic])) if major == minor else int(minor > major)
    return tonic, mode, tonic != best


def _regular_run(measures) -> tuple[int, int, int, int, int]:
    """Longest run of consecutive measures under time signatures of equal bar length: (i0, i1, num, den, bar).

    Real meter changes (Essen) and the odd time signatures music21 inserts when it splits an overfull ABC bar both
    break runs.
    """
    ts, runs = None, []  # runs: [i0, i1, time signature]
    for i, m in enumerate(measures):
        ts = m.timeSignature or ts
        if ts is None:
            raise Skip("no meter")
        bar = _units(ts.barDuration.quarterLength)
        if runs and runs[-1][1] == i and _units(runs[-1][2].barDuration.quarterLength) == bar:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, ts])
    i0, i1, ts = max(runs, key=lambda r: r[1] - r[0])
    return i0, i1, ts.numerator, ts.denominator, _units(ts.barDuration.quarterLength)


def _item(parts, title: str, source: str) -> dict:
    """Encode one piece: parts[0] is the melody (soprano), parts[1:] the other voices."""
    from music21 import stream

    measures = [list(p.getElementsByClass(stream.Measure)) for p in parts]
    if not measures[0] or len({len(ms) for ms in measures}) > 1:
        raise Skip("no/unequal measures")
    i0, i1, num, den, bar = _regular_run(measures[0])
    cut = i1 - i0 < len(measures[0])  # only the longest regular stretch is kept
    measures = [ms[i0:i1] for ms in measures]
    durs = [max(_units(ms[i].duration.quarterLength) for ms in measures) for i in range(len(measures[0]))]
    starts = _layout(durs, bar)
    voices = [_events(ms, starts) for ms in measures]
    if any(not v for v in voices):
        raise Skip("no notes")
    end = max(v[-1][1] + v[-1][2] for v in voices)
    if end < MIN_BARS * bar:
        raise Skip("too short")
    pickup = -min(0, starts[0], *(v[0][1] for v in voices))
    tonic, mode, by_final = _key(voices, voices[-1][-1][0] % 12)
    item = {"t": title, "s": source, "k": tonic, "m": mode, "ts": [num, den], "a": pickup}
    item["p"], item["d"] = _encode(voices[0], -pickup)
    if len(voices) > 1:
        item["v"] = [list(_encode(v, -pickup)) for v in voices[1:]]
    item["_final"], item["_cut"] = by_final, cut
    return item


def _read_abc(path: str) -> str:
    """File text; some Essen files hold DOS cp437 bytes re-encoded as if latin-1 ("gr\\x81n" for "grün")."""
    text = Path(path).read_text(encoding="utf-8")
    if re.search("[\x80-\x9f]", text):
        text = "".join(c.encode("latin-1").decode("cp437") if "\x80" <= c <= "\xff" else c for c in text)
    return text


def folk_file(path: str, source: str) -> tuple[list[dict], collections.Counter]:
    from music21 import converter, stream

    skips: collections.Counter = collections.Counter()
    text = "%abc-2.1\n" + _read_abc(path)
    try:
        parsed = converter.parse(text, format="abc")
    except Exception as e:  # noqa: BLE001 - a corrupt file is just skipped
        skips[f"{source}: parse error: {type(e).__name__}"] += 1
        return [], skips
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    items = []
    for i, sc in enumerate(scores):
        title = (sc.metadata.title if sc.metadata and sc.metadata.title else "").strip()
        title = title or f"{Path(path).stem} #{i + 1}"
        try:
            if len(sc.parts) != 1:
                raise Skip("not one part")
            items.append(_item([sc.parts[0]], title, source))
        except Skip as e:
            skips[f"{source}: {e}"] += 1
        except Exception as e:  # noqa: BLE001
            skips[f"{source}: error: {type(e).__name__}"] += 1
    return items, skips


def chorale_file(path: str, titles: dict) -> tuple[list[dict], collections.Counter]:
    from music21 import converter

    skips: collections.Counter = collections.Counter()
    bwv = re.sub(r"-.*$", "", Path(path).stem[3:])
    title = f"{titles[bwv]}, BWV {bwv}" if bwv in titles else f"BWV {Path(path).stem[3:]}"
    try:
        sc = converter.parse(path)
        by_name = {(p.partName or "").strip().lower(): p for p in sc.parts}
        parts = [by_name.get(n) for n in ("soprano", "alto", "tenor", "bass")]
        if any(p is None for p in parts):
            parts = list(sc.parts) if len(sc.parts) == 4 else None
        if parts is None:
            raise Skip("no SATB parts")
        return [_item(parts, title, "bach")], skips
    except Skip as e:
        skips[f"bach: {e}"] += 1
    except Exception as e:  # noqa: BLE001
        skips[f"bach: error: {type(e).__name__}"] += 1
    return [], skips


def _run(task):
    kind, path, arg = task
    t, before = time.time(), INEXACT.copy()
    items, skips = (folk_file if kind == "folk" else chorale_file)(path, arg)
    return path, items, skips + (INEXACT - before), time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "musicgen_core/train/melodies.json.gz"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N files per collection (for testing)")
    args = ap.parse_args()

    import music21
    from music21.corpus.chorales import ChoraleListRKBWV

    root = Path(music21.__file__).parent / "corpus"
    titles = {k: v["title"] for k, v in ChoraleListRKBWV().byBWV.items()}
    tasks = []
    for d, src in FOLK_DIRS.items():
        files = sorted((root / d).glob("*.abc"))
        tasks += [("folk", str(f), src) for f in files[: args.limit or None]]
    bach = sorted(f for f in (root / "bach").iterdir() if f.suffix in (".mxl", ".xml", ".krn"))
    tasks += [("chorale", str(f), titles) for f in bach[: args.limit or None]]
    tasks.sort(key=lambda t: -Path(t[1]).stat().st_size)  # big files first balances the pool

    t0, items, skips = time.time(), [], collections.Counter()
    with mp.Pool(args.workers) as pool:
        for i, (path, its, sk, dt) in enumerate(pool.imap_unordered(_run, tasks)):
            items += its
            skips += sk
            if dt > 5 or i % 50 == 0 or i == len(tasks) - 1:
                print(f"[{time.time() - t0:6.0f}s] {i + 1}/{len(tasks)} files, {len(items)} items "
                      f"({Path(path).name}: {len(its)} in {dt:.1f}s)", flush=True)

    items.sort(key=lambda it: (it["s"], it["t"], it["p"][:8]))
    seen, unique = set(), []
    for it in items:
        sig = (tuple(it["p"]), tuple(it["d"]), json.dumps(it.get("v")))
        if sig in seen:
            skips[f"{it['s']}: duplicate"] += 1
            continue
        seen.add(sig)
        unique.append(it)
    final = sum(it.pop("_final") for it in unique)
    cut = collections.Counter(it["s"] for it in unique if it.pop("_cut"))

    blob = json.dumps({"version": 1, "unit": UNIT, "items": unique}, separators=(",", ":"), ensure_ascii=False)
    Path(args.out).write_bytes(gzip.compress(blob.encode(), compresslevel=9, mtime=0))
    n_notes = sum(sum(p > 0 for p in it["p"]) + sum(sum(x > 0 for x in v[0]) for v in it.get("v", [])) for it in unique)
    quarters = sum(sum(it["d"]) for it in unique) / UNIT
    print(f"\n{len(unique)} items, {n_notes} notes, {quarters * 0.6 / 3600:.1f} h @100 qpm, "
          f"{Path(args.out).stat().st_size / 1e6:.2f} MB -> {args.out} in {time.time() - t0:.0f}s")
    print("per source:", dict(collections.Counter(it["s"] for it in unique)))
    print("minor per source:", dict(collections.Counter(it["s"] for it in unique if it["m"])))
    print("meters:", collections.Counter(f"{it['ts'][0]}/{it['ts'][1]}" for it in unique).most_common(12))
    print(f"tonic from final note instead of best correlation: {final}")
    print("kept only the longest regular-meter stretch:", dict(cut))
    print(f"note times rounded to 1/{UNIT} quarter:", skips.pop("inexact times, rounded", 0))
    print("skipped:", dict(skips.most_common()))


if __name__ == "__main__":
    main()
