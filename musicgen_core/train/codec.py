"""Codec trainer (`musicgen train-codec`): fresh synthetic clips every step, optionally mixed with crops of real music
and a wide-range level augmentation (codec_data.py), resumable, one script for a single CPU process and for
torchrun/DDP on GPUs.

Losses (EnCodec §3.4): multi-resolution mel + STFT reconstruction, time-domain L1, RVQ commitment (EMA codebooks with
dead-code restarts live in the quantiser), chroma agreement (the melody conditioning's features) and, once
reconstruction is stable, a multi-scale STFT discriminator with hinge and feature-matching losses. Validation
measures synthetic and held-out real clips apart, and each at several input levels. Checkpoints are written
atomically to `run_dir/latest.pt` every few minutes; a run resumes from there, or warm-starts from shipped weights
when its folder is gone.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..audio import rms_db
from ..checkpoints import default_model_dir
from ..codec import Codec
from ..configs import CodecConfig
from ..eval.metrics import chroma_cosine
from . import runtime
from .codec_eval import codec_speed, plot_reconstructions
from .codec_data import TrainBatches, at_level, held_out_clips, held_out_real
from .tokens import load_codec
from .losses import (ChromaLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss, MultiScaleSTFTDiscriminator,
                     discriminator_loss, generator_losses, si_sdr)


@dataclass(frozen=True)
class CodecTrainConfig:
    codec: CodecConfig = field(default_factory=CodecConfig)
    batch_size: int = 8
    segment: float = 1.0  # seconds per training crop
    clips_per_batch: int = 2  # each rendered clip gives batch_size / clips_per_batch crops
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    adv_start: int = 4000  # steps of reconstruction-only training before the discriminator joins
    disc_filters: int = 32
    disc_ffts: tuple[int, ...] = (1024, 2048, 512, 256, 128)
    disc_items: int | None = None  # batch items the discriminator sees (None = all); fewer saves CPU time
    w_mel: float = 15.0
    w_stft: float = 1.0
    w_l1: float = 1.0
    w_commit: float = 1.0
    w_chroma: float = 0.0
    w_adv: float = 1.0
    w_feat: float = 2.0
    log_every: int = 50
    val_every: int = 1000
    ckpt_minutes: float = 5.0
    val_clips: int = 24
    val_duration: float = 4.0
    workers: int = 1
    freeze_tokens: bool = False  # train only the decoder (+ discriminator): the tokens stay as they are
    real: str | None = None  # real-music cache (`musicgen fetch-real`); its held-out packages are validated apart
    real_fraction: float = 0.0  # of each batch's crops taken from the real cache's training packages
    gain_range: tuple[float, float] | None = None  # dBFS RMS range of the level augmentation (None: as rendered)
    val_levels: tuple[float, ...] = ()  # dBFS RMS levels at which validation clips are also measured
    val_level_clips: int = 8  # clips per set measured at each level
    seed: int = 0


_SMALL = CodecConfig(n_filters=16)
PRESETS = {  # CPU presets are measured to fit a 2-core machine; "gpu" is the official EnCodec width
    "cpu-seanet": CodecTrainConfig(codec=_SMALL, disc_filters=8, disc_ffts=(1024, 256), disc_items=4, w_chroma=40.0,
                                   val_every=500),
    "cpu-istft": CodecTrainConfig(codec=dataclasses.replace(_SMALL, decoder="istft"), disc_filters=8,
                                  disc_ffts=(1024, 256), disc_items=4, val_every=500),
    "gpu": CodecTrainConfig(codec=CodecConfig(n_filters=32), batch_size=32, clips_per_batch=8, workers=12,
                            adv_start=2000),
}


# --- evaluation ---------------------------------------------------------------------------------------------------
EVAL_MEL_WINDOWS = (128, 256, 512, 1024, 2048)  # the held-out mel distance keeps one definition across runs


@torch.no_grad()
def evaluate(codec: Codec, clips: torch.Tensor, batch: int = 8) -> dict[str, float]:
    """Held-out reconstruction metrics: mel distance, SI-SDR, soft chroma cosine, audiocraft's argmax chroma cosine
    (`chroma_argmax`), output minus input RMS level in dB (`level_db`), codebook usage and perplexity."""
    modes = [m.training for m in codec.modules()]
    codec.eval()
    mel = MultiResolutionMelLoss(codec.sample_rate, windows=EVAL_MEL_WINDOWS).to(clips.device)
    chroma = ChromaLoss(codec.sample_rate).to(clips.device)
    mel_d, sdr, cos, argmax, level, codes_all = [], [], [], [], [], []
    for x in clips.split(batch):
        codes = codec.encode(x)
        y = codec.decode(codes)[..., :x.shape[-1]] / codec.input_gain(x)
        mel_d.append(float(mel(y, x)))
        sdr.append(si_sdr(y, x).mean().item())
        cos.append(1 - chroma(y, x).item())
        for a, b in zip(y[:, 0].float().cpu().numpy(), x[:, 0].float().cpu().numpy()):
            argmax.append(chroma_cosine(a, b, codec.sample_rate))
            level.append(float(rms_db(a) - rms_db(b)))
        codes_all.append(codes.transpose(0, 1).flatten(1))  # [K, B * F]
    codes_all = torch.cat(codes_all, dim=1)
    out = {"mel": float(np.mean(mel_d)), "si_sdr": float(np.mean(sdr)), "chroma_cos": float(np.mean(cos)),
           "chroma_argmax": float(np.mean(argmax)), "level_db": float(np.mean(level))}
    for k, c in enumerate(codes_all):
        p = torch.bincount(c, minlength=codec.cardinality).float() / c.numel()
        out[f"usage{k}"] = (p > 0).float().mean().item()
        out[f"ppl{k}"] = math.exp(-(p[p > 0] * p[p > 0].log()).sum().item())
    for m, mode in zip(codec.modules(), modes):
        m.training = mode
    return out


# --- checkpoints --------------------------------------------------------------------------------------------------
def export_codec(codec: Codec, folder: Path, dtype=torch.float16) -> Path:
    """Write inference weights (weight norm folded) as codec.safetensors + codec_config.json."""

    folded = Codec(codec.cfg)
    folded.load_state_dict(copy.deepcopy(codec.state_dict()))
    folded.remove_weight_norm()
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.to(dtype).contiguous() for k, v in folded.state_dict().items()
          if not k.endswith(("embed_avg", "cluster_size", "inited"))}
    save_file(sd, str(folder / "codec.safetensors"))
    (folder / "codec_config.json").write_text(json.dumps(dataclasses.asdict(codec.cfg), indent=2))
    return folder / "codec.safetensors"


def warm_start_state(codec: Codec, folded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Shipped inference weights (weight norm folded, no EMA statistics) -> a full training state dict for `codec`:
    each folded weight w becomes v = w, g = |w| (exact), and each codebook restarts its EMA from its entries. A
    decoder of another kind than the shipped one keeps its initialisation (a new decoder for the shipped tokens)."""
    own = codec.state_dict()
    out = {}
    for key, value in folded.items():
        stem = key[: -len("weight")]
        if key.endswith(".weight") and stem + "parametrizations.weight.original1" in own:
            out[stem + "parametrizations.weight.original0"] = torch.linalg.vector_norm(
                value.float(), dim=tuple(range(1, value.dim())), keepdim=True)
            out[stem + "parametrizations.weight.original1"] = value.float()
        else:
            out[key] = value.float()
    own_decoder = {k: v for k, v in own.items() if k.startswith("decoder.")}
    if {k for k in out if k.startswith("decoder.")} != own_decoder.keys():
        out = {k: v for k, v in out.items() if not k.startswith("decoder.")} | own_decoder
    for k in range(codec.n_q):
        embed = out[f"quantizer.layers.{k}.embed"]
        out[f"quantizer.layers.{k}.inited"] = torch.ones(1)
        out[f"quantizer.layers.{k}.cluster_size"] = torch.ones(embed.shape[0])
        out[f"quantizer.layers.{k}.embed_avg"] = embed.clone()
    return out


