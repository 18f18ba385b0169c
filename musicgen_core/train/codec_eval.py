"""Codec inspection beside the trainer's metrics: encode / decode speed and input vs reconstruction spectrograms."""
from __future__ import annotations

import math
import time
from pathlib import Path

import librosa
import librosa.display
import torch
from matplotlib.figure import Figure

from ..codec import Codec
from ..eval.metrics import codec_round_trip


@torch.no_grad()
def codec_speed(codec: Codec, clip: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """Audio seconds per wall second (best of `repeats`) to encode, decode and round-trip clip [1, C, T]."""
    seconds = clip.shape[-1] / codec.sample_rate
    codec.decode(codec.encode(clip))  # warm-up (oneDNN picks its kernels on the first call)
    best = {"encode": math.inf, "decode": math.inf}
    for _ in range(repeats):
        t0 = time.perf_counter()
        codes = codec.encode(clip)
        t1 = time.perf_counter()
        codec.decode(codes)
        t2 = time.perf_counter()
        best = {"encode": min(best["encode"], t1 - t0), "decode": min(best["decode"], t2 - t1)}
    return {"encode_x_realtime": seconds / best["encode"], "decode_x_realtime": seconds / best["decode"],
            "round_trip_x_realtime": seconds / (best["encode"] + best["decode"])}


def plot_reconstructions(codec: Codec, clips: torch.Tensor, seeds: range, folder: Path) -> list[Path]:
    """One PNG per clip: log-mel spectrograms of the input above its reconstruction, on one colour scale."""
    folder.mkdir(parents=True, exist_ok=True)
    sr, paths = codec.sample_rate, []
    for seed, x in zip(seeds, clips[:, 0].numpy()):
        y = codec_round_trip(codec, x)
        mels = [librosa.power_to_db(librosa.feature.melspectrogram(y=w, sr=sr, n_fft=2048, hop_length=320, n_mels=128,
                                                                   fmax=sr / 2), ref=1.0) for w in (x, y)]
        top = mels[0].max()
        fig = Figure(figsize=(10, 6))
        axes = fig.subplots(2, 1, sharex=True)
        for ax, mel, title in zip(axes, mels, ("input", "reconstruction")):
            librosa.display.specshow(mel, sr=sr, hop_length=320, x_axis="time", y_axis="mel", fmax=sr / 2, ax=ax,
                                     vmin=top - 80, vmax=top)
            ax.set_title(f"validation clip {seed}: {title}")
        fig.tight_layout()
        paths.append(folder / f"clip_{seed}.png")
        fig.savefig(paths[-1], dpi=100)
    return paths
