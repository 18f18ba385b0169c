"""Carry a trained LM over to a new codec's tokens (`musicgen remap-lm`).

A new codec makes new tokens (retrained codebooks share almost no code with the old ones), so an LM trained on the
old tokens starts a new run no better than chance on the new ones. The codecs hear the same audio, though: encoding
the training clips with both gives, per codebook, how often new code j and old code i fall on the same frame. Each
new code's embedding and output row become the old rows averaged with weights P(old | new), so the trunk's knowledge
(text, melody and tempo conditioning, musical structure) starts in use, and training only has to sharpen the rows.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..checkpoints import load_own
from ..codec import Codec
from .runtime import atomic_save


@torch.no_grad()
def cooccurrence(old: Codec, audio: torch.Tensor, new_codes: torch.Tensor, card: int, batch: int = 8) -> torch.Tensor:
    """Counts [K, card (new code), card (old code)] of codes on the same frame: `audio` [n, T] int16 PCM, `new_codes`
    [n, K, F] the new codec's codes of it."""
    old_codes = torch.cat([old.encode(x) for x in (audio.float()[:, None] / 32767).split(batch)]).long()  # [n, K, F]
    counts = torch.zeros(new_codes.shape[1], card, card)
    for k, table in enumerate(counts):
        pairs = (new_codes[:, k].flatten().long(), old_codes[:, k].flatten())
        table.index_put_(pairs, torch.ones(len(pairs[0])), accumulate=True)
    return counts


def remap_tokens(emb: torch.Tensor, heads: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """New-token embeddings [K, card + 1, D] and output rows [K, card, D] from the old ones and `counts` (see
    `cooccurrence`): row j = sum_i P(old i | new j) * old row i. A new code never seen keeps the row of its index, the
    special token its row."""
    card = heads.shape[1]
    seen = counts.sum(-1, keepdim=True)  # [K, card, 1]
    p = counts / seen.clamp_min(1)  # [K, new, old]
    new_emb = emb.clone()
    new_emb[:, :card] = torch.where(seen > 0, p @ emb[:, :card], emb[:, :card])
    return new_emb, torch.where(seen > 0, p @ heads, heads)


def remap_model(model: Path, tokens: Path, n: int) -> dict:
    """The LM of a model folder (our format) with its token rows moved to the codes in `tokens` (a folder of
    `musicgen encode-data` shards with their audio shards beside them), compared on `n` clips spread over the
    shards; as a run checkpoint that `train-lm --init` starts from."""
    pairs = [(p.with_name(p.name.replace("shard_", "audio_")), p) for p in sorted(tokens.glob("shard_*.pt"))]
    pairs = [(a, s) for a, s in pairs if a.exists()]
    if not pairs:
        raise FileNotFoundError(f"{tokens} has no token shard with its audio shard beside it (musicgen encode-data)")
    _, lm, codec, _ = load_own(model)
    per_shard, counts = math.ceil(n / len(pairs)), 0
    for audio_path, shard_path in pairs:
        audio = torch.load(audio_path, weights_only=True)["audio"][:per_shard]
        codes = torch.load(shard_path, weights_only=True)["codes"][:per_shard]
        counts = counts + cooccurrence(codec.eval(), audio, codes, lm.cfg.card)
    state = lm.state_dict()
    state["emb"], state["heads"] = remap_tokens(state["emb"], state["heads"], counts)
    return {"ema": state}


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("remap-lm", help="move a model's LM onto a new codec's tokens, to start train-lm from")
    p.add_argument("--model", required=True, help="model folder (our format) whose LM and codec made the old tokens")
    p.add_argument("--tokens", required=True, help="token shards of the new codec, audio shards beside them")
    p.add_argument("--n", type=int, default=768, help="clips to compare the codecs on")
    p.add_argument("--out", required=True, help="checkpoint to write (for train-lm --init)")

    def run(args: argparse.Namespace) -> None:
        atomic_save(remap_model(Path(args.model), Path(args.tokens), args.n), Path(args.out))
        print(f"wrote {args.out}")

    p.set_defaults(func=run)
