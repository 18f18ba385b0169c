"""The synthetic captioned music corpus, rendered on the fly: examples, a sharded stream, a writer, a benchmark.

Every example is a pure function of its integer seed: style, key, tempo, meter, arrangement and melody
(compose.py), SoundFont and mix (render.py), caption (captions.py). Seeds below `VALID_SEEDS` form the held-out
validation range and draw real tunes from the held-out split of melodies.py; the training stream maps (seed, index)
into seeds >= `VALID_SEEDS` and the training split of the tunes, so training never sees a validation clip or tune.
"""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .captions import caption, key_name
from .compose import compose
from .melodies import load_melodies, split_melodies
from .render import SAMPLE_RATE, load_soundfont, playable, render, soundfont_paths
from .styles import STYLE_BY_NAME, STYLES, instrument_name

VALID_SEEDS = 10_000_000  # seeds [0, VALID_SEEDS) are validation clips; training seeds are >= VALID_SEEDS
_SEED_SPAN = 2 ** 62


@dataclass
class Example:
    """One clip: mix and lead-only audio (float32 [T] at 32 kHz), its caption, and the metadata behind them."""

    audio: np.ndarray
    lead: np.ndarray
    caption: str
    metadata: dict


@functools.lru_cache(maxsize=1)
def _tune_split() -> tuple[tuple, tuple]:
    """(train, held_out) real tunes, or two empty tuples when the melody database is not built."""
    try:
        return split_melodies(load_melodies())
    except FileNotFoundError:
        return (), ()


@functools.lru_cache(maxsize=None)
def _tunes(split: str, style_name: str) -> tuple[tuple, tuple]:
    """(folk tunes in one of the style's meters, chorales) of the given split."""
    pool = _tune_split()[split == "valid"]
    meters = set(STYLE_BY_NAME[style_name].meters)
    if (4, 4) in meters:
        meters.add((2, 2))
    return (tuple(m for m in pool if m.voices is None and tuple(m.meter) in meters),
            tuple(m for m in pool if m.voices is not None))


def split_of(seed: int) -> str:
    return "valid" if seed < VALID_SEEDS else "train"


def compose_example(seed: int, duration: float = 10.0):
    """The score of the clip of `seed` and the SoundFont it is rendered with (milliseconds; no audio)."""
    rng = np.random.default_rng([seed, 0])
    style = STYLES[rng.integers(len(STYLES))]
    fonts = soundfont_paths()
    font = fonts[np.random.default_rng([seed, 1]).integers(len(fonts))]
    tunes = _tunes(split_of(seed), style.name)
    return compose(rng, style, duration, *tunes, playable=functools.partial(playable, font)), font


def make_example(seed: int, duration: float = 10.0, n_captions: int = 1) -> Example:
    """Compose, render and caption the clip of `seed` (deterministic for a given set of installed SoundFonts).
    `n_captions` > 1 adds paraphrases (other templates and synonyms) in metadata["captions"], the first being
    `caption`."""
    piece, font = compose_example(seed, duration)
    audio, lead = render(piece, font, np.random.default_rng([seed, 2]))
    captions = [caption(piece, np.random.default_rng([seed, 3] + [i] * (i > 0))) for i in range(n_captions)]
    text = captions[0]
    metadata = dict(
        seed=int(seed), split=split_of(seed), caption=text, duration=duration, sample_rate=SAMPLE_RATE,
        style=piece.style, bpm=piece.bpm, start=round(piece.start, 4), meter=list(piece.meter), tonic=piece.tonic,
        mode=piece.mode, key=key_name(piece.tonic, piece.mode), chords=piece.chords, instruments=piece.instruments,
        tracks=[dict(role=t.role, program=t.program, drum=t.is_drum, instrument=instrument_name(t.program, t.is_drum),
                     notes=len(t.notes)) for t in piece.tracks],
        lead_program=piece.lead_program, lead_instrument=instrument_name(piece.lead_program),
        voice_lead=piece.voice_lead, melody_source=piece.melody_source, melody_title=piece.melody_title,
        melody=[[p, round(t0, 4), round(t1, 4)] for p, t0, t1 in piece.melody], soundfont=Path(font).name,
        captions=captions,
    )
    return Example(audio, lead, text, metadata)


def melody_chroma(notes, num_frames: int, hop_seconds: float, window_seconds: float = 0.0) -> np.ndarray:
    """Exact melody notes [(pitch, start_s, end_s)] -> pitch-class frames [num_frames, 12], frame k centred at
    k * hop_seconds (like a centred STFT). window_seconds=0: one-hot of the note sounding at the centre (zero in
    rests); otherwise each note adds its overlap (seconds) with the frame's window."""
    chroma = np.zeros((num_frames, 12), np.float32)
    centers, half = np.arange(num_frames) * hop_seconds, window_seconds / 2
    for pitch, start, end in notes:
        if half:
            overlap = np.minimum(end, centers + half) - np.maximum(start, centers - half)
            chroma[:, int(pitch) % 12] += np.clip(overlap, 0, None)
        else:
            chroma[(centers >= start) & (centers < end), int(pitch) % 12] = 1.0
    return chroma


