"""LM trainer (`musicgen train-lm`): the text- and melody-conditioned MusicLM on pre-encoded token shards.

MusicGen-melody's recipe (§3.2) at a small size: conditioning is a prefix `[chroma | text]` (frozen sentence-encoder
states projected to the LM width, the argmax chroma of the lead), with condition dropout so one model serves text,
melody, both and neither (CFG). Delay pattern; per-codebook cross-entropy over valid steps (§2.2). AdamW, cosine
schedule with warm-up, gradient clipping, an EMA of the weights, bf16 autocast on GPU, torchrun/DDP. Resumable from
`run_dir/latest.pt` (written atomically every few minutes).
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..conditioning.chroma import null_chroma
from ..conditioning.text import TextEncoder, load_text_encoder
from ..configs import LMConfig
from ..lm.model import MusicLM
from ..patterns import get_pattern
from .codec import atomic_save
from .tokens import load_shards


@dataclass(frozen=True)
class LMTrainConfig:
    lm: LMConfig = field(default_factory=lambda: LMConfig(dim=256, num_heads=8, num_layers=4, ffn_dim=1024,
                                                          cond_dim=384, cross_attention=False, chroma=True,
                                                          chroma_length=79))
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 500
    total_steps: int = 40_000
    grad_clip: float = 1.0
    ema: float = 0.999
    text_dropout: float = 0.3  # CFG dropout of the description (MusicGen: 0.3)
    melody_dropout: float = 0.5  # attribute dropout of the chroma (MusicGen-melody: 0.5)
    word_dropout: float = 0.1
    log_every: int = 50
    val_every: int = 1000
    ckpt_minutes: float = 5.0
    seed: int = 0


PRESETS = {
    "cpu": LMTrainConfig(),
    "gpu": LMTrainConfig(lm=LMConfig(dim=512, num_heads=8, num_layers=8, ffn_dim=2048, cond_dim=384,
                                     cross_attention=False, chroma=True, chroma_length=79), batch_size=64,
                         lr=6e-4, total_steps=60_000),
}


def lr_at(step: int, cfg: LMTrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.total_steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def drop_words(text: str, p: float, rng: np.random.Generator) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept or words[:1])


def make_batch(data: dict, idx: np.ndarray, cfg: LMTrainConfig, rng: np.random.Generator | None):
    """codes [B, K, F], descriptions (None = dropped), chroma one-hot [B, Fc, 12] (null = one-hot C).
    With rng=None (validation) the first caption is used and nothing is dropped."""
    codes = data["codes"][idx].long()
    pitch = data["chroma"][idx].long()  # [B, Fc]
    chroma = F.one_hot(pitch, 12).float()
    texts = []
    for i, j in enumerate(idx):
        caps = data["captions"][j]
        if rng is None:
            texts.append(caps[0])
            continue
        texts.append(None if rng.random() < cfg.text_dropout else
                     drop_words(caps[rng.integers(len(caps))], cfg.word_dropout, rng))
        if rng.random() < cfg.melody_dropout:
            chroma[i] = null_chroma(1, chroma.shape[1])[0]
    return codes, texts, chroma


def lm_loss(lm: MusicLM, pattern, text_encoder: TextEncoder, codes, texts, chroma, forward=None) -> torch.Tensor:
    """Per-codebook cross-entropy [K] on the valid steps of the pattern. `forward` (default: lm) runs the LM, e.g.
    its DistributedDataParallel wrapper."""
    device = lm.emb.device
    seq, _ = pattern.build(codes.to(device), lm.cfg.special_token, keep_only_valid_steps=True)  # [B, K, S]
    text, mask = text_encoder(texts)
    ctx = lm.condition(text.to(device), mask.to(device), chroma.to(device))
    logits = (forward or lm)(seq, ctx)  # [B, K, S, card]
    logits, valid = pattern.revert_logits(logits, keep_only_valid_steps=True)  # [B, K, T, card], [K, T]
    losses = []
    for k in range(codes.shape[1]):
        target = codes[:, k, valid[k]].to(device)  # [B, Tk]
        losses.append(F.cross_entropy(logits[:, k, valid[k]].flatten(0, 1), target.flatten()))
    return torch.stack(losses)


@torch.no_grad()
def validate(lm: MusicLM, pattern, text_encoder, data: dict, cfg: LMTrainConfig, batch: int = 32) -> dict:
    lm.eval()
    totals, n = 0.0, 0
    for start in range(0, len(data["captions"]), batch):
        idx = np.arange(start, min(start + batch, len(data["captions"])))
        totals = totals + lm_loss(lm, pattern, text_encoder, *make_batch(data, idx, cfg, None)) * len(idx)
        n += len(idx)
    lm.train()
    ce = (totals / n).tolist()
    return {**{f"ce{k}": c for k, c in enumerate(ce)}, **{f"ppl{k}": math.exp(c) for k, c in enumerate(ce)},
            "ce": float(np.mean(ce))}


def train(cfg: LMTrainConfig, tokens: Path, valid_tokens: Path, run_dir: Path, max_minutes: float | None = None,
          max_steps: int | None = None, device: str | None = None) -> dict:
    ddp = "WORLD_SIZE" in os.environ
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    device = torch.device(device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available()
                                     else "cpu"))
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    data, val = load_shards(tokens), load_shards(valid_tokens) if rank == 0 else None
    text_encoder = load_text_encoder("sentence").to(device)
    pattern = get_pattern(cfg.lm.pattern, cfg.lm.n_q, **dict(cfg.lm.pattern_kwargs))
    lm = MusicLM(cfg.lm).to(device).train()
    decay = [p for n, p in lm.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in lm.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    ema = copy.deepcopy(lm).eval().requires_grad_(False)
    step, elapsed = 0, 0.0
    ckpt = run_dir / "latest.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        lm.load_state_dict(state["lm"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        print(f"resumed from {ckpt} at step {step} ({elapsed / 60:.1f} min)", flush=True)
    model = torch.nn.parallel.DistributedDataParallel(lm) if ddp else lm
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                     enabled=False)
    log_path = run_dir / "train.csv"
    new_log = not log_path.exists()
    log_file = open(log_path, "a", newline="")
    log = csv.writer(log_file)
    if new_log and rank == 0:
        log.writerow(["step", "minutes", "lr", "loss", *[f"ce{k}" for k in range(cfg.lm.n_q)], "steps_per_s"])
    metrics, t0, t_log, last_ckpt = {}, time.time(), time.time(), time.time()

    def save():
        if rank == 0:
            atomic_save({"lm": lm.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                         "elapsed": elapsed, "config": dataclasses.asdict(cfg)}, ckpt)

    n_items = len(data["captions"])
    while True:
        rng = np.random.default_rng([cfg.seed, step, rank])
        idx = rng.integers(0, n_items, cfg.batch_size)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with autocast:
            per_codebook = lm_loss(lm, pattern, text_encoder, *make_batch(data, idx, cfg, rng), forward=model)
        loss = per_codebook.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), lm.parameters()):
                e.lerp_(p, 1 - cfg.ema)
        step += 1
        now = time.time()
        elapsed += now - t0
        t0 = now
        if rank == 0 and step % cfg.log_every == 0:
            rate = cfg.log_every / (now - t_log)
            t_log = now
            ce = [round(c, 4) for c in per_codebook.tolist()]
            log.writerow([step, round(elapsed / 60, 2), f"{lr_at(step, cfg):.2e}", round(loss.item(), 4), *ce,
                          round(rate, 3)])
            log_file.flush()
            print(f"step={step} min={elapsed / 60:.1f} loss={loss.item():.4f} ce={ce} steps/s={rate:.2f}",
                  flush=True)
        if rank == 0 and step % cfg.val_every == 0:
            metrics = validate(ema, pattern, text_encoder, val, cfg)
            _write_val(run_dir / "valid.csv", step, elapsed, metrics)
        done = (max_steps is not None and step >= max_steps) or (max_minutes and elapsed >= max_minutes * 60)
        if done or now - last_ckpt > cfg.ckpt_minutes * 60:
            save()
            last_ckpt = now
        if done:
            break
    if rank == 0:
        metrics = validate(ema, pattern, text_encoder, val, cfg)
        _write_val(run_dir / "valid.csv", step, elapsed, metrics)
    if ddp:
        dist.destroy_process_group()
    return metrics


def _write_val(path: Path, step: int, elapsed: float, metrics: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "minutes", *metrics])
        w.writerow([step, round(elapsed / 60, 2), *(round(v, 4) for v in metrics.values())])
    print("valid " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("train-lm", help="train the music LM on token shards (resumable)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--tokens", required=True, help="folder of training token shards (musicgen encode-data)")
    p.add_argument("--valid-tokens", required=True, help="folder of validation token shards")
    p.add_argument("--run-dir", default="runs/lm")
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None)

    def run(args: argparse.Namespace) -> None:
        torch.set_num_threads(args.threads)
        train(PRESETS[args.preset], Path(args.tokens), Path(args.valid_tokens), Path(args.run_dir), args.minutes,
              args.steps, args.device)

    p.set_defaults(func=run)
