"""LM trainer (`musicgen train-lm`): the text- and melody-conditioned MusicLM on pre-encoded token shards.

MusicGen-melody's recipe (§3.2) at a small size: conditioning is a prefix `[chroma | text]` (frozen sentence-encoder
states projected to the LM width, the argmax chroma of the lead), with condition dropout so one model serves text,
melody, both and neither (CFG). Delay pattern; per-codebook cross-entropy over valid steps (§2.2). AdamW, cosine
schedule with warm-up, gradient clipping, an EMA of the weights (its decay warmed up), bf16 autocast (GPU and CPU),
torchrun/DDP. Resumable from `run_dir/latest.pt` (written atomically every few minutes).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import plots
from ..audio import save_audio
from ..checkpoints import load_own, save_model
from ..conditioning.chroma import null_chroma
from ..conditioning.tempo import bpm_tensor
from ..conditioning.text import TextEncoder
from ..configs import CodecConfig, LMConfig, MusicGenConfig, TextConfig
from ..generate import MusicGen
from ..hf_format import load_text_encoder
from ..lm.model import MusicLM
from ..patterns import get_pattern
from . import runtime
from .tokens import load_codec, load_shards

# Token shards are encoded by codecs with the default token interface (32 kHz, hop 640): the tempo grid's time axis.
TOKEN_FRAME_RATE = CodecConfig().frame_rate


@dataclass(frozen=True)
class LMTrainConfig:
    lm: LMConfig = field(default_factory=lambda: LMConfig(dim=256, num_heads=8, num_layers=4, ffn_dim=1024,
                                                          cond_dim=384, cross_attention=False, chroma=True,
                                                          chroma_length=79, tempo=True))
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
    sample_every: int = 2000  # audio samples + token grids in run_dir/samples (needs the codec)
    ckpt_minutes: float = 5.0
    max_duration: float = 10.0  # the generation window of the shipped model (the chroma prefix covers it)
    cpu_bf16: bool = True  # bf16 autocast on CPU too (fp32 master weights)
    seed: int = 0


PRESETS = {
    "cpu": LMTrainConfig(),
    "gpu": LMTrainConfig(lm=LMConfig(dim=512, num_heads=8, num_layers=8, ffn_dim=2048, cond_dim=384,
                                     cross_attention=False, chroma=True, chroma_length=79, tempo=True), batch_size=64,
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
    """codes [B, K, F], descriptions (None = dropped), chroma one-hot [B, Fc, 12] (null = one-hot C), t0 [B] (the
    clips' offsets from a downbeat, the tempo grid's phase). With rng=None (validation) the first caption is used and
    nothing is dropped."""
    codes = data["codes"][idx].long()
    t0 = torch.tensor([data["meta"][j]["start"] for j in idx], dtype=torch.float32)
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
    return codes, texts, chroma, t0


def lm_loss(lm: MusicLM, pattern, text_encoder: TextEncoder, codes, texts, chroma, t0, forward=None) -> torch.Tensor:
    """Per-codebook cross-entropy [K] on the valid steps of the pattern. `forward` (default: lm) runs the LM, e.g.
    its DistributedDataParallel wrapper."""
    device = lm.emb.device
    seq, _ = pattern.build(codes.to(device), lm.cfg.special_token, keep_only_valid_steps=True)  # [B, K, S]
    text, mask = text_encoder(texts)
    ctx = lm.condition(text.to(device), mask.to(device), chroma.to(device), bpm_tensor(texts), t0, TOKEN_FRAME_RATE)
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


SAMPLE_PROMPTS = ("an upbeat folk song with fiddle and acoustic guitar, 120 bpm",
                  "a slow sad piano ballad in A minor")


def music_model(lm: MusicLM, codec, cfg: LMTrainConfig, text_encoder: TextEncoder | None = None):
    """The MusicGen facade around a trained LM and codec (MiniLM text encoder), as shipped."""
    config = MusicGenConfig(codec=codec.cfg, lm=cfg.lm, text=TextConfig("sentence", "all-MiniLM-L6-v2", 384),
                            max_duration=cfg.max_duration)
    return MusicGen(lm, codec, text_encoder or load_text_encoder("sentence"), config, name="default")


def write_samples(model, folder: Path, step: int, seconds: float = 5.0) -> None:
    """Generate the sample prompts (fixed seed) to step_N_i.wav + a token-grid PNG of each."""

    folder.mkdir(parents=True, exist_ok=True)
    wav, codes = model.generate(list(SAMPLE_PROMPTS), return_tokens=True, seed=step, duration=seconds)
    special = model.config.lm.special_token
    for i, (w, c) in enumerate(zip(wav, codes)):
        save_audio(folder / f"step_{step}_{i}.wav", w, model.sample_rate)
        seq, _ = model.pattern.build(c[None], special)
        fig = plots.token_grid(seq[0].cpu().numpy(), special, model.frame_rate, card=model.config.lm.card)
        fig.savefig(folder / f"step_{step}_{i}.png")


def export_default(codec_path: str, lm_checkpoint: Path, out: Path, weights: str = "ema") -> Path:
    """Ship the EMA (or the raw, `weights="lm"`) weights of an LM run with its codec as a model folder in our format
    (fp16 tensors). `lm_checkpoint` may also be a model folder in our format: its LM ships with the new codec (which
    must make the same tokens)."""
    codec = load_codec(codec_path)
    if lm_checkpoint.is_dir():
        cfg, lm, _, text = load_own(lm_checkpoint)
        model = MusicGen(lm, codec, text, dataclasses.replace(cfg, codec=codec.cfg), name="default")
    else:
        state = torch.load(lm_checkpoint, map_location="cpu", weights_only=True)
        train_cfg = _train_config(state["config"])
        lm = MusicLM(train_cfg.lm)
        lm.load_state_dict(state[weights])
        model = music_model(lm, codec, train_cfg)
    return save_model(model, out, dtype=torch.float16)


def _train_config(d: dict) -> LMTrainConfig:
    return LMTrainConfig(**{**d, "lm": LMConfig.from_dict(d["lm"])})


def train(cfg: LMTrainConfig, tokens: Path, valid_tokens: Path, run_dir: Path, max_minutes: float | None = None,
          max_steps: int | None = None, device: str | None = None, codec_path: str | None = None,
          init: Path | None = None) -> dict:
    """Train (or resume from run_dir/latest.pt) on the token shards in `tokens`; validate on `valid_tokens`; with
    `codec_path`, write audio samples every `sample_every` steps. A new run starts from `init` (another run's
    checkpoint, its EMA weights) if given: parameters that run lacks (e.g. the tempo projection) keep their init."""
    rt = runtime.setup(device, cfg.cpu_bf16)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    data, val = load_shards(tokens), load_shards(valid_tokens) if rt.main else None
    text_encoder = load_text_encoder("sentence").to(rt.device)
    pattern = get_pattern(cfg.lm.pattern, cfg.lm.n_q, **dict(cfg.lm.pattern_kwargs))
    lm = MusicLM(cfg.lm).to(rt.device).train()
    decay = [p for p in lm.parameters() if p.dim() >= 2]
    no_decay = [p for p in lm.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    ema = copy.deepcopy(lm).eval().requires_grad_(False)
    state = runtime.resume_state(run_dir / "latest.pt", rt.device)
    if state is not None:
        lm.load_state_dict(state["lm"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
    elif init is not None:
        weights = torch.load(init, map_location=rt.device, weights_only=True)["ema"]
        missing, unexpected = lm.load_state_dict(weights, strict=False)
        if unexpected:
            raise ValueError(f"{init} has weights this model lacks: {unexpected}")
        ema.load_state_dict(lm.state_dict())
        print(f"initialised from {init}; new: {missing}", flush=True)
    model = rt.wrap(lm)
    if codec_path:
        codec = load_codec(codec_path).to(rt.device)
    step, elapsed = (state["step"], state["elapsed"]) if state is not None else (0, 0.0)
    clock = runtime.Clock(step, elapsed, max_steps, max_minutes, cfg.ckpt_minutes)
    loop = runtime.Loop(rt, run_dir, clock, dataclasses.asdict(cfg), cfg.log_every, cfg.val_every,
                        measure=lambda: validate(ema, pattern, text_encoder, val, cfg),
                        state=lambda: {"lm": lm.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict()})

    def samples(step: int) -> None:
        if codec_path and step % cfg.sample_every == 0:
            write_samples(music_model(ema, codec, cfg, text_encoder), run_dir / "samples", step)

    n_items = len(data["captions"])
    while True:
        rng = np.random.default_rng([cfg.seed, clock.step, rt.rank])
        idx = rng.integers(0, n_items, cfg.batch_size)
        for group in opt.param_groups:
            group["lr"] = lr_at(clock.step, cfg)
        with rt.autocast():
            per_codebook = lm_loss(lm, pattern, text_encoder, *make_batch(data, idx, cfg, rng), forward=model)
        loss = per_codebook.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():  # the decay warms up, so early EMA weights are not mostly the random init
            ema_decay = min(cfg.ema, (1 + clock.step) / (10 + clock.step))
            for e, p in zip(ema.parameters(), lm.parameters()):
                e.lerp_(p, 1 - ema_decay)
        if loop.end_step(lambda: {"lr": lr_at(clock.step, cfg), "loss": loss.item(),
                                  **{f"ce{k}": c for k, c in enumerate(per_codebook.tolist())}}, samples):
            break
    return loop.finish()


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("train-lm", help="train the music LM on token shards (resumable)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--tokens", required=True, help="folder of training token shards (musicgen encode-data)")
    p.add_argument("--valid-tokens", required=True, help="folder of validation token shards")
    p.add_argument("--run-dir", default="runs/lm")
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--total-steps", type=int, default=None,
                   help="length of the cosine schedule (default: the preset's); fit it to the compute you have")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: the preset's)")
    p.add_argument("--init", default=None, help="start a new run from another run's checkpoint (its EMA weights)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None)
    p.add_argument("--codec", default=None, help="codec (exported folder or latest.pt) for periodic audio samples")

    def run(args: argparse.Namespace) -> None:
        torch.set_num_threads(args.threads)
        cfg = PRESETS[args.preset]
        overrides = {k: getattr(args, k) for k in ("total_steps", "lr", "warmup") if getattr(args, k) is not None}
        train(dataclasses.replace(cfg, **overrides), Path(args.tokens), Path(args.valid_tokens), Path(args.run_dir),
              args.minutes, args.steps, args.device, args.codec, args.init and Path(args.init))

    p.set_defaults(func=run)

    e = subparsers.add_parser("export-default", help="ship an LM run (EMA weights) + its codec as a model folder")
    e.add_argument("--codec", required=True, help="exported codec folder or codec run latest.pt")
    e.add_argument("--lm", required=True, help="LM run checkpoint (latest.pt), or a model folder whose LM to keep")
    e.add_argument("--out", default="musicgen_core/assets/default")
    e.add_argument("--weights", choices=("ema", "lm"), default="ema",
                   help="the EMA of the weights (default) or the raw weights (early in a run)")
    e.set_defaults(func=lambda args: print(
        f"wrote {export_default(args.codec, Path(args.lm), Path(args.out), args.weights)}"))
