"""Pre-encoded token shards for LM training (`musicgen encode-data`): the codec runs once per clip, not per step.

A shard (`shard_NNNNN.pt`, loadable with `torch.load(weights_only=True)`) holds, for n clips of one duration:
codes [n, K, F] int16, the melody conditioning as argmax pitch classes [n, Fc] uint8, several captions per clip, and
metadata (style / bpm / key for evaluation, `start`: the clip's offset from a beat, the tempo grid's phase in
training; `melody_source`).

The melody conditioning looks like what users bring (MELODY_SOURCES, drawn per clip): the tune sung, hummed or
whistled by a random training voice (`voice.py`), the lead instrument alone with background noise, or the whole mix
with its percussion removed. Real recordings (`--real`) have no separate tune: their conditioning is the harmonic
part of the mix, and their captions come from measurements (`describe.py`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..checkpoints import load_own_codec
from ..codec import Codec
from ..conditioning.chroma import ChromaExtractor
from ..configs import CodecConfig
from .captions import key_name
from .data import VALID_SEEDS, make_example
from .describe import describe, real_caption, separate
from .real import RealCorpus
from .runtime import atomic_save
from .voice import sing

MELODY_SOURCES = {"voice": 0.45, "lead": 0.3, "mix": 0.25}  # synthetic clips: what the chroma is computed from


def load_codec(path: str | Path) -> Codec:
    """Inference codec from an exported codec folder (codec.safetensors + codec_config.json), a model folder in our
    format (its codec; config.json) or a codec run's latest.pt."""
    path = Path(path)
    if path.suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = CodecConfig.from_dict(state["config"]["codec"])
        codec = Codec(cfg)
        codec.load_state_dict(state["codec"])
        return codec.remove_weight_norm().eval()
    if (path / "config.json").is_file():
        return load_own_codec(path).eval()
    cfg = CodecConfig.from_dict(json.loads((path / "codec_config.json").read_text()))
    codec = Codec(cfg).remove_weight_norm()
    codec.load_state_dict({k: v.float() for k, v in load_file(str(path / "codec.safetensors")).items()}, strict=False)
    return codec.eval()


def _pitch_classes(chroma: ChromaExtractor, audio: np.ndarray) -> torch.Tensor:
    return chroma(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None])[0].argmax(-1).to(torch.uint8)


def melody_audio(ex, rng: np.random.Generator, noise_db: tuple[float, float] = (10.0, 40.0)) -> tuple[str, np.ndarray]:
    """(source, audio) the melody conditioning of a rendered example is computed from (see MELODY_SOURCES)."""
    source = str(rng.choice(list(MELODY_SOURCES), p=list(MELODY_SOURCES.values())))
    if source == "voice" and ex.metadata["melody"]:
        return source, sing([tuple(n) for n in ex.metadata["melody"]], ex.metadata["duration"], rng)
    if source == "mix":
        return source, separate(ex.audio)[0]
    noise = rng.standard_normal(len(ex.lead)).astype(np.float32)
    return "lead", ex.lead + noise * np.sqrt(np.mean(ex.lead ** 2)) * 10 ** (-rng.uniform(*noise_db) / 20)


def _pcm(audio: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))


@torch.no_grad()
def label_shard(seeds: list[int], duration: float, n_captions: int = 4) -> dict:
    """Render and label the clips of `seeds`: the layout of a token shard with audio [n, T] int16 for codes."""
    chroma = ChromaExtractor()
    audio, pitch, captions, meta = [], [], [], []
    for seed in seeds:
        ex = make_example(seed, duration, n_captions=n_captions)
        audio.append(_pcm(ex.audio))
        source, melody = melody_audio(ex, np.random.default_rng([seed, 7]))
        pitch.append(_pitch_classes(chroma, melody))  # [Fc]
        captions.append(ex.metadata["captions"])
        meta.append({k: ex.metadata[k] for k in ("seed", "style", "bpm", "start", "key", "mode", "instruments")}
                    | {"melody_source": source})
    return {"audio": torch.stack(audio), "chroma": torch.stack(pitch), "captions": captions,
            "meta": json.dumps(meta), "duration": duration}


