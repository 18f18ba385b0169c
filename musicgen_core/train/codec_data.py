"""Codec training data: batches of crops from freshly rendered synthetic clips, optionally mixed with crops of the real
-music cache (real.py), and a level augmentation (random RMS level over a wide range, some crops with silence, fades
and low-level noise), since real recordings sit anywhere from -40 to 0 dBFS; plus the held-out validation sets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..audio import rms_db
from .data import VALID_SEEDS, make_example
from .real import RealCorpus


def set_level(x: np.ndarray, dbfs, max_boost_db: float = 40.0) -> np.ndarray:
    """Crops [..., T] scaled to RMS `dbfs` (scalar or per crop), never boosted more than `max_boost_db` (near-silent
    crops stay quiet) and scaled down where the peak would exceed 1."""
    gain = 10 ** (np.minimum(np.asarray(dbfs) - rms_db(x), max_boost_db) / 20)
    y = x * gain[..., None]
    peak = np.abs(y).max(axis=-1, keepdims=True)
    return (y / np.maximum(peak, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class LevelAugment:
    gain_range: tuple[float, float] = (-40.0, 0.0)  # dBFS RMS of each crop, uniform
    p_silence: float = 0.1  # a silent stretch (10-60 % of the crop) at its start or end
    p_fade: float = 0.1  # a fade in or out over 20-100 % of the crop
    p_noise: float = 0.1  # white noise at -80 .. -50 dBFS RMS
    noise_db: tuple[float, float] = (-80.0, -50.0)


def augment(x: np.ndarray, rng: np.random.Generator, aug: LevelAugment) -> np.ndarray:
    """Level augmentation of crops [N, T] (pure in `rng`)."""
    n, t = x.shape
    y = set_level(x, rng.uniform(*aug.gain_range, n))
    for i in range(n):
        if rng.random() < aug.p_silence:
            span = int(t * rng.uniform(0.1, 0.6))
            y[i, slice(0, span) if rng.random() < 0.5 else slice(t - span, t)] = 0.0
        if rng.random() < aug.p_fade:
            length = max(2, int(t * rng.uniform(0.2, 1.0)))
            fade = np.ones(t, dtype=np.float32)
            fade[:length] = np.linspace(0.0, 1.0, length) ** 2
            y[i] *= fade if rng.random() < 0.5 else fade[::-1]
        if rng.random() < aug.p_noise:
            y[i] += rng.standard_normal(t).astype(np.float32) * 10 ** (rng.uniform(*aug.noise_db) / 20)
    return np.clip(y, -1.0, 1.0)


class TrainBatches(torch.utils.data.IterableDataset):
    """Batches [B, 1, segment] of random crops from freshly rendered clips (and, with `cfg.real`, a `real_fraction` of
    crops from the real-music cache); the stream is a pure function of (seed, step, rank), so a resumed run continues
    where it stopped and workers never repeat each other."""

    def __init__(self, cfg, start_step: int, rank: int = 0, world: int = 1):
        super().__init__()
        self.cfg, self.start_step, self.rank, self.world = cfg, start_step, rank, world

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        cfg, sr = self.cfg, self.cfg.codec.sample_rate
        n = int(cfg.segment * sr)
        per_clip = cfg.batch_size // cfg.clips_per_batch
        real = RealCorpus(cfg.real, "train") if cfg.real and cfg.real_fraction > 0 else None
        n_real = round(cfg.batch_size * cfg.real_fraction) if real else 0
        step = self.start_step + wid
        while True:
            rng = np.random.default_rng([cfg.seed, step, self.rank])
            crops = []
            for c in range(-(-(cfg.batch_size - n_real) // per_clip)):
                seed = VALID_SEEDS + (step * self.world + self.rank) * cfg.clips_per_batch + c
                audio = make_example(seed, duration=max(4.0, 2 * cfg.segment)).audio
                starts = rng.integers(0, len(audio) - n, per_clip)
                crops += [audio[s:s + n] for s in starts]
            crops = np.stack(crops[:cfg.batch_size - n_real])
            if n_real:
                crops = np.concatenate([crops, real.crops(rng, n_real, n)])
            if cfg.gain_range:
                crops = augment(crops, rng, LevelAugment(tuple(cfg.gain_range)))
            yield torch.from_numpy(np.ascontiguousarray(crops))[:, None].float()
            step += nw


def held_out_clips(seeds: range, duration: float) -> torch.Tensor:
    """Synthetic validation clips [N, 1, T] (validation seeds never appear in training)."""
    if not 0 <= seeds.start <= seeds.stop <= VALID_SEEDS:
        raise ValueError(f"validation seeds are 0..{VALID_SEEDS - 1}")
    clips = [make_example(i, duration=duration).audio for i in seeds]
    return torch.from_numpy(np.stack(clips))[:, None].float()


def held_out_real(folder, n: int, duration: float, sample_rate: int = 32000) -> torch.Tensor:
    """Real validation clips [N, 1, T] from the held-out packages of the cache, at their recorded level."""
    return torch.from_numpy(RealCorpus(folder, "valid").clips(n, int(duration * sample_rate)))[:, None].float()


def at_level(clips: torch.Tensor, dbfs: float) -> torch.Tensor:
    """Clips [N, 1, T] each set to RMS `dbfs` (peak-limited to 1, as in training)."""
    return torch.from_numpy(set_level(clips[:, 0].cpu().numpy(), dbfs, max_boost_db=np.inf))[:, None].to(clips)
