"""Audio I/O and format conversion (soundfile for files, torchaudio for resampling)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read an audio file -> (wav [C, T] float32 in [-1, 1], sample_rate)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def save_audio(path: str | Path, wav: torch.Tensor, sample_rate: int) -> None:
    """Write wav [C, T] as 16-bit PCM WAV, peak-limited to [-1, 1]."""
    import soundfile as sf

    sf.write(str(path), wav.detach().float().clamp(-1, 1).T.cpu().numpy(), sample_rate, subtype="PCM_16")


def convert_audio(wav: torch.Tensor, from_rate: int, to_rate: int, to_channels: int) -> torch.Tensor:
    """Resample [..., C, T] and adapt channels: downmix by averaging, or repeat a mono signal."""
    if wav.shape[-2] != to_channels:
        if to_channels == 1:
            wav = wav.mean(dim=-2, keepdim=True)
        elif wav.shape[-2] == 1:
            wav = wav.expand(*wav.shape[:-2], to_channels, wav.shape[-1])
        else:
            raise ValueError(f"cannot convert {wav.shape[-2]} channels to {to_channels}")
    if from_rate != to_rate:
        wav = AF.resample(wav, from_rate, to_rate)
    return wav