@torch.no_grad()
def label_real_shard(corpus, seed: int, n: int, duration: float, n_captions: int = 4,
                     min_dbfs: float = -45.0) -> dict:
    """`n` random crops of a real corpus split (tracks drawn by length; near-silent crops redrawn), labelled like
    `label_shard` (style "real:<package>", captions from `describe`)."""
    chroma = ChromaExtractor()
    rng, length = np.random.default_rng([seed, 11]), int(duration * chroma.sample_rate)
    clips, pitch, captions, meta = [], [], [], []
    while len(clips) < n:
        i, offset, audio = corpus.loud_crop(rng, length, min_dbfs)
        harmonic, percussive = separate(audio)
        d = describe(audio, harmonic, percussive, chroma.sample_rate)
        package = corpus.tracks[i]["package"]
        clips.append(_pcm(audio))
        pitch.append(_pitch_classes(chroma, harmonic))
        captions.append([real_caption(d, package, np.random.default_rng([seed, len(clips), c]))
                         for c in range(n_captions)])
        meta.append({"seed": seed, "style": f"real:{package}", "bpm": d.bpm, "start": d.beat_phase,
                     "key": key_name(d.tonic, d.mode), "mode": d.mode, "instruments": [], "melody_source": "mix",
                     "track": corpus.tracks[i]["path"], "offset": offset})
    return {"audio": torch.stack(clips), "chroma": torch.stack(pitch), "captions": captions,
            "meta": json.dumps(meta), "duration": duration}


@torch.no_grad()
def encode_audio(codec: Codec, shard: dict, batch: int = 8) -> dict:
    """A labelled shard with its audio replaced by codes [n, K, F] int16."""
    audio = shard["audio"].float()[:, None] / 32767  # [n, 1, T]
    codes = torch.cat([codec.encode(x).to(torch.int16) for x in audio.split(batch)])
    return {k: v for k, v in shard.items() if k != "audio"} | {"codes": codes}


def write_shards(out_dir: Path, n: int, duration: float, split: str, shard_size: int = 256, first_shard: int = 0,
                 real: str | None = None, codec_path: str | None = None) -> None:
    """Label clips into out_dir/audio_*.pt (real crops from the cache `real`: audio_real_*.pt) and, with a codec,
    encode them into the token shards shard_*.pt. The audio shards do not depend on the codec, so they can be made
    while it still trains; existing shards are kept, so an interrupted run resumes."""
    codec = load_codec(codec_path) if codec_path else None
    corpus = RealCorpus(real, split) if real else None
    out_dir.mkdir(parents=True, exist_ok=True)
    base = VALID_SEEDS if split == "train" else 0
    for shard in range(first_shard, first_shard + -(-n // shard_size)):
        name = f"{'real_' if corpus else ''}{shard:05d}.pt"
        audio_path, token_path = out_dir / f"audio_{name}", out_dir / f"shard_{name}"
        if token_path.exists() or (codec is None and audio_path.exists()):
            continue
        if audio_path.exists():
            labelled = torch.load(audio_path, weights_only=True)
        else:
            seeds = [base + shard * shard_size + i for i in range(shard_size)]
            labelled = (label_real_shard(corpus, seeds[0], shard_size, duration) if corpus else
                        label_shard(seeds, duration))
            atomic_save(labelled, audio_path)
            print(f"wrote {audio_path} ({shard_size} clips)", flush=True)
        if codec is not None:
            atomic_save(encode_audio(codec, labelled), token_path)
            print(f"wrote {token_path}", flush=True)


def load_shards(folder: Path) -> dict:
    """All shards of a folder, concatenated."""
    shards = [torch.load(p, weights_only=True) for p in sorted(Path(folder).glob("shard_*.pt"))]
    if not shards:
        raise FileNotFoundError(f"no token shards in {folder} (make them with `musicgen encode-data`)")
    return {"codes": torch.cat([s["codes"] for s in shards]), "chroma": torch.cat([s["chroma"] for s in shards]),
            "captions": [c for s in shards for c in s["captions"]],
            "meta": [m for s in shards for m in json.loads(s["meta"])]}


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("encode-data", help="render + encode synthetic clips (or real crops) into token shards for LM training")
    p.add_argument("--codec", help="exported codec folder or a codec run's latest.pt (without: labelled audio only)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--dur", type=float, default=10.0)
    p.add_argument("--split", choices=("train", "valid"), default="train")
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--first-shard", type=int, default=0, help="start here (run several processes on disjoint ranges)")
    p.add_argument("--real", help="real-music cache (`musicgen fetch-real`): encode crops of its split instead")

    def run(args: argparse.Namespace) -> None:
        torch.set_num_threads(1)
        write_shards(Path(args.out), args.n, args.dur, args.split, args.shard_size, args.first_shard, args.real,
                     args.codec)

    p.set_defaults(func=run)