class SyntheticMusic(IterableDataset):
    """Stream of rendered examples as dicts: wav [1, T] and lead [1, T] float32 tensors, caption, seed.

    split="train": item `index` is the clip of a seed hashed from (seed, index) into [VALID_SEEDS, 2**62), an
    endless stream unless `length` is given. split="valid": items are the fixed clips 0..length-1 (default 256),
    whatever `seed` is. Items are sharded over DataLoader workers (get_worker_info) and over `world_size` ranks, so
    the union of all shards is exactly indices 0, 1, 2, ... and each is produced once.
    """

    def __init__(self, split: str = "train", duration: float = 10.0, seed: int = 0, length: int | None = None,
                 rank: int = 0, world_size: int = 1):
        if split not in ("train", "valid"):
            raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
        self.split, self.duration, self.seed, self.rank, self.world_size = split, duration, seed, rank, world_size
        self.length = length if length is not None or split == "train" else 256
        if split == "valid" and self.length > VALID_SEEDS:
            raise ValueError(f"at most {VALID_SEEDS} validation clips")

    def clip_seed(self, index: int) -> int:
        """The example seed of stream item `index`."""
        if self.split == "valid":
            return index
        state = np.random.SeedSequence([self.seed, index]).generate_state(2, np.uint32)
        return VALID_SEEDS + (int(state[0]) << 32 | int(state[1])) % (_SEED_SPAN - VALID_SEEDS)

    def __iter__(self):
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        index, step = self.rank * workers + worker, self.world_size * workers
        while self.length is None or index < self.length:
            seed = self.clip_seed(index)
            ex = make_example(seed, self.duration)
            yield dict(wav=torch.from_numpy(ex.audio)[None], lead=torch.from_numpy(ex.lead)[None],
                       caption=ex.caption, seed=seed)
            index += step


def write_examples(n: int, duration: float, out_dir: str | Path, seed_start: int = VALID_SEEDS) -> list[Path]:
    """Write clips seed_start .. seed_start+n-1 as SEED.wav (mix), SEED.lead.wav and SEED.json (caption + metadata)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(seed_start, seed_start + n):
        ex = make_example(seed, duration)
        sf.write(str(out / f"{seed}.wav"), ex.audio, SAMPLE_RATE, subtype="PCM_16")
        sf.write(str(out / f"{seed}.lead.wav"), ex.lead, SAMPLE_RATE, subtype="PCM_16")
        (out / f"{seed}.json").write_text(json.dumps(ex.metadata, indent=1))
        paths.append(out / f"{seed}.wav")
    return paths


def benchmark(n: int = 100, duration: float = 10.0) -> dict:
    """Throughput of make_example on one thread: audio seconds per wall second and per CPU second.

    SoundFonts and the melody database are loaded first (one-time cost, reported as load_s). Pin the process to one
    core (`taskset -c 0`) for a per-core figure.
    """
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    start = time.perf_counter()
    for style in STYLES:
        _tunes("train", style.name)
    for path in soundfont_paths():
        load_soundfont(path)
    make_example(VALID_SEEDS, 1.0)  # first-call imports
    load = time.perf_counter() - start
    stream = SyntheticMusic("train", seed=12345)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(n):
        make_example(stream.clip_seed(index), duration)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    audio = n * duration
    return dict(clips=n, audio_s=audio, wall_s=round(wall, 3), cpu_s=round(cpu, 3), load_s=round(load, 3),
                audio_s_per_wall_s=round(audio / wall, 1), audio_s_per_cpu_s=round(audio / cpu, 1),
                soundfonts=[Path(p).name for p in soundfont_paths()], real_tunes=len(_tune_split()[0]))


def _make_data(args) -> None:
    if args.split == "valid" and not 0 <= args.seed + args.n <= VALID_SEEDS:
        raise ValueError(f"validation seeds are 0..{VALID_SEEDS - 1}")
    start = args.seed + (VALID_SEEDS if args.split == "train" else 0)
    paths = write_examples(args.n, args.dur, args.out, start)
    print(f"wrote {len(paths)} clips (seeds {start}..{start + args.n - 1}) to {args.out}")


def _bench_data(args) -> None:
    result = benchmark(args.n, args.dur)
    print(" ".join(f"{k}={v}" for k, v in result.items()))


def add_cli(subparsers) -> None:
    """Register `make-data` and `bench-data` on an argparse subparsers object (each sets `func`)."""
    m = subparsers.add_parser("make-data", help="render synthetic captioned clips to wav + json for inspection")
    m.add_argument("--n", type=int, default=20, help="number of clips")
    m.add_argument("--dur", type=float, default=10.0, help="seconds per clip")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument("--seed", type=int, default=0, help="first seed within the split's seed range")
    m.add_argument("--split", choices=("train", "valid"), default="train")
    m.set_defaults(func=_make_data)
    b = subparsers.add_parser("bench-data", help="synthetic-data throughput on one thread (pin with taskset -c 0)")
    b.add_argument("--n", type=int, default=100, help="number of clips")
    b.add_argument("--dur", type=float, default=10.0, help="seconds per clip")
    b.set_defaults(func=_bench_data)