# --- training loop ------------------------------------------------------------------------------------------------
LOSSES = ("mel", "stft", "l1", "commit", "chroma", "adv", "feat", "disc")
LEVEL_METRICS = ("mel", "si_sdr", "chroma_argmax", "level_db")  # measured at each input level


def validation_sets(synthetic: torch.Tensor, real: torch.Tensor | None = None, levels: tuple[float, ...] = (),
                    level_clips: int = 8) -> dict[str, torch.Tensor]:
    """Column prefix -> clips [N, 1, T]: "" the synthetic held-out clips, "real_" the held-out real ones, and the first
    `level_clips` of each at every RMS level ("syn-20_", "real-20_")."""
    sets = {"": synthetic} | ({"real_": real} if real is not None else {})
    for stem, clips in (("syn", synthetic), ("real", real)):
        for level in levels if clips is not None else ():
            sets[f"{stem}{level:+g}_"] = at_level(clips[:level_clips], level)
    return sets


def measure(codec: Codec, sets: dict[str, torch.Tensor]) -> dict[str, float]:
    """`evaluate` on every set, columns prefixed; the level sets report only LEVEL_METRICS."""
    return {f"{name}{k}": v for name, clips in sets.items() for k, v in evaluate(codec, clips).items()
            if name in ("", "real_") or k in LEVEL_METRICS}


