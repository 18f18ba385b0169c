"""Pre-encoded token shards for LM training (`musicgen encode-data`): the codec runs once per clip, not per step.

A shard (`shard_NNNNN.pt`, loadable with `torch.load(weights_only=True)`) holds, for n clips of one duration:
codes [n, K, F] int16, the melody chroma of the lead-only render as argmax pitch classes [n, Fc] uint8 (computed
from the lead with random background noise, so hummed or noisy queries look familiar), several captions per clip,
and the style / bpm / key metadata used by evaluation (with `start`, the clip's offset from a downbeat: the tempo
grid's phase in training).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import load_own_codec
from ..codec import Codec
from ..conditioning.chroma import ChromaExtractor
from ..configs import CodecConfig
from .runtime import atomic_save


def load_codec(path: str | Path) -> Codec:
    """Inference codec from an exported codec folder (codec.safetensors + codec_config.json), a model folder in our
    format (its codec; config.json) or a codec run's latest.pt."""
    from safetensors.torch import load_file

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


@torch.no_grad()
def encode_shard(codec: Codec, seeds: list[int], duration: float, n_captions: int = 4,
                 noise_db: tuple[float, float] = (10.0, 40.0)) -> dict:
    """Render, encode and label the clips of `seeds` (see the module docstring for the layout)."""
    from .data import make_example

    chroma = ChromaExtractor(codec.sample_rate)
    codes, pitch, captions, meta = [], [], [], []
    for seed in seeds:
        ex = make_example(seed, duration, n_captions=n_captions)
        codes.append(codec.encode(torch.from_numpy(ex.audio)[None, None]).to(torch.int16)[0])  # [K, F]
        lead = torch.from_numpy(ex.lead)
        rng = np.random.default_rng([seed, 7])
        snr = rng.uniform(*noise_db)
        noise = torch.from_numpy(rng.standard_normal(len(lead)).astype(np.float32))
        lead = lead + noise * lead.pow(2).mean().sqrt() * 10 ** (-snr / 20)
        pitch.append(chroma(lead[None])[0].argmax(-1).to(torch.uint8))  # [Fc]
        captions.append(ex.metadata["captions"])
        meta.append({k: ex.metadata[k] for k in ("seed", "style", "bpm", "start", "key", "mode", "instruments")})
    return {"codes": torch.stack(codes), "chroma": torch.stack(pitch), "captions": captions,
            "meta": json.dumps(meta), "duration": duration}


def write_shards(codec_path: str, out_dir: Path, n: int, duration: float, split: str, shard_size: int = 256,
                 first_shard: int = 0) -> None:
    """Encode clips into out_dir/shard_*.pt; existing shards are kept, so an interrupted run resumes."""
    from .data import VALID_SEEDS

    codec = load_codec(codec_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = VALID_SEEDS if split == "train" else 0
    for shard in range(first_shard, first_shard + -(-n // shard_size)):
        path = out_dir / f"shard_{shard:05d}.pt"
        if path.exists():
            continue
        seeds = [base + shard * shard_size + i for i in range(shard_size)]
        atomic_save(encode_shard(codec, seeds, duration), path)
        print(f"wrote {path} ({len(seeds)} clips)", flush=True)


def load_shards(folder: Path) -> dict:
    """All shards of a folder, concatenated."""
    shards = [torch.load(p, weights_only=True) for p in sorted(Path(folder).glob("shard_*.pt"))]
    if not shards:
        raise FileNotFoundError(f"no token shards in {folder} (make them with `musicgen encode-data`)")
    return {"codes": torch.cat([s["codes"] for s in shards]), "chroma": torch.cat([s["chroma"] for s in shards]),
            "captions": [c for s in shards for c in s["captions"]],
            "meta": [m for s in shards for m in json.loads(s["meta"])]}


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("encode-data", help="render + encode synthetic clips into token shards for LM training")
    p.add_argument("--codec", required=True, help="exported codec folder or a codec run's latest.pt")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--dur", type=float, default=10.0)
    p.add_argument("--split", choices=("train", "valid"), default="train")
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--first-shard", type=int, default=0, help="start here (run several processes on disjoint ranges)")

    def run(args: argparse.Namespace) -> None:
        torch.set_num_threads(1)
        write_shards(args.codec, Path(args.out), args.n, args.dur, args.split, args.shard_size, args.first_shard)

    p.set_defaults(func=run)