def train(cfg: CodecTrainConfig, run_dir: Path, max_minutes: float | None = None, max_steps: int | None = None,
          device: str | None = None, warm_start: Path | None = None) -> dict[str, float]:
    """Train (or resume from run_dir/latest.pt; without one, optionally warm-start from shipped codec weights)."""
    rt = runtime.setup(device)
    torch.manual_seed(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)

    codec = Codec(cfg.codec).to(rt.device).train()
    if cfg.freeze_tokens:  # eval mode also stops the codebooks' EMA updates and dead-code restarts
        for frozen in (codec.encoder, codec.quantizer):
            frozen.eval().requires_grad_(False)
    disc = MultiScaleSTFTDiscriminator(cfg.disc_ffts, cfg.disc_filters).to(rt.device).train()
    opt_g = torch.optim.Adam(codec.parameters(), cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(disc.parameters(), cfg.lr, betas=cfg.betas)
    state = runtime.resume_state(run_dir / "latest.pt", rt.device)
    if state is not None:
        codec.load_state_dict(state["codec"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        for group in opt_g.param_groups + opt_d.param_groups:  # the config's rate wins: a run can resume with less
            group["lr"] = cfg.lr
    elif warm_start is not None and warm_start.is_file():
        codec.load_state_dict(warm_start_state(codec, load_file(str(warm_start), device=str(rt.device))))
        print(f"warm-started from {warm_start}", flush=True)
    step, elapsed = (state["step"], state["elapsed"]) if state is not None else (0, 0.0)
    model, dmodel = rt.wrap(codec), rt.wrap(disc)
    mel_loss, stft_loss = MultiResolutionMelLoss(cfg.codec.sample_rate).to(rt.device), MultiResolutionSTFTLoss()
    chroma_loss = ChromaLoss(cfg.codec.sample_rate).to(rt.device)
    val = {}
    if rt.main:
        real = held_out_real(cfg.real, cfg.val_clips, cfg.val_duration) if cfg.real else None
        val = {k: v.to(rt.device) for k, v in validation_sets(held_out_clips(range(cfg.val_clips), cfg.val_duration),
                                                              real, cfg.val_levels, cfg.val_level_clips).items()}
    loader = torch.utils.data.DataLoader(TrainBatches(cfg, step, rt.rank, rt.world), batch_size=None,
                                         num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None,
                                         persistent_workers=bool(cfg.workers))
    clock = runtime.Clock(step, elapsed, max_steps, max_minutes, cfg.ckpt_minutes)
    loop = runtime.Loop(rt, run_dir, clock, dataclasses.asdict(cfg), cfg.log_every, cfg.val_every,
                        measure=lambda: measure(codec, val),
                        state=lambda: {"codec": codec.state_dict(), "disc": disc.state_dict(),
                                       "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()})
    for x in loader:
        # k-means init and dead-code restarts draw from torch's generator: seeded per step, a resumed run repeats
        # exactly the steps an uninterrupted one would have taken
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, clock.step, rt.rank]).generate_state(1)[0]))
        x = x.to(rt.device, non_blocking=True)
        with rt.autocast():
            out = model(x)
        y = out.wav.float()
        losses = {"mel": mel_loss(y, x), "stft": stft_loss(y, x), "l1": F.l1_loss(y, x), "commit": out.penalty}
        if cfg.w_chroma:
            losses["chroma"] = chroma_loss(y, x)
        if clock.step >= cfg.adv_start:
            xd, yd = x[:cfg.disc_items], y[:cfg.disc_items]
            with rt.autocast():
                real = dmodel(xd)
                d_loss = discriminator_loss(real, dmodel(yd.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            with rt.autocast():  # the real features from the discriminator step serve as (detached) targets
                losses["adv"], losses["feat"] = generator_losses(real, dmodel(yd))
            losses["disc"] = d_loss.detach()
        total = sum(getattr(cfg, f"w_{k}") * v for k, v in losses.items() if k != "disc")
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        if loop.end_step(lambda: {k: losses[k].item() if k in losses else "" for k in LOSSES}):
            break
    return loop.finish()


def add_cli(subparsers) -> None:
    default = default_model_dir()
    p = subparsers.add_parser("train-codec", help="train the audio tokenizer on the synthetic corpus, optionally "
                                                  "mixed with real music (resumable)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu-seanet")
    p.add_argument("--run-dir", default="runs/codec")
    p.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is stable on a shared 2-core CPU)")
    p.add_argument("--device", default=None)
    p.add_argument("--export", default=None, help="after training, write codec.safetensors to this folder")
    p.add_argument("--warm-start", default=str(default / "codec.safetensors"),
                   help="shipped weights to start from when run-dir holds no checkpoint (if the file exists)")
    p.add_argument("--freeze-tokens", action="store_true",
                   help="train only the decoder: the tokens (encoder and codebooks) stay as they are")
    p.add_argument("--batch-size", type=int, default=None,
                   help="crops per step (default: the preset's); rendered clips per step scale with it")
    p.add_argument("--workers", type=int, default=None, help="data-rendering processes (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's); applies on resume")
    p.add_argument("--chroma-weight", type=float, default=None,
                   help="weight of the chroma-agreement loss (default: the preset's); applies on resume")
    p.add_argument("--adv-start", type=int, default=None,
                   help="step at which the discriminator joins (default: the preset's); 0 for a warm start from "
                        "weights that were already trained with one")
    p.add_argument("--real", default=None, help="real-music cache (musicgen fetch-real) to mix into the batches")
    p.add_argument("--real-fraction", type=float, default=0.5, help="share of each batch's crops taken from --real")
    p.add_argument("--gain-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="level augmentation: each crop at a random RMS level in [LOW, HIGH] dBFS, some with silence, "
                        "fades or low-level noise (default: as rendered)")
    p.add_argument("--input-rms-db", type=float, default=None, metavar="DBFS",
                   help="renormalise each input to this RMS level before encoding, restored after decoding (the "
                        "codec config's input_rms_db; default: off, as MusicGen's codec)")
    p.add_argument("--val-levels", type=float, nargs="+", default=(), metavar="DBFS",
                   help="also validate at these RMS levels (synthetic and real held-out clips)")
    p.add_argument("--val-every", type=int, default=None, help="steps between validations (default: the preset's)")

    def run(args: argparse.Namespace) -> None:
        torch.set_num_threads(args.threads)
        preset = PRESETS[args.preset]
        batch, crops_per_clip = args.batch_size or preset.batch_size, preset.batch_size // preset.clips_per_batch
        if batch % crops_per_clip:  # else the batches would silently hold fewer crops than asked
            raise ValueError(f"--batch-size must be a multiple of {crops_per_clip} (crops per rendered clip)")
        cfg = dataclasses.replace(preset, codec=dataclasses.replace(preset.codec, input_rms_db=args.input_rms_db),
                                  freeze_tokens=args.freeze_tokens, lr=args.lr or preset.lr, batch_size=batch,
                                  clips_per_batch=batch // crops_per_clip,
                                  workers=preset.workers if args.workers is None else args.workers,
                                  w_chroma=preset.w_chroma if args.chroma_weight is None else args.chroma_weight,
                                  adv_start=preset.adv_start if args.adv_start is None else args.adv_start,
                                  real=args.real, real_fraction=args.real_fraction if args.real else 0.0,
                                  gain_range=tuple(args.gain_range) if args.gain_range else None,
                                  val_levels=tuple(args.val_levels), val_every=args.val_every or preset.val_every)
        train(cfg, Path(args.run_dir), args.minutes, args.steps, args.device, Path(args.warm_start))
        if args.export:
            state = torch.load(Path(args.run_dir) / "latest.pt", map_location="cpu", weights_only=True)
            codec = Codec(cfg.codec)
            codec.load_state_dict(state["codec"])
            print(f"wrote {export_codec(codec, Path(args.export))}")

    p.set_defaults(func=run)

    e = subparsers.add_parser("eval-codec", help="held-out reconstruction metrics of a codec (the trainer's, on more "
                                                 "clips): mel, SI-SDR, soft chroma, codebook usage and perplexity")
    e.add_argument("--codec", default=str(default), help="exported codec folder, model folder or latest.pt")
    e.add_argument("--n", type=int, default=256, help="validation clips")
    e.add_argument("--dur", type=float, default=4.0, help="seconds per clip")
    e.add_argument("--seed", type=int, default=0, help="first validation seed")
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--speed", action="store_true", help="also time encode and decode of a 10 s clip (best of 3)")
    e.add_argument("--plots", default=None, help="also write input vs reconstruction mel spectrograms (PNG) of the "
                                                "first --n-plots clips to this folder")
    e.add_argument("--n-plots", type=int, default=4)
    e.add_argument("--real", default=None, help="also measure --n clips of this real-music cache's held-out packages")
    e.add_argument("--levels", type=float, nargs="+", default=(), metavar="DBFS",
                   help="also measure the first 8 clips of each set at these RMS levels")

    def run_eval(args: argparse.Namespace) -> None:

        torch.set_num_threads(args.threads)
        seeds = range(args.seed, args.seed + args.n)
        clips, codec = held_out_clips(seeds, args.dur), load_codec(args.codec)
        real = held_out_real(args.real, args.n, args.dur) if args.real else None
        metrics = measure(codec, validation_sets(clips, real, tuple(args.levels)))
        if args.speed:
            metrics |= codec_speed(codec, held_out_clips(range(args.seed, args.seed + 1), 10.0))
        print(json.dumps(metrics, indent=1))
        if args.plots:
            for path in plot_reconstructions(codec, clips[:args.n_plots], seeds, Path(args.plots)):
                print(f"wrote {path}", file=sys.stderr)

    e.set_defaults(func=run_eval)
